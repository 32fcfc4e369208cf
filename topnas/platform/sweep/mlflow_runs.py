"""MLflow layout of a sweep: one parent run, one child run per trial (Ray's ``MLflowLoggerCallback``
makes flat runs on the driver, with no nesting and new runs after a restore).

Parent (run name = sweep name, key ``sweep:<name>``): tags ``topnas.sweep=<name>``,
``topnas.kind=sweep``, ``topnas.status``, ``topnas.sampler``, ``topnas.predictor_id``, the git
commit; params = the flattened sweep config, sampler, seeds, predictor metadata, git commit;
artifacts ``config/sweep.yaml``, ``config/search_space.yaml``, ``config/predictor.json`` and, refreshed
as trials finish, ``pareto.csv``, ``pareto_front.png``, ``pareto_front.html``, ``hypervolume.png``;
metrics ``hypervolume`` (step = finished trials) and the status counts.

Child (the training package's run of the trial, nested with ``mlflow.parentRunId``; for a proposal
over the latency budget a run of its own, never trained): tags ``topnas.sweep``, ``topnas.kind=
sweep_trial``, ``topnas.trial_id``, ``topnas.optuna_trial``, ``topnas.variant_id``, ``topnas.status``
(running / completed / early_stopped / infeasible / failed), ``topnas.status_reason``, ``pareto``
(true / false, kept current); params ``search.<dimension>`` (the sampled point), ``variant.id``,
``latency.*``; metrics ``latency_ms`` / ``latency_lo`` / ``latency_hi``, ``params``, ``macs`` and,
from the training loop's rank 0, ``val_mIoU`` at every evaluation.

:class:`SweepTracker` holds only strings and makes its client lazily, so the searcher and the
Tune callback that own one can be pickled into Tune's experiment state and restored.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from topnas.platform import tracking
from topnas.platform.sweep.tags import (
    KIND_TAG,
    KIND_TRIAL,
    OPTUNA_TAG,
    PARETO_TAG,
    REASON_TAG,
    STATUS_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    VARIANT_TAG,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = ["SweepTracker", "child_params", "child_tags", "child_metrics"]

log = logging.getLogger(__name__)


def child_tags(sweep: str, trial_id: str, optuna_trial: int | None, variant: Any, status: str) -> dict[str, str]:
    return {
        SWEEP_TAG: sweep, KIND_TAG: KIND_TRIAL, TRIAL_TAG: trial_id,
        OPTUNA_TAG: "" if optuna_trial is None else str(optuna_trial),
        VARIANT_TAG: variant.id, "topnas.preset": variant.preset or "none", STATUS_TAG: status,
        PARETO_TAG: "false",
    }


def child_params(point: Mapping[str, Any], variant: Any, estimate: Mapping[str, Any], predictor_id: str,
                 predictor_provenance: str = "") -> dict[str, str]:
    params = {f"search.{k}": str(v) for k, v in point.items()}
    params["variant.id"] = variant.id
    params["latency.predictor_id"] = predictor_id
    if predictor_provenance:
        params["latency.predictor_provenance"] = predictor_provenance
    params["latency.out_of_range"] = str(bool(estimate.get("out_of_range", False)))
    return params


def child_metrics(estimate: Mapping[str, Any], complexity: Mapping[str, Any] | None = None) -> dict[str, float]:
    out = {k: float(estimate[k]) for k in ("latency_ms", "latency_lo", "latency_hi") if estimate.get(k) is not None}
    for k in ("params", "macs"):
        if complexity and complexity.get(k) is not None:
            out[k] = float(complexity[k])
    return out


class SweepTracker:
    """The driver's MLflow writes for one sweep (children found by their parent and trial id)."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sweep: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep = sweep
        self._client: MlflowClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = tracking.get_client(self.tracking_uri)
        return self._client

    # ------------------------------------------------------------------ children
    def children(self) -> list[Run]:
        from mlflow.entities import ViewType

        out: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{tracking.PARENT_RUN_TAG}` = '{self.parent_run_id}'",
                run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token,
                order_by=["attributes.start_time ASC"])
            out.extend(page)
            token = page.token
            if not token:
                return out

    def child_of_trial(self, trial_id: str) -> Run | None:
        from mlflow.entities import ViewType

        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{tracking.PARENT_RUN_TAG}` = '{self.parent_run_id}' and "
                          f"tags.`{TRIAL_TAG}` = '{trial_id}'",
            run_view_type=ViewType.ACTIVE_ONLY, max_results=10, order_by=["attributes.start_time ASC"])
        if len(runs) > 1:
            log.warning("trial %s has %d child runs; using the oldest", trial_id, len(runs))
        return runs[0] if runs else None

    def create_child(self, run_key: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, str],
                     metrics: Mapping[str, float]) -> tuple[str, bool]:
        """A child run made by the driver (a proposal never launched, or a trial that died before its run)."""
        run, reused = tracking.start_or_resume_run(self.client, self.experiment_id, run_key, run_name=run_name,
                                                   parent_run_id=self.parent_run_id, tags=tags)
        run_id = run.info.run_id
        if not reused:
            tracking.log_params_batched(self.client, run_id, params)
            self.log_metrics(run_id, metrics, step=0)
        return run_id, reused

    def finish_child(self, run_id: str, status: str, reason: str, mlflow_status: str) -> None:
        self.client.set_tag(run_id, STATUS_TAG, status)
        self.client.set_tag(run_id, REASON_TAG, reason[:5000])
        if self.client.get_run(run_id).info.status != mlflow_status:
            self.client.set_terminated(run_id, status=mlflow_status)

    def set_pareto(self, run_id: str, on_front: bool) -> None:
        self.client.set_tag(run_id, PARETO_TAG, "true" if on_front else "false")

    # ------------------------------------------------------------------ parent and shared
    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        if not metrics:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, int(step)) for k, v in metrics.items()],
                              synchronous=True)

    def log_parent_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_run_id, path, artifact_path)
