"""Starting the full training of a promotion: in this process, or as a Ray job through the Jobs API.

Either way the job is one command, ``topnas promote --run-full <yaml>`` (:func:`run_full_training`):
train, then :func:`~topnas.platform.promote.finalization.finalize` the run, in one process.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from topnas.errors import ConfigError
from topnas.platform import paths, tracking
from topnas.platform.promote.finalization import FinalizeResult, finalize
from topnas.platform.promote.lineage import (
    TAG_MODEL_NAME,
    TAG_PROMOTED_VERSION,
    TAG_STAGE,
    TAG_TRAIN_RUN,
    TAG_VARIANT,
    T,
)
from topnas.platform.promote.recipe import experiments_dir

if TYPE_CHECKING:
    from topnas.platform.promote.registry import Promotion

__all__ = ["LaunchResult", "find_full_run", "full_run_command", "launch_local", "run_full_training",
           "submit_ray_job"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchResult:
    """How the full training was started: run and finalized here, or a Ray job to follow."""

    mode: str                        # "local" | "ray-job"
    run_name: str
    command: str
    job_id: str | None = None
    address: str | None = None
    mlflow_run_id: str | None = None
    finalized: FinalizeResult | None = None


def full_run_command(promotion: Promotion, python: str, yaml_arg: str) -> list[str]:
    """The full-training entrypoint: train, then finalize, in one process."""
    return [python, "-m", "topnas", "promote", "--run-full", yaml_arg, "--run-name", promotion.run_name,
            "--model-name", promotion.model_name, "--model-version", promotion.version]


def launch_local(promotion: Promotion, *, predictor: str | None = None) -> LaunchResult:
    """Run the full training in this process (Ray Train on a local Ray), then :func:`finalize`."""
    cmd = " ".join(shlex.quote(c) for c in full_run_command(promotion, sys.executable, str(promotion.train_yaml)))
    result = run_full_training(promotion.train_yaml, run_name=promotion.run_name, model_name=promotion.model_name,
                               model_version=promotion.version, tracking_uri=promotion.tracking_uri,
                               predictor=predictor)
    return LaunchResult("local", promotion.run_name, cmd, mlflow_run_id=result.run_id, finalized=result)


_LOCAL_HOSTS = re.compile(r"^(https?://)?(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/?$")


def submit_ray_job(
    promotion: Promotion,
    *,
    address: str,
    python: str | None = None,
    tracking_uri: str | None = None,
    env: Mapping[str, str] | None = None,
    working_dir: str | os.PathLike[str] | None = None,
) -> LaunchResult:
    """Submit the full training as a Ray job (``JobSubmissionClient(address).submit_job``).

    The job runs ``<python> -m topnas promote --run-full <yaml> ...`` in a copy of ``working_dir``
    (default: the checkout; ``.gitignore``-d paths such as ``.venv`` and ``runs`` stay behind); a
    YAML inside it is passed by relative path, one outside by absolute path (right for a cluster on
    this machine or on a shared file system). ``python`` is the interpreter on the cluster nodes (a
    bare ``python`` in a job resolves to the system one); default this process's interpreter, right
    for a local cluster. ``env`` reaches the job: ``MLFLOW_TRACKING_URI`` (``tracking_uri``, as the
    cluster sees the server), ``RAY_AUTH_MODE`` when set here, and for a cluster on this machine
    ``TOPNAS_HOME`` (so ``{runs}`` paths mean the same folder).
    """
    from ray.job_submission import JobSubmissionClient

    working_dir = Path(working_dir) if working_dir else experiments_dir().parent
    yaml_abs = Path(promotion.train_yaml).resolve()
    try:
        yaml_arg = str(yaml_abs.relative_to(working_dir.resolve()))
    except ValueError:  # e.g. --out-dir elsewhere: fine when the cluster shares this file system
        yaml_arg = str(yaml_abs)
        if not _LOCAL_HOSTS.match(address.strip()):
            log.warning("%s is outside the job's working_dir %s: the job reads it by absolute path, so the "
                        "cluster nodes must share this file system", yaml_abs, working_dir)
    python = python or os.environ.get("TOPNAS_CLUSTER_PYTHON") or sys.executable
    env_vars = {"MLFLOW_TRACKING_URI": tracking_uri or promotion.tracking_uri, "RAY_USAGE_STATS_ENABLED": "0"}
    if os.environ.get("RAY_AUTH_MODE"):
        env_vars["RAY_AUTH_MODE"] = os.environ["RAY_AUTH_MODE"]
    if _LOCAL_HOSTS.match(address.strip()):
        env_vars["TOPNAS_HOME"] = str(paths.runs_root())
    env_vars.update({str(k): str(v) for k, v in (env or {}).items()})
    entry = full_run_command(promotion, python, yaml_arg)
    entrypoint = " ".join(shlex.quote(c) for c in entry)
    client = JobSubmissionClient(address)
    job_id = client.submit_job(
        entrypoint=entrypoint,
        submission_id=f"topnas-promote-{promotion.selection.variant_id}-v{promotion.version}-{int(time.time())}",
        runtime_env={"working_dir": str(working_dir),
                     "excludes": [".venv", "runs", ".git", "**/__pycache__", ".hypothesis", ".pytest_cache",
                                  "*.onnx", "mlruns", "mlflow.db"],
                     "env_vars": env_vars},
        metadata={"topnas.model": promotion.model_name, "topnas.version": promotion.version,
                  "topnas.run_name": promotion.run_name},
    )
    tracking.get_client(promotion.tracking_uri).set_model_version_tag(
        promotion.model_name, promotion.version, T + "ray_job_id", job_id)
    return LaunchResult("ray-job", promotion.run_name, entrypoint, job_id=job_id, address=address)


def find_full_run(tracking_uri: str, run_name: str, timeout_s: float = 0.0, poll_s: float = 2.0) -> str | None:
    """The MLflow run id of full run ``run_name`` (tag ``topnas.train_run``), waiting up to ``timeout_s``."""
    from mlflow.entities import ViewType

    client = tracking.get_client(tracking_uri)
    deadline = time.monotonic() + timeout_s
    while True:
        exps = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
        if exps:
            runs = client.search_runs(exps, filter_string=f"tags.`{TAG_TRAIN_RUN}` = '{run_name}'", max_results=1)
            if runs:
                return runs[0].info.run_id
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_s)


def run_full_training(
    yaml_path: str | os.PathLike[str],
    *,
    run_name: str,
    model_name: str,
    model_version: str,
    tracking_uri: str | None = None,
    predictor: str | None = None,
) -> FinalizeResult:
    """The full-training job: :func:`~topnas.platform.train.run_training` then :func:`finalize`.

    The run is tagged with its model version and lineage; ``resume="auto"`` continues the run's
    checkpoints if the job is re-submitted with the same name.
    """
    from topnas.platform.train import load_config, run_training

    uri = tracking.resolve_tracking_uri(tracking_uri)
    client = tracking.get_client(uri)
    mv = client.get_model_version(model_name, str(model_version))
    # The variant id the training package tags is that of the trained config (its num_classes may
    # differ from the sweep's): the sweep's id goes on the run as topnas.promoted_variant_id.
    lineage = {(T + "promoted_variant_id" if k == TAG_VARIANT else k): v for k, v in mv.tags.items()
               if k.startswith(T) and k not in (TAG_STAGE, TAG_TRAIN_RUN)}
    lineage.update({TAG_MODEL_NAME: model_name, TAG_PROMOTED_VERSION: str(model_version),
                    "topnas.kind": "promoted_full"})
    cfg = load_config(yaml_path)
    result = run_training(cfg, run_name=run_name, resume="auto", tracking_uri=uri, extra_tags=lineage)
    if not result.mlflow_run_id:
        raise ConfigError("tracking.enabled", False, [True], hint="a promoted run must be tracked in MLflow")
    return finalize(result.mlflow_run_id, tracking_uri=uri, model_name=model_name, predictor=predictor)
