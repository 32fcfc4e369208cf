"""MLflow for training jobs: one run per job, opened by the driver, written to by world-rank 0 only.

* The driver (:func:`open_train_run`) finds the job's run by tag ``topnas.train_run=<run name>``
  (through :func:`topnas.platform.tracking.start_or_resume_run`) or creates it - under the sweep's
  parent run when one is given - and logs the flattened config as params, the tags and the config YAML.
* World-rank 0 (:class:`RankZeroLogger`) logs loss / lr / images per second per log interval,
  ``val_mIoU`` / ``val_mAcc`` / ``val_aAcc`` per evaluation, then the final checkpoint and ONNX.
  Other ranks never touch MLflow (mlflow#5817). A resumed job logs into the same run; iterations
  re-run after a failure appear twice in a metric's history, with the same step.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from topnas.platform import tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from topnas.platform.train.config import TrainConfig

__all__ = ["RankZeroLogger", "TRAIN_RUN_TAG", "close_train_run", "open_train_run", "run_tags"]

log = logging.getLogger(__name__)

TRAIN_RUN_TAG = "topnas.train_run"
RUN_KEY_PREFIX = "train:"


def run_tags(cfg: TrainConfig, run_name: str) -> dict[str, str]:
    variant = cfg.variant
    return {
        TRAIN_RUN_TAG: run_name,
        "topnas.kind": "train",
        "topnas.variant_id": variant.id,
        "topnas.preset": variant.preset or "none",
        "topnas.workers": str(cfg.scaling.num_workers),
        "topnas.device": "cuda" if cfg.scaling.use_gpu else "cpu",
        "topnas.norm": cfg.resolved_norm(),
        "topnas.total_batch_size": str(cfg.total_batch_size),
    }


def open_train_run(
    cfg: TrainConfig,
    run_name: str,
    *,
    tracking_uri: str,
    parent_run_id: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
) -> tuple[MlflowClient, str, bool]:
    """``(client, run_id, resumed)`` for the job ``run_name``; params, tags and config logged."""
    from mlflow.exceptions import MlflowException

    client = tracking.get_client(tracking_uri)
    if parent_run_id:
        experiment_id = client.get_run(parent_run_id).info.experiment_id  # children live beside the parent
    else:
        experiment_id = tracking.get_or_create_experiment(cfg.tracking.experiment, client=client)
    tags = {**run_tags(cfg, run_name), **dict(extra_tags or {})}
    run, resumed = tracking.start_or_resume_run(client, experiment_id, RUN_KEY_PREFIX + run_name,
                                                run_name=run_name, parent_run_id=parent_run_id, tags=tags)
    run_id = run.info.run_id
    params = tracking.flatten_params(cfg.to_dict())
    params["variant.id"] = cfg.variant.id
    params["norm.resolved"] = cfg.resolved_norm()
    params["total_batch_size"] = str(cfg.total_batch_size)
    try:
        tracking.log_params_batched(client, run_id, params)
    except MlflowException as exc:  # a resumed run whose config changed (e.g. longer schedule)
        if not resumed:
            raise
        log.warning("run %s: config differs from the logged params; keeping the first values (%s)",
                    run_id, str(exc).splitlines()[0])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_config.yaml"
        path.write_text(cfg.to_yaml())
        client.log_artifact(run_id, str(path), "config")
    return client, run_id, resumed


def close_train_run(client: MlflowClient, run_id: str, status: str, tags: Mapping[str, str] | None = None) -> None:
    for k, v in (tags or {}).items():
        client.set_tag(run_id, k, str(v))
    client.set_terminated(run_id, status=status)


class RankZeroLogger:
    """Metric / artifact logging of world-rank 0; a logging failure warns once and never stops training."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.run_id = run_id
        self.client = tracking.get_client(tracking_uri)
        self._warned = False

    def _safely(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must not kill a 160k-iteration job
            if not self._warned:
                log.warning("MLflow %s failed (%s); training continues, further failures are silent", what, exc)
                self._warned = True

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, int(step)) for k, v in values.items() if v is not None]
        self._safely("log_batch", self.client.log_batch, self.run_id, metrics=batch, synchronous=True)

    def tags(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            self._safely("set_tag", self.client.set_tag, self.run_id, k, str(v))

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._safely("log_artifact", self.client.log_artifact, self.run_id, str(path), artifact_path)
