"""The per-worker training loop (one process per Ray Train worker, or one local process).

:func:`run_loop` is the whole job as seen by one rank: build the variant, restore the latest
checkpoint, then iterate ``start_iter .. max_iters`` with the official recipe; every
``log_interval`` print a progress line (and log to MLflow on rank 0), every ``eval_interval``
evaluate on the official test path with histograms all-reduced across ranks, every
``checkpoint_interval`` write a checkpoint. ``ray.train.report`` is called only at evaluation /
checkpoint iterations (each call is a barrier costing ~``report_poll_s``), and the last iteration
always evaluates and checkpoints. Rank 0 then logs the final checkpoint and an ONNX export.

The Ray specifics live in :class:`RaySession`; :class:`LocalSession` runs the same loop in one
process without Ray (benchmarks, fast tests, debugging).
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch import nn

from topnas.platform.train.training_state import (
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
    load_training_state,
    restore_rng,
    save_training_state,
    unwrap,
)
from topnas.platform.train.train_config import TrainConfig
from topnas.platform.train.loss import IGNORE_INDEX
from topnas.platform.train.optim import build_optimizer
from topnas.platform.train.sampling import IterationBatchSampler, SeededDataset
from topnas.platform.train.schedule import apply_lr
from topnas.platform.train.slide import slide_logits
from topnas.platform.train.step import train_step

__all__ = [
    "InjectedFault",
    "LocalSession",
    "RaySession",
    "Session",
    "TrainJob",
    "evaluate",
    "run_loop",
    "train_loop_per_worker",
]

log = logging.getLogger(__name__)
progress_log = logging.getLogger("topnas.train.progress")


class InjectedFault(RuntimeError):
    """Raised by ``fault_injection`` (tests only)."""


@dataclass(frozen=True)
class TrainJob:
    """What a worker needs besides the config: where the run lives and where to log."""

    run_name: str
    run_dir: str  # absolute: <storage_path>/<run_name>
    mlflow_run_id: str | None = None
    tracking_uri: str | None = None


# ----------------------------------------------------------------------------- sessions
class Session(Protocol):
    world_rank: int
    world_size: int
    local_rank: int
    device: torch.device

    def checkpoint_dir(self) -> contextlib.AbstractContextManager[str | None]: ...
    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None: ...
    def prepare_model(self, model: nn.Module, find_unused_parameters: bool) -> nn.Module: ...


class RaySession:
    """Inside a Ray Train worker: ranks from the train context, DDP through ``prepare_model``."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.world_rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.local_rank = ctx.get_local_rank()
        self.device = ray.train.torch.get_device()

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as d:
            yield d

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)

    def prepare_model(self, model: nn.Module, find_unused_parameters: bool) -> nn.Module:
        import ray.train.torch

        kwargs = {"find_unused_parameters": find_unused_parameters} if self.world_size > 1 else None
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs=kwargs)


class LocalSession:
    """One process, no Ray: checkpoints are ``<directory>/checkpoint_<iteration>``; reports are kept."""

    world_rank = 0
    world_size = 1
    local_rank = 0

    def __init__(self, directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> None:
        self.directory = Path(directory).absolute()
        self.device = torch.device(device)
        self.reports: list[dict[str, Any]] = []

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.directory.glob("checkpoint_*"))
        return found[-1] if found else None

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        latest = self.latest_checkpoint()
        yield str(latest) if latest else None

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir:
            dst = self.directory / f"checkpoint_{int(metrics['iteration']):09d}"
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(checkpoint_dir, dst)

    def prepare_model(self, model: nn.Module, find_unused_parameters: bool) -> nn.Module:
        return model.to(self.device)


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry point: ``loop_config = {"config": TrainConfig, "job": TrainJob}``."""
    _quiet_worker_logs()
    return run_loop(loop_config["config"], loop_config["job"], RaySession())


def _say(message: str) -> None:
    """A progress line: through logging (Ray Train sends it to the driver once; print() shows twice)."""
    progress_log.info(message)


def _quiet_worker_logs() -> None:
    """Ray Train routes print() through the root logger at INFO; keep exporter chatter out of it."""
    for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir", "alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ----------------------------------------------------------------------------- the loop
def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _all_reduce_mean(values: list[float], device: torch.device) -> list[float]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / dist.get_world_size()).tolist()


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return (f"{d}d " if d else "") + f"{h:d}:{m:02d}:{s:02d}"


def _build_datasets(cfg: TrainConfig):
    from topnas.platform.data import ADE20KDataset, build_eval_pipeline, build_train_pipeline

    d = cfg.data
    train_pipeline = build_train_pipeline(
        crop_size=d.crop_size, img_scale=d.img_scale, ratio_range=d.ratio_range,
        cat_max_ratio=d.cat_max_ratio, flip_prob=d.flip_prob, photometric=d.photometric,
        ignore_index=IGNORE_INDEX, seed=cfg.runtime.seed,
    )
    eval_pipeline = build_eval_pipeline(img_scale=d.test_img_scale, size_divisor=d.size_divisor)
    common = {"num_classes": cfg.model.num_classes, "reduce_zero_label": d.reduce_zero_label}
    train = ADE20KDataset(d.root, d.train_split, train_pipeline, **common)
    val = ADE20KDataset(d.root, d.val_split, eval_pipeline, **common)
    return train, val


EVAL_BATCH = 4  # images of one size per forward on the fast path


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the fast inference path (``TopFormer.to_inference``: eval, channels-last).

    A copy, so the training model keeps its layout and mode; the copy costs one state-dict's memory.
    """
    net = copy.deepcopy(model)
    return net.to_inference() if hasattr(net, "to_inference") else net.eval().to(memory_format=torch.channels_last)


def _predict_cpu(logits: torch.Tensor, orig_hws: list, input_hw: Any) -> list[torch.Tensor]:
    """Per-image predictions of a batch on CPU: resize (channels-last) and argmax, images spread over threads.

    One image at a time (a batch of full-resolution logits is B x K x H x W floats). Channels-last,
    the bilinear resize is about twice as fast but runs on one thread, so with more than one torch
    thread the batch's images are resized concurrently (torch releases the GIL in its kernels).
    Predictions equal the official test path (resize to the input size, then to the original size,
    softmax, argmax) to float rounding: softmax does not change the argmax.
    """
    from topnas.platform.data import evaluate_logits_to_original

    def one(i: int) -> torch.Tensor:
        x = logits[i:i + 1].contiguous(memory_format=torch.channels_last)
        return evaluate_logits_to_original(x, orig_hw=orig_hws[i], input_hw=input_hw)[0]

    workers = min(torch.get_num_threads(), len(orig_hws))
    if workers <= 1:
        return [one(i) for i in range(len(orig_hws))]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(orig_hws))))


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Any, *, rank: int, world_size: int, device: torch.device,
             num_classes: int, max_samples: int | None = None, amp: bool = False, fast: bool = True,
             batch_size: int = EVAL_BATCH, slide: tuple[tuple[int, int], tuple[int, int]] | None = None,
             ) -> dict[str, Any]:
    """Official single-scale whole-image test path; histograms summed over ranks (all_reduce).

    ``slide``: ``(window, stride)`` tests each image on sliding windows instead
    (:mod:`topnas.platform.train.slide`, ``DataConfig.test_mode``).

    Rank ``r`` evaluates images ``r, r + world_size, ...``; every rank must call this together.
    ``fast`` (default): :func:`inference_copy` under ``torch.inference_mode``, consecutive images of
    one size batched (``batch_size``); predictions equal the plain path (``fast=False``: the model
    as given, one image at a time) up to float rounding.
    """
    from topnas.platform.data import IoUAccumulator, evaluate_logits_to_original

    was_training = model.training
    net = inference_copy(model) if fast else model.eval()
    acc = IoUAccumulator(num_classes, IGNORE_INDEX, device=device)
    n = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    step = max(1, batch_size) if fast and slide is None else 1  # slide: one image's windows are the batch

    def run_slide(sample: dict[str, Any]) -> None:
        img, label = sample["img"][None].to(device), sample["gt_semantic_seg"].to(device)
        with torch.inference_mode(fast), \
                torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            logits = slide_logits(net, img, *slide, channels_last=fast)
        acc.update(evaluate_logits_to_original(logits, orig_hw=label.shape[-2:])[0], label)

    def run(batch: list[dict[str, Any]]) -> None:
        if slide is not None:
            run_slide(batch[0])
            return
        img = torch.stack([b["img"] for b in batch]).to(device)
        if fast:
            img = img.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(fast), \
                torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            logits = net(img)
        labels = [b["gt_semantic_seg"].to(device) for b in batch]
        if fast and device.type == "cpu":
            preds = _predict_cpu(logits.float(), [lab.shape[-2:] for lab in labels], img.shape[-2:])
        else:
            preds = [evaluate_logits_to_original(logits[i:i + 1].float().contiguous(), orig_hw=lab.shape[-2:],
                                                 input_hw=img.shape[-2:])[0] for i, lab in enumerate(labels)]
        for pred, label in zip(preds, labels):
            acc.update(pred, label)

    pending: list[dict[str, Any]] = []
    for i in range(rank, n, world_size):
        sample = dataset[i]
        shapes = (sample["img"].shape, sample["gt_semantic_seg"].shape[-2:])
        if pending and (len(pending) == step or (pending[0]["img"].shape, pending[0]["gt_semantic_seg"].shape[-2:])
                        != shapes):
            run(pending)
            pending = []
        pending.append(sample)
    if pending:
        run(pending)
    acc.all_reduce()
    model.train(was_training)
    return acc.summarize()


def _maybe_inject_fault(cfg: TrainConfig, job: TrainJob, rank: int, iteration: int) -> None:
    fault = cfg.fault_injection
    if fault is None or fault.rank != rank or fault.at_iter != iteration:
        return
    marker = Path(fault.marker or Path(job.run_dir) / f"fault_injected_rank{rank}_iter{iteration}")
    if marker.exists():
        return  # fired on an earlier attempt
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{time.time()}\n")
    raise InjectedFault(f"fault_injection: rank {rank} fails before iteration {iteration} (test only)")


def run_loop(cfg: TrainConfig, job: TrainJob, session: Session) -> dict[str, Any]:
    """Train one rank from the latest checkpoint to ``schedule.max_iters``; rank 0 returns a summary."""
    rank, world, device = session.world_rank, session.world_size, session.device
    rt, sched = cfg.runtime, cfg.schedule
    use_cuda = device.type == "cuda"
    amp = rt.amp and use_cuda
    if use_cuda:
        torch.backends.cudnn.benchmark = rt.cudnn_benchmark and not rt.deterministic
    if rt.deterministic:
        torch.backends.cudnn.deterministic = True

    # Same initial weights on every rank (DDP broadcasts rank 0's anyway), then per-rank streams.
    _seed(rt.seed)
    variant, norm = cfg.variant, cfg.resolved_norm()
    model = variant.build(norm="BN")
    init_report = None
    if cfg.model.init_source() and cfg.model.init == "imagenet_nearest":
        from topnas.topformer.inherit import inherit_from_checkpoint

        init_report = inherit_from_checkpoint(model, variant.model, cfg.model.pretrained)
        if rank == 0:
            _say(f"[train] {init_report.summary()}")
    elif cfg.model.init_source():
        from topnas.topformer.weights import load_checkpoint

        report = load_checkpoint(model, cfg.model.pretrained, verbose=False)
        if rank == 0:
            _say(f"[train] pretrained {cfg.model.pretrained}: {report.summary().splitlines()[0]}")
    if norm == "SyncBN" and use_cuda:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optimizer)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    start_iter, rng_state, resumed_metrics = 0, None, {}
    with session.checkpoint_dir() as ckpt:
        if ckpt is not None:
            state = load_training_state(ckpt, rank=rank, model=model, optimizer=optimizer, scaler=scaler, cfg=cfg)
            start_iter, rng_state, resumed_metrics = state.iteration, state.rng, state.metrics
            if rank == 0:
                _say(f"[train] resumed {job.run_name} at iteration {start_iter}/{sched.max_iters} from {ckpt}")
    net = session.prepare_model(model, rt.find_unused_parameters)

    from topnas.platform.data import seg_collate

    train_ds, val_ds = _build_datasets(cfg)
    sampler = IterationBatchSampler(len(train_ds), cfg.data.samples_per_gpu, rank, world, rt.seed,
                                    start_iter, sched.max_iters)
    loader = torch.utils.data.DataLoader(
        SeededDataset(train_ds), batch_sampler=sampler, num_workers=cfg.data.workers_per_gpu,
        collate_fn=seg_collate, pin_memory=use_cuda,
    )
    batches = iter(loader) if start_iter < sched.max_iters else iter(())  # draws from torch's RNG
    # Per-rank generator streams start here: a resumed run continues the stream it checkpointed.
    if rng_state is not None:
        restore_rng(rng_state)
    else:
        _seed(rt.seed + rank + 1000 * start_iter)
    logger = None
    if rank == 0 and job.mlflow_run_id and job.tracking_uri:
        from topnas.platform.train.mlflow_logger import BackgroundLogger

        logger = BackgroundLogger(job.tracking_uri, job.mlflow_run_id)
        dev_name = torch.cuda.get_device_name(device) if use_cuda else "cpu"
        logger.tags({"topnas.device": f"{device.type}:{dev_name}" if use_cuda else "cpu", "topnas.norm": norm,
                     "topnas.amp": str(amp).lower(),
                     "topnas.init": cfg.model.init if cfg.model.init_source() else "scratch",
                     "topnas.dist_backend": (torch.distributed.get_backend() if torch.distributed.is_available()
                                             and torch.distributed.is_initialized() else "none")})
        if init_report is not None:  # per tensor: inherited / sliced / partial / fresh
            logger.tags({f"topnas.init_{k}": v for k, v in init_report.counts().items()})
            with tempfile.TemporaryDirectory() as tmp:
                logger.artifact(init_report.save(Path(tmp) / "imagenet_inherit.json"), "init")

    images_per_iter = cfg.data.samples_per_gpu * world
    class_weight = None if cfg.model.class_weight is None else torch.tensor(cfg.model.class_weight, device=device)
    it = start_iter
    # loss: mean over the iterations since the last log line or report (kept on the device: no per-step sync)
    loss_sum, loss_n = torch.zeros((), dtype=torch.float64, device=device), 0
    tic, timed_iters = time.perf_counter(), 0
    # A resumed run starts from what its checkpoint reported (a run resumed at its last iteration
    # trains nothing, yet its summary must still carry the final evaluation).
    speed = _as_float(resumed_metrics.get("images_per_s"))
    last_eval = {k: float(v) for k, v in resumed_metrics.items() if k.startswith("val_") and v is not None}
    interval_loss = _as_float(resumed_metrics.get("loss"))
    lr = _as_float(resumed_metrics.get("lr"))
    net.train()
    for batch in batches:
        _maybe_inject_fault(cfg, job, rank, it)
        lr = apply_lr(optimizer, it, sched)
        img = batch["img"].to(device, non_blocking=True)
        if rt.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        label = batch["gt_semantic_seg"].to(device, non_blocking=True)
        loss = train_step(net, optimizer, scaler, img, label, amp=amp, class_weight=class_weight)
        loss_sum += loss.double()
        loss_n += 1
        it += 1
        timed_iters += 1

        if it % rt.log_interval == 0 or it == sched.max_iters:
            elapsed = time.perf_counter() - tic
            interval_loss = _all_reduce_mean([float(loss_sum) / max(loss_n, 1)], device)[0]
            speed = images_per_iter * timed_iters / elapsed if elapsed > 0 else float("nan")
            eta = (sched.max_iters - it) * elapsed / timed_iters if timed_iters else float("nan")
            if rank == 0:
                _say(f"[train] it {it}/{sched.max_iters} | loss {interval_loss:.4f} | lr {lr:.3e} | "
                     f"{speed:.2f} img/s | eta {_format_eta(eta)}")
                if logger:
                    logger.metrics({"loss": interval_loss, "lr": lr, "images_per_s": speed}, step=it)
            loss_sum.zero_()
            loss_n, timed_iters, tic = 0, 0, time.perf_counter()

        do_eval = it % rt.eval_interval == 0 or it == sched.max_iters
        do_ckpt = it % rt.checkpoint_interval == 0 or it == sched.max_iters
        if do_eval:
            t0 = time.perf_counter()
            result = evaluate(unwrap(net), val_ds, rank=rank, world_size=world, device=device,
                              num_classes=cfg.model.num_classes, max_samples=cfg.data.val_max_samples, amp=amp,
                              slide=cfg.data.slide_window())
            last_eval = {"val_mIoU": result["mIoU"], "val_mAcc": result["mAcc"], "val_aAcc": result["aAcc"]}
            if rank == 0:
                _say(f"[eval] it {it}: mIoU {result['mIoU']:.4f} mAcc {result['mAcc']:.4f} "
                     f"aAcc {result['aAcc']:.4f} ({time.perf_counter() - t0:.1f} s)")
                if logger:
                    logger.metrics(last_eval, step=it)
                    if it == sched.max_iters:
                        _log_per_class(logger, result, train_ds.class_names)
        if do_eval or do_ckpt:
            metrics = {"iteration": it, "loss": interval_loss, "lr": lr, "images_per_s": speed, **last_eval}
            if logger is not None and do_ckpt:  # what was logged up to the checkpoint is handed over first
                logger.wait()
            with _checkpoint_folder(do_ckpt) as folder:
                if folder is not None:
                    save_training_state(folder, rank=rank, world_size=world, model=net, optimizer=optimizer,
                                        scaler=scaler, iteration=it, cfg=cfg, norm=norm, metrics=metrics)
                session.report(metrics, folder)
            tic, timed_iters = time.perf_counter(), 0  # keep eval/report time out of images/s
            loss_sum.zero_()
            loss_n = 0

    summary = {"iteration": it, "start_iteration": start_iter, "loss": interval_loss, "lr": lr,
               "images_per_s": speed, **last_eval}
    if rank == 0 and logger is not None:
        _log_final_artifacts(cfg, unwrap(net), optimizer, scaler, it, norm, world, logger)
        if not logger.close():  # waits (with backoff) for a tracking server that is down
            summary["tracking_lost"] = logger.dropped
    return summary


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@contextlib.contextmanager
def _checkpoint_folder(needed: bool) -> Iterator[str | None]:
    if not needed:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="topnas_ckpt_")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _log_per_class(logger: Any, result: dict[str, Any], class_names: tuple[str, ...]) -> None:
    rows = {name: {"IoU": iou, "Acc": acc} for name, iou, acc in
            zip(class_names, result["IoU_per_class"], result["Acc_per_class"])}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "per_class.json"
        path.write_text(json.dumps(rows, indent=2, default=lambda v: None) + "\n")
        logger.artifact(path, "eval")


def _log_final_artifacts(cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                         scaler: torch.amp.GradScaler, iteration: int, norm: str, world: int, logger: Any) -> None:
    """Final weights (model.pt + state + config; the resumable checkpoint stays in Ray storage) and ONNX."""
    with tempfile.TemporaryDirectory(prefix="topnas_final_") as tmp:
        if cfg.tracking.log_checkpoint:
            save_training_state(tmp, rank=0, world_size=world, model=model, optimizer=optimizer, scaler=scaler,
                                iteration=iteration, cfg=cfg, norm=norm)
            for name in (MODEL_FILE, STATE_FILE, CONFIG_FILE):
                logger.artifact(Path(tmp) / name, "checkpoint")
        if cfg.tracking.export_onnx:
            t0 = time.perf_counter()
            try:
                from topnas.topformer.export import export_onnx

                variant = cfg.variant
                plain = variant.build(norm="BN")
                plain.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
                path = export_onnx(plain, Path(tmp) / f"{variant.id}.onnx", input_size=variant.input_size)
            except Exception as exc:  # noqa: BLE001 - an export problem must not lose the training
                log.warning("ONNX export failed: %s", exc)
                logger.tags({"topnas.onnx_error": str(exc)[:500]})
            else:
                logger.artifact(path, "onnx")
                logger.tags({"topnas.onnx_input_size": f"{variant.input_size[0]}x{variant.input_size[1]}"})
                _say(f"[train] ONNX export {variant.input_size[0]}x{variant.input_size[1]} logged "
                     f"({time.perf_counter() - t0:.1f} s)")
