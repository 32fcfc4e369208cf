"""Launch a training job on Ray Train: checks first, then one ``TorchTrainer.fit()``.

:func:`run_training` is what ``topnas train`` and the sweep's trial function call::

    from topnas.platform.train import load_config, run_training

    cfg = load_config("experiments/demo_tiny_fixture.yaml")
    result = run_training(cfg)                       # new job named cfg.name
    result.metrics["val_mIoU"], result.mlflow_run_id, result.checkpoint

    # inside a Ray Tune trial (Train V2: no TorchTrainer in Tuner): forward reports to Tune, nest runs
    from ray.tune.integration.ray_train import TuneReportCallback
    run_training(cfg, run_name=f"trial-{trial_id}", resume="auto",
                 callbacks=[TuneReportCallback()], parent_run_id=sweep_run_id)

Order of work: validate everything that does not need Ray (dataset layout and class count,
pretrained file, GPU presence for a local run, run-name collisions) -> open the MLflow run ->
``ray.init`` if needed and check the cluster can host the workers -> fit. Re-running with the same
run name and storage path resumes from the latest checkpoint (Ray Train V2 behaviour).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from topnas.platform.envvars import env_default
from topnas.platform.tracking import absolute_sqlite_uri
from topnas.errors import ConfigError, TopnasError, error_line
from topnas.platform.train.train_config import TrainConfig
from topnas.platform.train.loop import TrainJob, train_loop_per_worker
from topnas.platform.train.sampling import batches_per_epoch
from topnas.platform.train.mlflow_logger import FINAL_ITERATION_TAG, STORAGE_PATH_TAG

__all__ = [
    "CONFIG_SNAPSHOT",
    "TrainResult",
    "TrainingFailed",
    "check_ready",
    "list_runs",
    "prepare_fixture",
    "run_dir_for",
    "run_training",
    "storage_path_for",
]

log = logging.getLogger(__name__)

CONFIG_SNAPSHOT = "topnas_config.yaml"  # the resolved config, next to Ray's checkpoints
HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
ResumeMode = Literal["auto", "never", "must"]


class TrainingFailed(TopnasError):
    """``fit()`` failed after exhausting ``scaling.max_failures``; the run can be resumed."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished job left behind."""

    run_name: str
    run_dir: Path
    iteration: int
    metrics: dict[str, Any]  # rank 0's final loss / lr / images_per_s / val_mIoU / val_mAcc / val_aAcc
    checkpoint: Path | None  # the latest checkpoint folder (Ray storage)
    mlflow_run_id: str | None
    tracking_uri: str | None
    variant_id: str
    resumed: bool  # True when the job continued checkpoints of an earlier attempt
    elapsed_s: float
    config: TrainConfig = field(repr=False, compare=False, default=None)  # type: ignore[assignment]


# ----------------------------------------------------------------------------- checks (no Ray)
def storage_path_for(cfg: TrainConfig) -> Path:
    """``scaling.storage_path`` or ``<runs>/train``."""
    from topnas.platform.paths import train_root

    return train_root(cfg.scaling.storage_path)


def run_dir_for(cfg: TrainConfig, run_name: str | None = None) -> Path:
    return storage_path_for(cfg) / (run_name or cfg.name)


def _has_checkpoints(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(p.is_dir() for p in run_dir.glob("checkpoint_*"))


def list_runs(storage_path: str | os.PathLike[str]) -> list[str]:
    """Names of runs under ``storage_path`` that hold at least one checkpoint."""
    root = Path(storage_path)
    return sorted(p.name for p in root.iterdir() if _has_checkpoints(p)) if root.is_dir() else []


def prepare_fixture(cfg: TrainConfig) -> Path | None:
    """Write the synthetic fixture at ``data.root`` when ``data.fixture`` asks for it and it is absent."""
    if cfg.data.fixture is None:
        return None
    target, written = cfg.data.fixture.ensure(cfg.data.root)
    if written:
        log.info("wrote fixture dataset %s", target)
    return target


def _check_init_checkpoint(cfg: TrainConfig) -> None:
    """The checkpoint ``model.init`` needs exists (a missing ImageNet file says how to get it)."""
    from topnas.topformer.inherit import OBTAIN_HINT, resolve_imagenet_checkpoint

    source = cfg.model.init_source()
    if not source:
        return
    if cfg.model.init == "imagenet_nearest":
        path, preset = resolve_imagenet_checkpoint(source, cfg.variant.model)
        if not path.is_file():
            raise ConfigError("model.pretrained", str(path), "an official ImageNet checkpoint file",
                              hint=f"model.init imagenet_nearest needs it; {OBTAIN_HINT}")
        if not preset:
            raise ConfigError("model.pretrained", str(path), "an official ImageNet checkpoint (named "
                              "topformer-{T,S,B}-224-*.pth) or a folder holding them",
                              hint="imagenet_nearest slices by the official architecture the file name names")
    elif not Path(source).is_file():
        raise ConfigError("model.pretrained", source, "an existing checkpoint file or null",
                          hint=OBTAIN_HINT if "classification" in source else "")
    _check_readable_checkpoint(str(path) if cfg.model.init == "imagenet_nearest" else source)


def _check_readable_checkpoint(path: str) -> None:
    """Open the checkpoint now (weights only): a corrupt file must fail before Ray, not in a worker."""
    import torch

    from topnas.topformer.weights import extract_state_dict

    try:
        extract_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - unpickling errors, truncated files, no tensors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError("model.pretrained", path, "a readable checkpoint file (torch.save of a state_dict)",
                          hint=f"cannot read it: {type(exc).__name__}: {first}") from None


def check_ready(cfg: TrainConfig, *, local_cluster: bool | None = None) -> Any:
    """Everything checkable before Ray starts; raises ConfigError / DatasetError. Returns the DatasetInfo.

    ``local_cluster``: whether the job will run on this machine (default: no ``scaling.ray_address``,
    no ``$RAY_ADDRESS`` and Ray not connected yet); only then is ``use_gpu`` checked against
    ``torch.cuda``.
    """
    from topnas.platform.data import list_samples, read_dataset_info

    _check_init_checkpoint(cfg)  # before the fixture is written: a bad checkpoint writes nothing
    prepare_fixture(cfg)
    info = read_dataset_info(cfg.data.root, cfg.model.num_classes)
    train = list_samples(info.root, cfg.data.train_split)
    list_samples(info.root, cfg.data.val_split)
    w, b = cfg.scaling.num_workers, cfg.data.samples_per_gpu
    if batches_per_epoch(len(train), b, w) < 1:
        raise ConfigError("data.samples_per_gpu", b, f"at most {-(-len(train) // w)}",
                          hint=f"{len(train)} training images in {info.root} cannot fill a batch on "
                               f"each of {w} workers")
    if local_cluster is None:
        import ray

        local_cluster = not (cfg.scaling.ray_address or os.environ.get("RAY_ADDRESS") or ray.is_initialized())
    if local_cluster and cfg.scaling.use_gpu:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("scaling.use_gpu", True, [False],
                              hint="no CUDA device on this machine; set scaling.use_gpu=false "
                                   "(BatchNorm on CPU workers) or scaling.ray_address of a GPU cluster")
    if cfg.scaling.use_gpu is False and cfg.runtime.amp:
        log.warning("runtime.amp is ignored on CPU workers")
    return info


def _check_cluster(cfg: TrainConfig) -> None:
    import ray

    total = ray.cluster_resources()
    s = cfg.scaling
    need = {"CPU": s.num_workers * s.cpus_per_worker, "GPU": s.num_workers if s.use_gpu else 0}
    need.update({k: s.num_workers * v for k, v in s.resources_per_worker.items()})
    for res, amount in need.items():
        if amount and total.get(res, 0) < amount:
            raise ConfigError("scaling.num_workers", s.num_workers,
                              f"workers whose {res} need fits the cluster ({total.get(res, 0):g} {res})",
                              hint=f"{s.num_workers} workers need {amount:g} {res}; lower scaling.num_workers "
                                   f"or scaling.cpus_per_worker")


# ----------------------------------------------------------------------------- the job
def run_training(
    cfg: TrainConfig,
    *,
    run_name: str | None = None,
    resume: ResumeMode = "auto",
    callbacks: Sequence[Any] = (),
    parent_run_id: str | None = None,
    tracking_uri: str | None = None,
    extra_tags: dict[str, str] | None = None,
    mlflow_run_id: str | None = None,
) -> TrainResult:
    """Train ``cfg`` on Ray Train and return the :class:`TrainResult`.

    Args:
        cfg: the validated config (see :func:`~topnas.platform.train.train_config.load_config`).
        run_name: Ray Train run folder ``<storage>/<run_name>`` and MLflow run name; default ``cfg.name``.
        resume: ``"auto"`` continues the run's checkpoints when present (sweeps, Tune restores);
            ``"never"`` refuses an existing run; ``"must"`` refuses a run that has no checkpoint.
        callbacks: ``ray.train.UserCallback`` instances, e.g. Tune's ``TuneReportCallback()``.
        parent_run_id: MLflow run to nest under (the sweep's run); the child joins its experiment.
        tracking_uri: overrides ``tracking.uri`` / ``$MLFLOW_TRACKING_URI``.
        extra_tags: more MLflow tags (e.g. the sweep's trial id).
        mlflow_run_id: log into this run, which the caller opened (params and config logged) and
            closes: a sweep trial's run, closed by the sweep driver with the trial's status. The job
            then only adds its metrics and the tags of its end. ``None``: the job opens its own run
            (``parent_run_id``, ``extra_tags``) and closes it.
    """
    t0 = time.perf_counter()
    if resume not in ("auto", "never", "must"):
        raise ConfigError("resume", resume, ["auto", "never", "must"])
    if run_name is not None and run_name != cfg.name:
        cfg = dataclasses.replace(cfg, name=run_name)  # re-validated; one name everywhere
    run_name = cfg.name
    if cfg.tracking.enabled:  # a dead server fails here, in one line, before anything is written
        from topnas.platform import tracking as _tracking

        _tracking.check_reachable(_tracking.resolve_tracking_uri(tracking_uri or cfg.tracking.uri))
    check_ready(cfg)
    storage = storage_path_for(cfg)
    run_dir = storage / run_name
    exists = _has_checkpoints(run_dir)
    if resume == "never" and exists:
        raise ConfigError("run name", run_name, "a name without checkpoints under " + str(storage),
                          hint=f"{run_dir} holds checkpoints: continue it with `topnas train --resume "
                               f"{run_name}` or choose another name")
    if resume == "must" and not exists:
        raise ConfigError("--resume", run_name, list_runs(storage) or "no resumable run",
                          hint=f"no checkpoint under {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_SNAPSHOT).write_text(cfg.to_yaml())

    uri = None
    client = None
    owns_run = mlflow_run_id is None  # else the caller opened the run and closes it
    if cfg.tracking.enabled:
        from topnas.platform import tracking
        from topnas.platform.train.mlflow_logger import open_train_run

        uri = absolute_sqlite_uri(tracking.resolve_tracking_uri(tracking_uri or cfg.tracking.uri))
        if owns_run:
            client, mlflow_run_id, _ = open_train_run(cfg, run_name, tracking_uri=uri, parent_run_id=parent_run_id,
                                                      extra_tags={STORAGE_PATH_TAG: str(run_dir),
                                                                  **(extra_tags or {})})
        else:
            client = tracking.get_client(uri)
            client.set_tag(mlflow_run_id, STORAGE_PATH_TAG, str(run_dir))
    else:
        mlflow_run_id = None
    status = "FAILED"
    try:
        result = _fit(cfg, run_name, storage, run_dir, uri, mlflow_run_id, callbacks)
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        if client is not None and mlflow_run_id is not None:
            with contextlib.suppress(Exception):
                tags = {FINAL_ITERATION_TAG: result.iteration} if status == "FINISHED" else {}
                if status == "FINISHED" and result.checkpoint:
                    tags["topnas.checkpoint_path"] = str(result.checkpoint)
                from topnas.platform.train.mlflow_logger import close_train_run

                close_train_run(client, mlflow_run_id, status if owns_run else None, tags)
    return dataclasses.replace(result, mlflow_run_id=mlflow_run_id, tracking_uri=uri,
                               elapsed_s=time.perf_counter() - t0, config=cfg)


def _fit(cfg: TrainConfig, run_name: str, storage: Path, run_dir: Path, uri: str | None,
         mlflow_run_id: str | None, callbacks: Sequence[Any]) -> TrainResult:
    from topnas.platform.raywatch import owned_ray

    resumed = _has_checkpoints(run_dir)
    # a local Ray of ours unless an address is given: its agents must not outlive this process (raywatch)
    local = not (cfg.scaling.ray_address or os.environ.get("RAY_ADDRESS"))
    init = {} if local else {"address": cfg.scaling.ray_address}
    with owned_ray(local, **init):
        return _fit_on_ray(cfg, run_name, run_dir, storage, uri, mlflow_run_id, callbacks, resumed)


def _fit_on_ray(cfg: TrainConfig, run_name: str, run_dir: Path, storage: Path, uri: str | None,
                mlflow_run_id: str | None, callbacks: Sequence[Any], resumed: bool) -> TrainResult:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    _check_cluster(cfg)
    s = cfg.scaling
    resources = {"CPU": s.cpus_per_worker, **s.resources_per_worker}
    if s.use_gpu:
        resources["GPU"] = 1
    job = TrainJob(run_name=run_name, run_dir=str(run_dir), mlflow_run_id=mlflow_run_id, tracking_uri=uri)
    from topnas.platform.malloc import worker_malloc_env

    env_vars = {**worker_malloc_env(), **({"MLFLOW_TRACKING_URI": uri} if uri else {})}  # malloc: read at worker start
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg, "job": job},
        scaling_config=ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=s.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.runtime.keep_checkpoints),
            callbacks=list(callbacks),
            worker_runtime_env={"env_vars": env_vars},
        ),
    )
    with env_default(HEALTH_CHECK_ENV, str(s.report_poll_s)):
        try:
            result = trainer.fit()
        except SystemExit:  # Ray's SIGINT handler aborts the run, then exits
            raise KeyboardInterrupt(f"training run {run_name!r} aborted") from None
        except Exception as exc:
            raise TrainingFailed(f"training run {run_name!r} failed after {s.max_failures} restart(s): "
                                 f"{error_line(exc)}; continue it with `topnas train --resume {run_name}`") from exc
    summary = dict(result.return_value or {})
    checkpoint = Path(result.checkpoint.path) if result.checkpoint is not None else None
    metrics = {k: v for k, v in summary.items() if k not in ("start_iteration",)}
    if not metrics and checkpoint is not None:  # e.g. a resumed run that had already finished
        metrics = json.loads((checkpoint / "trainer_state.json").read_text()).get("metrics", {})
    iteration = int(metrics.get("iteration", 0))
    return TrainResult(run_name=run_name, run_dir=run_dir, iteration=iteration, metrics=metrics,
                       checkpoint=checkpoint, mlflow_run_id=mlflow_run_id, tracking_uri=uri,
                       variant_id=cfg.variant.id, resumed=resumed or summary.get("start_iteration", 0) > 0,
                       elapsed_s=0.0)


