"""The driver's Tune callback: the single writer of the sweep's record, front, tags and artifacts.

On every finished trial (``on_trial_complete`` / ``on_trial_error``) it decides the trial's status
(:func:`~topnas.platform.sweep.records.trial_status`), closes the child run with it, appends the
trial to ``trials.jsonl`` and refreshes the front: ``pareto=true|false`` on every child whose
membership changed, ``hypervolume`` and status counts on the parent (step = finished trials), and
``pareto.csv`` / ``pareto_front.png`` / ``pareto_front.html`` / ``hypervolume.png`` written under
``<sweep>/pareto/`` and logged to the parent run. At the end of the experiment a child left
``running`` by a killed driver that no Tune trial owns any more is closed as failed (abandoned).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from ray.tune import Callback

from topnas.platform import pareto as P
from topnas.platform.sweep import records as R
from topnas.platform.sweep.config import OBJECTIVES, SweepConfig
from topnas.platform.sweep.moasha import record_stop
from topnas.platform.sweep.searcher import META_KEY
from topnas.platform.sweep.tracker import SweepTracker, child_metrics, child_params, child_tags
from topnas.platform.sweep.trial import run_name_of

__all__ = ["ARTIFACTS", "SweepCallback", "refresh_front"]

log = logging.getLogger(__name__)

ARTIFACTS = ("pareto.csv", "pareto_front.png", "pareto_front.html", "hypervolume.png")
_MLFLOW_STATUS = {"completed": "FINISHED", "early_stopped": "KILLED", "failed": "FAILED"}


class SweepCallback(Callback):
    """See module docstring. Picklable: Tune stores it in ``tuner.pkl`` and restores it on resume."""

    def __init__(self, cfg: SweepConfig, tracker: SweepTracker, state: R.SweepState) -> None:
        self.cfg = cfg
        self.tracker = tracker
        self.state = state
        self._pareto_tags: dict[str, bool] = {}
        self._hv_steps: set[int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pareto_tags": {}, "_hv_steps": None}

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._close_abandoned()
        self.refresh()

    # ------------------------------------------------------------------ work
    def _finish(self, trial: Any, error: bool) -> None:
        try:
            self._record(trial, error)
            self.refresh()
        except Exception:  # noqa: BLE001 - a tracking hiccup must not stop the sweep; resume re-records
            log.exception("could not record trial %s", trial.trial_id)

    def _record(self, trial: Any, error: bool) -> R.TrialRecord:
        cfg, tracker = self.cfg, self.tracker
        result = dict(trial.last_result or {})
        meta = dict(trial.config.get(META_KEY) or {})
        point = {k: trial.config[k] for k in cfg.space.parameters()}
        variant = cfg.space.build(point)
        status, reason = R.trial_status(result, error, cfg.proxy.iterations, _error_reason(trial) if error else "")
        run_name = run_name_of(trial.trial_id, variant.id)
        run = tracker.child_of_trial(trial.trial_id)
        if run is None:  # died before its training run existed: the failure still gets its child run
            tags = child_tags(cfg.name, trial.trial_id, meta.get("optuna_trial"), variant, status)
            run_id, _ = tracker.create_child(f"sweep:{cfg.name}:trial:{trial.trial_id}", run_name, tags,
                                             child_params(point, variant, meta, self.state.predictor_id),
                                             child_metrics(meta))
            metrics: dict[str, float] = {}
        else:
            run_id, metrics = run.info.run_id, dict(run.data.metrics)
            if status == "failed" and run.data.tags.get(R.STATUS_TAG) == "failed" and run.data.tags.get(R.REASON_TAG):
                reason = run.data.tags[R.REASON_TAG]  # the trial's own, more precise reason
        tracker.finish_child(run_id, status, reason, _MLFLOW_STATUS[status])
        rung = record_stop(cfg.sweep_dir, trial.trial_id, tracker, run_id) if status == "early_stopped" else {}
        record = R.TrialRecord(
            trial_id=trial.trial_id, variant_id=variant.id, status=status, reason=reason,
            optuna_trial=meta.get("optuna_trial"),
            val_mIoU=result.get("val_mIoU") if status != "failed" else None,
            iteration=result.get("iteration"), latency_ms=meta.get("latency_ms"), latency_lo=meta.get("latency_lo"),
            latency_hi=meta.get("latency_hi"), latency_out_of_range=bool(meta.get("out_of_range")),
            params=_int(metrics.get("params")), macs=_int(metrics.get("macs")), run_id=run_id, run_name=run_name,
            preset=variant.preset or "", config=variant.to_dict(), point=point, **rung)
        R.Ledger(cfg.sweep_dir).append(record)
        log.info("trial %s (%s): %s%s", trial.trial_id, variant.id, status, f" - {reason}" if reason else "")
        return record

    def _close_abandoned(self) -> None:
        """Children still ``running`` that no Tune trial finished: started just before a kill, never resumed."""
        try:
            known = {r.trial_id for r in R.Ledger(self.cfg.sweep_dir).records()}
            for run in self.tracker.children():
                tags = run.data.tags
                trial_id = tags.get(R.TRIAL_TAG, "")
                if tags.get(R.STATUS_TAG) != "running" or trial_id in known:
                    continue
                reason = ("abandoned: the driver was killed after this trial started and before Ray Tune "
                          "saved it; its Optuna trial was closed as FAIL on resume")
                self.tracker.finish_child(run.info.run_id, "failed", reason, "KILLED")
                m = run.data.metrics
                R.Ledger(self.cfg.sweep_dir).append(R.TrialRecord(
                    trial_id=trial_id, variant_id=tags.get(R.VARIANT_TAG, ""), status="failed", reason=reason,
                    optuna_trial=_int(tags.get(R.OPTUNA_TAG)), latency_ms=m.get("latency_ms"),
                    latency_lo=m.get("latency_lo"), latency_hi=m.get("latency_hi"), params=_int(m.get("params")),
                    macs=_int(m.get("macs")), run_id=run.info.run_id, run_name=run.info.run_name or ""))
                log.warning("trial %s: %s", trial_id, reason)
        except Exception:  # noqa: BLE001
            log.exception("could not close abandoned child runs")

    def refresh(self) -> None:
        """Pareto tags, hypervolume and artifacts from ``trials.jsonl`` (the driver is the only writer)."""
        try:
            refresh_front(self.cfg, self.state, self.tracker, self._pareto_tags, self._logged_hv_steps())
        except Exception:  # noqa: BLE001
            log.exception("could not refresh the Pareto front")

    def _logged_hv_steps(self) -> set[int]:
        if self._hv_steps is None:
            history = self.tracker.client.get_metric_history(self.tracker.parent_run_id, "hypervolume")
            self._hv_steps = {int(m.step) for m in history}
        return self._hv_steps


def refresh_front(cfg: SweepConfig, state: R.SweepState, tracker: SweepTracker,
                  pareto_tags: dict[str, bool] | None = None, logged_steps: set[int] | None = None) -> dict[str, Any]:
    """Recompute the front from the ledger; update child tags, parent metrics and artifacts.

    ``pareto_tags`` (run id -> last flag set) and ``logged_steps`` (hypervolume steps already on the
    parent) are caches the caller keeps between calls; ``None`` means "unknown, write everything".
    Returns ``{"hypervolume", "n_finished", "front_size", "counts"}``.
    """
    from topnas.platform.pareto_plots import write_front_html, write_front_png, write_hypervolume_png

    pareto_tags = {} if pareto_tags is None else pareto_tags
    logged_steps = set() if logged_steps is None else logged_steps
    df = R.frame(R.Ledger(cfg.sweep_dir).records())
    for run_id, flag in zip(df["run_id"], df["pareto"]):
        if run_id and pareto_tags.get(run_id) != bool(flag):
            tracker.set_pareto(run_id, bool(flag))
            pareto_tags[run_id] = bool(flag)

    points = P.points_from_records(df.to_dict("records"), OBJECTIVES)
    history = P.hypervolume_history(points, state.reference_point, OBJECTIVES)
    n_finished, hv = history[-1] if history else (0, 0.0)
    counts = {s: int((df["status"] == s).sum()) for s in ("completed", "early_stopped", "infeasible", "failed")}
    front_size = int(df["pareto"].sum()) if not df.empty else 0
    if n_finished and n_finished not in logged_steps:
        tracker.log_metrics(tracker.parent_run_id, {
            "hypervolume": hv, "front_size": front_size, **{f"n_{k}": v for k, v in counts.items()}}, step=n_finished)
        logged_steps.add(n_finished)

    out = cfg.sweep_dir / R.PARETO_DIR
    out.mkdir(parents=True, exist_ok=True)
    title = f"{cfg.name}: {front_size} on the front of {len(df)} trials (hypervolume {hv:.4g})"
    df.to_csv(out / "pareto.csv", index=False)
    write_front_png(df, out / "pareto_front.png", title=title, latency_budget=cfg.latency.budget_ms)
    write_front_html(df, out / "pareto_front.html", title=title)
    write_hypervolume_png(history, out / "hypervolume.png", title=f"{cfg.name}: hypervolume "
                          f"(reference: mIoU {state.reference_point['val_mIoU']:g}, "
                          f"{state.reference_point['latency_ms']:.1f} ms)")
    for name in ARTIFACTS:
        tracker.log_parent_artifact(str(out / name))
    return {"hypervolume": hv, "n_finished": n_finished, "front_size": front_size, "counts": counts}


def _error_reason(trial: Any) -> str:
    """The last line of the trial's error trace (Tune's error.txt), else a pointer to it."""
    text = ""
    with contextlib.suppress(Exception):
        text = str(trial.get_error() or "")
    if not text:
        path = getattr(trial, "error_file", None)
        if path and Path(path).is_file():
            text = Path(path).read_text(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "the trial raised (see the Ray Tune trial's error.txt)"


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None

