"""Training step and evaluation: topnas vs the official hustvl/TopFormer code, side by side.

Both run in one process, alternating official/ours (ABAB, median per round, median over rounds) to
even out load drift on a shared machine, at each ``--threads`` count; TopFormer-T, 150 classes,
512x512, the same weights on both sides:

* **training step** (batch 2, AdamW with the config's lr / weight decay / custom keys, poly lr set
  every iteration). Official: the model built from the official source, its decode head with the
  official ``CrossEntropyLoss`` and ``accuracy`` (exec'd from the checkout, see
  ``tests/topformer/test_official_parity.py``), i.e. ``BaseDecodeHead.forward_train``: logits resized
  x8 to the labels, cross-entropy mean over all pixels, top-1 accuracy; then mmseg's
  ``_parse_losses`` (sum of the ``loss`` keys, every logged value ``.item()``-ed) and mmcv's
  ``OptimizerHook`` (zero_grad, backward, step) over one parameter group per parameter, as mmcv's
  ``DefaultOptimizerConstructor`` builds them. Ours: :func:`topnas.platform.train.step.train_step`,
  the exact step :func:`topnas.platform.train.loop.run_loop` runs, with its optimizer
  (:func:`topnas.platform.train.optim.build_optimizer`), in the default layout
  (``runtime.channels_last: false``) and in channels-last memory (the loop's default).
* **evaluation** (``--images`` synthetic 512x512 images). Official: ``EncoderDecoder.simple_test``
  on one image at a time under ``no_grad`` (forward, resize to the input size, resize to the original
  size, softmax, argmax, to numpy) plus ``intersect_and_union`` of mmseg's ``pre_eval`` (exec'd from the
  checkout). Ours: :func:`topnas.platform.train.loop.evaluate` with its defaults (what the loop runs).

Prints images/s per side and ours/official against the issue's targets (training step 1.5x;
evaluation 2x at 1 thread, 1.5x at 2 threads). The process re-executes itself with the glibc malloc
settings of :mod:`topnas.platform.malloc` (both sides get them). Needs ``TOPNAS_OFFICIAL_TOPFORMER``
(a checkout or bare git repository of hustvl/TopFormer); without it, it says so and exits 0::

    TOPNAS_OFFICIAL_TOPFORMER=<repo> python benchmarks/official_speed.py [--threads 1 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from topnas.platform.malloc import reexec_with_malloc_env  # noqa: E402

K = 150
SIZE = 512
BATCH = 2
TARGETS = {"step": {1: 1.5, 2: 1.5}, "eval": {1: 2.0, 2: 1.5}}


def _official_metrics(src: Path):
    from tests.topformer.test_official_parity import _exec_source

    return _exec_source(src, "mmseg/core/evaluation/metrics.py", [], {})


def _parse_losses(losses: dict) -> tuple[torch.Tensor, dict]:
    """mmseg 0.19 ``BaseSegmentor._parse_losses`` without distributed training."""
    log_vars = OrderedDict((k, v.mean()) for k, v in losses.items())
    loss = sum(v for k, v in log_vars.items() if "loss" in k)
    log_vars["loss"] = loss
    return loss, {k: v.item() for k, v in log_vars.items()}


def _per_parameter_groups(groups: list[dict]) -> list[dict]:
    """mmcv's ``DefaultOptimizerConstructor``: one group per parameter, same lr / decay multipliers."""
    return [{**{k: v for k, v in g.items() if k != "params"}, "params": [p]} for g in groups for _, p in g["params"]]


class _Images:
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.items = []
        for _ in range(n):
            label = torch.randint(0, K, (SIZE, SIZE), generator=g)
            label[:16] = 255
            self.items.append({"img": torch.randn(3, SIZE, SIZE, generator=g), "gt_semantic_seg": label})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _build(src: Path):
    """(official train model, ours, official eval model, ours eval) with the official model's weights."""
    from tests.topformer.test_official_parity import _build_official, _load_official
    from topnas.topformer import TopFormer

    lib = _load_official(src, losses=True)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        off = _build_official(lib, "tiny")
        ours = TopFormer.from_preset("tiny", num_classes=K, norm="BN")
        ours.load_state_dict(off.state_dict(), strict=True)
        models += [off, ours]
    return lib, models


def _steps(lib, off, ours) -> dict[str, Callable[[], None]]:
    from topnas.platform.train.optim import build_optimizer, build_param_groups
    from topnas.platform.train.schedule import apply_lr
    from topnas.platform.train.step import train_step
    from topnas.platform.train.train_config import OptimizerConfig, ScheduleConfig

    ocfg, sched = OptimizerConfig(), ScheduleConfig()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, K, (BATCH, SIZE, SIZE), generator=g)
    y[:, :16] = 255
    off_opt = torch.optim.AdamW(_per_parameter_groups(build_param_groups(off, ocfg.lr, ocfg.weight_decay,
                                                                         ocfg.custom_keys)),
                                lr=ocfg.lr, betas=tuple(ocfg.betas), eps=ocfg.eps, weight_decay=ocfg.weight_decay)
    our_opt = build_optimizer(ours, ocfg)
    cl = copy.deepcopy(ours).to(memory_format=torch.channels_last)  # runtime.channels_last: true
    cl_opt = build_optimizer(cl, ocfg)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    off.train()
    ours.train()
    cl.train()
    it = [0, 0, 0]

    def official() -> None:
        apply_lr(off_opt, it[0], sched)  # mmcv's poly LrUpdaterHook: every group, every iteration
        it[0] += 1
        feats = off.backbone(x)
        losses = off.decode_head.forward_train(feats, None, y[:, None], None)
        loss, _ = _parse_losses({f"decode.{k}": v for k, v in losses.items()})
        off_opt.zero_grad()
        loss.backward()
        off_opt.step()

    def topnas() -> None:
        apply_lr(our_opt, it[1], sched)
        it[1] += 1
        train_step(ours, our_opt, scaler, x, y)

    def topnas_cl() -> None:
        apply_lr(cl_opt, it[2], sched)
        it[2] += 1
        train_step(cl, cl_opt, scaler, x_cl, y)

    return {"official": official, "topnas": topnas, "topnas channels-last": topnas_cl}


def _evals(lib, metrics, off, ours, data: _Images) -> dict[str, Callable[[], None]]:
    from topnas.platform.train.loop import evaluate

    off.eval()

    @torch.no_grad()
    def official() -> None:
        for item in data.items:
            img = item["img"][None]
            logit = lib.resize(off(img), size=img.shape[2:], mode="bilinear", align_corners=False)  # encode_decode
            logit = lib.resize(logit, size=(SIZE, SIZE), mode="bilinear", align_corners=False, warning=False)
            pred = F.softmax(logit, dim=1).argmax(dim=1).cpu().numpy()
            metrics.intersect_and_union(pred[0], item["gt_semantic_seg"].numpy(), K, 255, dict(), False)

    def topnas() -> None:
        evaluate(ours, data, rank=0, world_size=1, device=torch.device("cpu"), num_classes=K)

    return {"official": official, "topnas": topnas}


def _abab(fns: dict[str, Callable[[], None]], reps: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and process-CPU seconds per call of each fn; calls alternate, one warm-up call each.

    CPU seconds do not count time the process waits for a core on a shared machine (at 1 thread
    they are the work done; at 2 they add both threads' work, so they do not show parallel speed-up).
    """
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times, cpus = [], []
            for _ in range(reps):
                t, c = time.perf_counter(), time.process_time()
                fn()
                times.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
            wall[name].append(statistics.median(times))
            cpu[name].append(statistics.median(cpus))
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=2, help="training steps per side per round")
    ap.add_argument("--images", type=int, default=8, help="images per evaluation")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    src = os.environ.get("TOPNAS_OFFICIAL_TOPFORMER", "")
    if not src:
        print("skipped: set TOPNAS_OFFICIAL_TOPFORMER to a checkout or bare git repository of hustvl/TopFormer")
        return 0
    reexec_with_malloc_env()
    lib, (off, ours, off_eval, ours_eval) = _build(Path(src).expanduser())
    metrics = _official_metrics(Path(src).expanduser())
    data = _Images(args.images)
    steps = _steps(lib, off, ours)
    evals = _evals(lib, metrics, off_eval, ours_eval, data)
    malloc = " ".join(f"{k}={os.environ.get(k, '-')}" for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                                 "MALLOC_TOP_PAD_"))
    print(f"TopFormer-T, {K} classes, {SIZE}x{SIZE}, torch {torch.__version__}, {malloc}; "
          f"median of {args.rounds} ABAB rounds")
    for threads in args.threads:
        torch.set_num_threads(threads)
        step, step_cpu = _abab(steps, args.steps, args.rounds)
        ev, ev_cpu = _abab(evals, 1, args.rounds)
        for what, sec, cpu, n in (("step", step, step_cpu, BATCH), ("eval", ev, ev_cpu, args.images)):
            target = TARGETS[what][threads if threads in (1, 2) else 2]
            for side in (k for k in sec if k != "official"):
                ratio = sec["official"] / sec[side]
                print(f"{what} {threads} thread(s): official {n / sec['official']:6.2f} img/s  {side} "
                      f"{n / sec[side]:6.2f} img/s  ratio {ratio:4.2f}x  (target >= {target}x: "
                      f"{'met' if ratio >= target else 'NOT met'}; CPU-seconds ratio "
                      f"{cpu['official'] / cpu[side]:4.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
