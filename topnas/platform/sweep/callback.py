"""The driver's Tune callback: the single writer of the sweep's record, front, tags and artifacts.

On every finished trial (``on_trial_complete`` / ``on_trial_error``) it decides the trial's status
(:func:`~topnas.platform.sweep.ledger.trial_status`), closes the child run with it (the trial
opened the run; this is the only place a trial's run is closed and its final status set), appends the
trial to ``trials.jsonl`` and refreshes the front: ``pareto=true|false`` on every child whose
membership changed, ``hypervolume`` and status counts on the parent (step = finished trials), and
``pareto.csv`` / ``pareto_front.png`` / ``pareto_front.html`` / ``hypervolume.png`` written under
``<sweep>/pareto/`` and logged to the parent run. Drawing and uploading those files takes seconds
and Tune waits for its callbacks before it starts the next trial, so during the sweep they are
drawn on a background thread, from the newest front only (a front superseded before its turn is
skipped); :func:`settle` draws them in the caller's thread, so they match the ledger at the end
of a sweep and after ``--resume``.

Nothing is lost when recording fails (say the tracking server is down): the finished trial is
written ahead to ``pending.jsonl`` first and leaves it only once its MLflow run is closed and its
ledger line written. :func:`settle` records what is still pending, closes the child runs a killed
driver left ``running`` (abandoned) and refreshes the front; the runner calls it after the sweep
(then a trial still unrecorded stops the sweep with :class:`RecordError`, naming ``--resume``) and
before a resumed sweep starts Ray. A trial already in the ledger is never recorded again: its MLflow
run is set back to the ledger's verdict, which is also what Optuna was told.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

from ray.tune import Callback

from topnas.errors import TopnasError
from topnas.fileio import atomic_write_text
from topnas.platform import pareto as P
from topnas.platform.objectives import OBJECTIVES, TrialStatus
from topnas.platform.sweep.sweep_config import SweepConfig
from topnas.platform.sweep.layout import PARETO_CSV, PARETO_DIR, SweepState
from topnas.platform.sweep.ledger import (
    Ledger,
    PendingTrials,
    TrialRecord,
    frame,
    trial_status,
)
from topnas.platform.sweep.moasha import record_stop
from topnas.platform.sweep.searcher import META_KEY, variant_of
from topnas.platform.sweep.tags import OPTUNA_TAG, STATUS_TAG, TRIAL_TAG, VARIANT_TAG
from topnas.platform.sweep.mlflow_runs import (
    SweepTracker,
    child_metrics,
    child_params,
    child_tags,
)
from topnas.platform.sweep.trial import run_name_of

__all__ = ["ARTIFACTS", "LatestOnly", "RecordError", "SweepCallback", "finished_entry", "record_finished",
           "record_pending", "refresh_front", "settle"]

log = logging.getLogger(__name__)

ARTIFACTS = (PARETO_CSV, "pareto_front.png", "pareto_front.html", "hypervolume.png")
MLFLOW_STATUS = {TrialStatus.COMPLETED: "FINISHED", TrialStatus.EARLY_STOPPED: "KILLED", TrialStatus.FAILED: "FAILED",
                 TrialStatus.INFEASIBLE: "FINISHED"}
_RESULT_KEYS = ("val_mIoU", "iteration")


class RecordError(TopnasError):
    """Finished trials whose record could not be written (kept in ``pending.jsonl`` for ``--resume``)."""


class SweepCallback(Callback):
    """See module docstring. Picklable: Tune stores it in ``tuner.pkl`` and restores it on resume."""

    def __init__(self, cfg: SweepConfig, tracker: SweepTracker, state: SweepState) -> None:
        self.cfg = cfg
        self.tracker = tracker
        self.state = state
        self._pareto_tags: dict[str, bool] = {}
        self._hv_steps: set[int] | None = None
        self._drawer: LatestOnly | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pareto_tags": {}, "_hv_steps": None, "_drawer": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_drawer": None, **state})  # a tuner.pkl written before the drawer existed

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Best effort here (Tune would only log an exception); the runner settles again, strictly."""
        self.close()
        try:
            settle(self.cfg, self.state, self.tracker, strict=False)
        except Exception:  # noqa: BLE001 - the runner's strict settle() reports it
            log.exception("could not settle the sweep's record at the end of the experiment")

    # ------------------------------------------------------------------ work
    def _finish(self, trial: Any, error: bool) -> None:
        entry = finished_entry(trial, error)
        pending = PendingTrials(self.cfg.sweep_dir)
        pending.add(entry)  # written ahead: if anything below fails, settle()/--resume records it again
        try:
            record_finished(self.cfg, self.tracker, self.state, entry)
        except Exception as exc:  # noqa: BLE001 - kept in pending.jsonl, recorded again by settle()
            log.error("could not record finished trial %s (%s); kept in %s, recorded again at the end of the sweep "
                      "or by `topnas sweep --resume %s`", entry["trial_id"], _first_line(exc), pending.path,
                      self.cfg.name)
            return
        pending.remove(entry["trial_id"])
        self.refresh()

    def refresh(self) -> None:
        """Pareto tags, hypervolume and artifacts from ``trials.jsonl`` (derived; settle() redoes it strictly).

        Tags, metrics and ``pareto.csv`` now; the plots and the uploads on the background thread
        (module docstring).
        """
        if self._drawer is None:
            self._drawer = LatestOnly("topnas-pareto")
        try:
            refresh_front(self.cfg, self.state, self.tracker, self._pareto_tags, self._logged_hv_steps(),
                          draw=self._drawer.submit)
        except Exception:  # noqa: BLE001
            log.exception("could not refresh the Pareto front")

    def close(self) -> None:
        """Wait for the drawing under way; one still waiting is dropped (settle() draws the final front)."""
        if self._drawer is not None:
            self._drawer.close()
            self._drawer = None

    def _logged_hv_steps(self) -> set[int]:
        if self._hv_steps is None:
            history = self.tracker.client.get_metric_history(self.tracker.parent_run_id, "hypervolume")
            self._hv_steps = {int(m.step) for m in history}
        return self._hv_steps


def finished_entry(trial: Any, error: bool) -> dict[str, Any]:
    """What recording a finished Tune trial needs, as plain JSON (no Ray object)."""
    result = dict(trial.last_result or {})
    return {"trial_id": trial.trial_id, "config": dict(trial.config), "error": bool(error),
            "reason": _error_reason(trial) if error else "", "result": {k: result.get(k) for k in _RESULT_KEYS}}


def record_finished(cfg: SweepConfig, tracker: SweepTracker, state: SweepState,
                    entry: Mapping[str, Any]) -> TrialRecord:
    """Close the trial's child run and append its ledger line; a trial already recorded keeps its record.

    Raises whatever MLflow or the file system raises (the caller keeps the entry pending).
    """
    trial_id = entry["trial_id"]
    ledger = Ledger(cfg.sweep_dir)
    known = ledger.get(trial_id)
    if known is not None:  # Tune re-ran it after a resume: the first verdict stands, in MLflow too
        if known.run_id:
            tracker.finish_child(known.run_id, known.status, known.reason, MLFLOW_STATUS[known.status])
        log.info("trial %s was recorded before (%s); not recorded again", trial_id, known.status)
        return known
    result = dict(entry.get("result") or {})
    config = entry["config"]
    meta = dict(config.get(META_KEY) or {})
    point = {k: config[k] for k in cfg.space.parameters()}
    variant = variant_of(config, cfg.space)
    status, reason = trial_status(result, bool(entry.get("error")), cfg.proxy.iterations, entry.get("reason", ""))
    run_name = run_name_of(trial_id, variant.id)
    run = tracker.child_of_trial(trial_id)
    if run is None:  # died before its training run existed: the failure still gets its child run
        tags = child_tags(cfg.name, trial_id, meta.get("optuna_trial"), variant, status)
        run_id, _ = tracker.create_child(f"sweep:{cfg.name}:trial:{trial_id}", run_name, tags,
                                         child_params(point, variant, meta, state.predictor_id, state.predictor_provenance), child_metrics(meta))
        metrics: dict[str, float] = {}
    else:
        run_id, metrics = run.info.run_id, dict(run.data.metrics)
    tracker.finish_child(run_id, status, reason, MLFLOW_STATUS[status])
    rung = record_stop(cfg.sweep_dir, trial_id, tracker, run_id) if status == TrialStatus.EARLY_STOPPED else {}
    record = TrialRecord(
        trial_id=trial_id, variant_id=variant.id, status=status, reason=reason,
        optuna_trial=meta.get("optuna_trial"),
        val_mIoU=result.get("val_mIoU") if status != TrialStatus.FAILED else None,
        iteration=result.get("iteration"), latency_ms=meta.get("latency_ms"), latency_lo=meta.get("latency_lo"),
        latency_hi=meta.get("latency_hi"), latency_out_of_range=bool(meta.get("out_of_range")),
        params=_int(metrics.get("params")), macs=_int(metrics.get("macs")), run_id=run_id, run_name=run_name,
        preset=variant.preset or "", config=variant.to_dict(), point=point, **rung)
    ledger.append(record)
    log.info("trial %s (%s): %s%s", trial_id, variant.id, status, f" - {reason}" if reason else "")
    return record


def record_pending(cfg: SweepConfig, tracker: SweepTracker, state: SweepState) -> dict[str, str]:
    """Record every entry of ``pending.jsonl``; returns ``{trial id: error}`` of those still failing."""
    pending = PendingTrials(cfg.sweep_dir)
    failed: dict[str, str] = {}
    for entry in pending.entries():
        try:
            record_finished(cfg, tracker, state, entry)
        except Exception as exc:  # noqa: BLE001 - collected and reported by the caller
            failed[entry["trial_id"]] = _first_line(exc)
            continue
        pending.remove(entry["trial_id"])
        log.info("trial %s: recorded from %s", entry["trial_id"], pending.path.name)
    return failed


def settle(cfg: SweepConfig, state: SweepState, tracker: SweepTracker, *, close_abandoned: bool = True,
           strict: bool = True) -> None:
    """Pending trials recorded, abandoned children closed, the front refreshed (see module docstring).

    ``strict``: raise :class:`RecordError` (one line: how many, the first error, what to do) when a
    pending trial still cannot be recorded, and let any other error through; else only log.
    """
    failed = record_pending(cfg, tracker, state)
    if failed:
        first = next(iter(failed.items()))
        msg = (f"sweep {cfg.name}: {len(failed)} finished trial(s) could not be recorded (trial {first[0]}: "
               f"{first[1]}); they are kept in {PendingTrials(cfg.sweep_dir).path}: when the tracking server "
               f"is reachable, run `topnas sweep --resume {cfg.name}` to record them")
        if strict:
            raise RecordError(msg)
        log.error(msg)
    try:
        if close_abandoned:
            _close_abandoned(cfg, tracker, set(failed))
        refresh_front(cfg, state, tracker)
    except Exception:
        if strict:
            raise
        log.exception("could not close abandoned child runs / refresh the front")


def _close_abandoned(cfg: SweepConfig, tracker: SweepTracker, pending: set[str]) -> None:
    """Children still ``running`` that no Tune trial finished: started just before a kill, never resumed."""
    known = Ledger(cfg.sweep_dir).trial_ids() | pending
    for run in tracker.children():
        tags = run.data.tags
        trial_id = tags.get(TRIAL_TAG, "")
        if tags.get(STATUS_TAG) != TrialStatus.RUNNING or trial_id in known:
            continue
        reason = ("abandoned: the driver was killed after this trial started and before Ray Tune "
                  "saved it; its Optuna trial was closed as FAIL on resume")
        tracker.finish_child(run.info.run_id, TrialStatus.FAILED, reason, "KILLED")
        m = run.data.metrics
        Ledger(cfg.sweep_dir).append(TrialRecord(
            trial_id=trial_id, variant_id=tags.get(VARIANT_TAG, ""), status=TrialStatus.FAILED, reason=reason,
            optuna_trial=_int(tags.get(OPTUNA_TAG)), latency_ms=m.get("latency_ms"),
            latency_lo=m.get("latency_lo"), latency_hi=m.get("latency_hi"), params=_int(m.get("params")),
            macs=_int(m.get("macs")), run_id=run.info.run_id, run_name=run.info.run_name or ""))
        log.warning("trial %s: %s", trial_id, reason)


def refresh_front(cfg: SweepConfig, state: SweepState, tracker: SweepTracker,
                  pareto_tags: dict[str, bool] | None = None, logged_steps: set[int] | None = None,
                  draw: Callable[[Callable[[], None]], None] | None = None) -> dict[str, Any]:
    """Recompute the front from the ledger; update child tags, parent metrics, ``pareto.csv`` and artifacts.

    ``pareto_tags`` (run id -> last flag set) and ``logged_steps`` (hypervolume steps already on the
    parent) are caches the caller keeps between calls; ``None``: write every tag, read the steps
    from the parent's metric history (a step is never logged twice). ``draw`` runs the job that
    draws the plots and logs the four files (e.g. :meth:`LatestOnly.submit`); ``None``: done here.
    Returns ``{"hypervolume", "n_finished", "front_size", "counts"}``.
    """
    pareto_tags = {} if pareto_tags is None else pareto_tags
    if logged_steps is None:
        logged_steps = {int(m.step) for m in tracker.client.get_metric_history(tracker.parent_run_id, "hypervolume")}
    df = frame(Ledger(cfg.sweep_dir).records())
    for run_id, flag in zip(df["run_id"], df["pareto"]):
        if run_id and pareto_tags.get(run_id) != bool(flag):
            tracker.set_pareto(run_id, bool(flag))
            pareto_tags[run_id] = bool(flag)

    points = P.points_from_records(df.to_dict("records"), OBJECTIVES)
    history = P.hypervolume_history(points, state.reference_point, OBJECTIVES)
    n_finished, hv = history[-1] if history else (0, 0.0)
    counts = {str(s): int((df["status"] == s).sum()) for s in (TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED,
                                                              TrialStatus.INFEASIBLE, TrialStatus.FAILED)}
    front_size = int(df["pareto"].sum()) if not df.empty else 0
    if n_finished and n_finished not in logged_steps:
        tracker.log_metrics(tracker.parent_run_id, {
            "hypervolume": hv, "front_size": front_size, **{f"n_{k}": v for k, v in counts.items()}}, step=n_finished)
        logged_steps.add(n_finished)

    out = cfg.sweep_dir / PARETO_DIR
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / PARETO_CSV, df.to_csv(index=False))  # read while the next one is written
    title = f"{cfg.name}: {front_size} on the front of {len(df)} trials (hypervolume {hv:.4g})"
    def job() -> None:
        _draw_front(cfg, state, tracker, df, history, title)

    if draw is None:
        job()
    else:
        draw(job)
    return {"hypervolume": hv, "n_finished": n_finished, "front_size": front_size, "counts": counts}


def _draw_front(cfg: SweepConfig, state: SweepState, tracker: SweepTracker, df: Any,
                history: list[tuple[int, float]], title: str) -> None:
    """The three plots of one front, then the four files logged to the parent run."""
    from topnas.platform.pareto_plots import (
        write_front_html,
        write_front_png,
        write_hypervolume_png,
    )

    from topnas.platform.sweep.fidelity import load_fidelity
    from topnas.platform.sweep.layout import SweepFolder

    out = cfg.sweep_dir / PARETO_DIR
    fidelity = load_fidelity(SweepFolder(cfg.sweep_dir).fidelity)  # written when the sweep started
    noise = fidelity.seed_noise if fidelity is not None else None
    write_front_png(df, out / "pareto_front.png", title=title, latency_budget=cfg.latency.budget_ms,
                    predictor=state.predictor_label, miou_noise=noise)
    write_front_html(df, out / "pareto_front.html", title=title, predictor=state.predictor_label, miou_noise=noise)
    write_hypervolume_png(history, out / "hypervolume.png", title=f"{cfg.name}: hypervolume "
                          f"(reference: mIoU {state.reference_point['val_mIoU']:g}, "
                          f"{state.reference_point['latency_ms']:.1f} ms)")
    for name in ARTIFACTS:
        tracker.log_parent_artifact(str(out / name))


class LatestOnly:
    """One background thread running the newest job submitted: a job still waiting when a newer one
    arrives is dropped (a front superseded before it was drawn). Errors are logged, never raised."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._waiting: Callable[[], None] | None = None

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            scheduled = self._waiting is not None  # a run is queued and will take the newest job
            self._waiting = job
            if not scheduled:
                self._pool.submit(self._run)

    def _run(self) -> None:
        with self._lock:
            job, self._waiting = self._waiting, None
        if job is None:  # dropped by close()
            return
        try:
            job()
        except Exception:  # noqa: BLE001 - derived files; settle() draws them again, strictly
            log.exception("could not draw the Pareto front")

    def close(self) -> None:
        """Wait for the job under way; the one waiting, if any, is dropped."""
        with self._lock:
            self._waiting = None
        self._pool.shutdown(wait=True)


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


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None

