"""The sweep's own record of its trials, and the one rule that decides a trial's status.

Ray Tune snapshots its state only every few seconds and Optuna keeps a RUNNING trial forever after
a kill (both seen by killing a sweep driver), so the sweep keeps a third record that is written
the moment a trial ends: ``<sweep>/trials.jsonl``, one JSON line per finished trial. :class:`Ledger`
is its only writer (:meth:`Ledger.append`, used by the driver only: the Tune callback and, for
latency-infeasible proposals, the searcher; both run in the driver process). The append checks the
trial id under a file lock: a trial already recorded (Tune re-ran it for one iteration after a
resume) is never appended again, so the ledger, the trial's MLflow run and its Optuna trial keep
the first verdict.

A finished trial is written ahead to ``<sweep>/pending.jsonl`` (:class:`PendingTrials`) before
its MLflow run is closed and its ledger line appended; an entry stays there until both succeeded,
and the driver records it again at the end of the sweep or on ``--resume``.

From it come the front (:func:`load_trials`, :func:`load_front`), the MLflow ``pareto`` tags and
the parent run's artifacts; none of them needs Ray, Optuna or the tracking server.

Status rule (:func:`trial_status`): a trial is ``completed`` when its last result holds a finite
``val_mIoU`` at the full proxy budget (``iteration >= proxy.iterations``), ``early_stopped`` when
the result is finite but earlier (only a rung scheduler stops a trial early), ``failed`` otherwise;
latency over the budget makes a proposal ``infeasible`` before any trial exists.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from topnas.platform.objectives import TrialStatus
from topnas.platform.pareto import finite_or_none
from topnas.platform.sweep.layout import SweepFolder, resolve_sweep_dir

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Ledger", "PendingTrials", "TrialRecord", "frame", "load_front", "load_trials", "trial_status"]


@dataclass
class TrialRecord:
    """One finished trial as the sweep remembers it (a row of the front's DataFrame)."""

    trial_id: str  # the Ray Tune trial id; "infeasible-<optuna number>" for proposals never launched
    variant_id: str
    status: str  # a TrialStatus
    reason: str = ""
    optuna_trial: int | None = None
    val_mIoU: float | None = None
    iteration: int | None = None
    latency_ms: float | None = None
    latency_lo: float | None = None
    latency_hi: float | None = None
    latency_out_of_range: bool = False
    params: int | None = None
    macs: int | None = None
    run_id: str = ""
    run_name: str = ""
    preset: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # Variant.to_dict()
    point: dict[str, Any] = field(default_factory=dict)  # the search-space point
    finished_at: float = 0.0
    rung: int | None = None  # early_stopped: the rung (iteration) whose decision stopped it (moasha.py)
    rung_front: list[str] = field(default_factory=list)  # ... and the trial ids on that rung's front then

    def to_json(self) -> str:
        data = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}
        return json.dumps(data, sort_keys=True, allow_nan=False, default=_jsonable)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialRecord":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def trial_status(result: Mapping[str, Any] | None, error: bool, iterations: int,
                 error_reason: str = "") -> tuple[TrialStatus, str]:
    """``(status, reason)`` of a finished trial from its last Tune result (see module docstring)."""
    if error:
        return TrialStatus.FAILED, error_reason or "the trial raised (see the Ray Tune trial's error.txt)"
    result = result or {}
    miou = finite_or_none(result.get("val_mIoU"))
    if miou is None:
        if result.get("val_mIoU") is None:
            return TrialStatus.FAILED, "ended without reporting an evaluation"
        return TrialStatus.FAILED, f"val_mIoU is {result.get('val_mIoU')!r}"
    it = result.get("iteration")
    if it is None:
        return TrialStatus.FAILED, "the last result has no `iteration`"
    if int(it) >= iterations:
        return TrialStatus.COMPLETED, ""
    return TrialStatus.EARLY_STOPPED, f"stopped by ASHA at iteration {int(it)}/{iterations}"


# ----------------------------------------------------------------------------- files
class Ledger:
    """Append-only ``trials.jsonl``, one line per trial; :meth:`records` gives them in finish order.

    The only code that writes ``trials.jsonl``.
    """

    def __init__(self, sweep_dir: str | os.PathLike[str]) -> None:
        self.path = SweepFolder(sweep_dir).ledger

    def append(self, record: TrialRecord) -> bool:
        """Append ``record`` unless its trial id is already recorded; True when a line was written.

        The check and the write happen under an exclusive lock on ``trials.jsonl.lock``, so even a
        second writer by mistake cannot add a second line for a trial.
        """
        if not record.finished_at:
            record.finished_at = time.time()
        with _locked(self.path):
            if record.trial_id in self.trial_ids():
                return False
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(_newline_if_torn(self.path) + record.to_json() + "\n")
                f.flush()
                os.fsync(f.fileno())
        return True

    def get(self, trial_id: str) -> TrialRecord | None:
        return next((r for r in self.records() if r.trial_id == trial_id), None)

    def trial_ids(self) -> set[str]:
        return {r.trial_id for r in self.records()}

    def records(self) -> list[TrialRecord]:
        """The first line of every trial (older files may hold two), in finish order."""
        out: dict[str, TrialRecord] = {}
        for data in _read_jsonl(self.path):
            try:
                rec = TrialRecord.from_dict(data)
            except (TypeError, AttributeError):
                continue
            out.setdefault(rec.trial_id, rec)
        return list(out.values())


class PendingTrials:
    """``pending.jsonl``: finished trials written ahead of their record (see module docstring).

    Each entry is plain JSON (trial id, config, last result, error flag and reason), enough to
    record the trial again without Ray. The driver is the only writer; the file is rewritten whole
    (temp file + rename) when an entry is removed.
    """

    def __init__(self, sweep_dir: str | os.PathLike[str]) -> None:
        self.path = SweepFolder(sweep_dir).pending

    def add(self, entry: Mapping[str, Any]) -> None:
        with _locked(self.path):
            if entry["trial_id"] in {e["trial_id"] for e in self.entries()}:
                return
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(_newline_if_torn(self.path) + json.dumps(dict(entry), sort_keys=True, default=_jsonable)
                        + "\n")
                f.flush()
                os.fsync(f.fileno())

    def remove(self, trial_id: str) -> None:
        from topnas.fileio import atomic_write_text

        with _locked(self.path):
            keep = [e for e in self.entries() if e["trial_id"] != trial_id]
            if not keep:
                self.path.unlink(missing_ok=True)
                return
            atomic_write_text(self.path, "".join(json.dumps(e, sort_keys=True, default=_jsonable) + "\n"
                                                 for e in keep))

    def entries(self) -> list[dict[str, Any]]:
        return [e for e in _read_jsonl(self.path) if isinstance(e, dict) and "trial_id" in e]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _newline_if_torn(path: Path) -> str:
    """A newline to end a line cut by a kill mid-write, so the next line is not glued to it."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return "" if f.read(1) == b"\n" else "\n"
    except OSError:  # missing or empty
        return ""


def _read_jsonl(path: Path) -> list[Any]:
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
    return out


# ----------------------------------------------------------------------------- DataFrames
def frame(records: Iterable[TrialRecord]) -> pd.DataFrame:
    """Records -> the :mod:`topnas.platform.pareto_plots` column contract, with ``pareto`` computed."""
    import pandas as pd

    from topnas.platform.pareto_plots import COLUMNS, add_pareto_column

    rows = []
    for r in records:
        rows.append({
            "trial_id": r.trial_id, "variant_id": r.variant_id, "status": str(r.status),
            "val_mIoU": _nan(r.val_mIoU), "latency_ms": _nan(r.latency_ms), "latency_lo": _nan(r.latency_lo),
            "latency_hi": _nan(r.latency_hi), "params": _nan(r.params), "macs": _nan(r.macs),
            "run_id": r.run_id, "preset": r.preset or "", "config": json.dumps(r.config, sort_keys=True),
            "pareto": False, "reason": r.reason, "optuna_trial": r.optuna_trial, "iteration": r.iteration,
            "latency_out_of_range": bool(r.latency_out_of_range), "finished_at": r.finished_at,
        })
    extra = ["reason", "optuna_trial", "iteration", "latency_out_of_range", "finished_at"]
    df = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    if df.empty:
        return df
    return add_pareto_column(df)


def load_trials(sweep: str | os.PathLike[str], storage: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every finished trial of a sweep (name or folder), in finish order, with a ``pareto`` column."""
    return frame(Ledger(resolve_sweep_dir(sweep, storage)).records())


def load_front(sweep: str | os.PathLike[str], storage: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The Pareto front of a sweep: completed, non-dominated trials (ties and duplicates kept).

    Example::

        >>> front = load_front("demo_fixture")          # doctest: +SKIP
        >>> front[["variant_id", "val_mIoU", "latency_ms", "run_id"]]   # doctest: +SKIP
    """
    df = load_trials(sweep, storage)
    return df[df["pareto"]].reset_index(drop=True) if not df.empty else df


# ----------------------------------------------------------------------------- helpers
def _nan(value: Any) -> float:
    v = finite_or_none(value)
    return math.nan if v is None else v


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
