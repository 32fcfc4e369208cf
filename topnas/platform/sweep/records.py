"""The sweep's own record of its trials, and the one rule that decides a trial's status.

Ray Tune snapshots its state only every few seconds and Optuna keeps a RUNNING trial forever after
a kill (both seen by killing a sweep driver), so the sweep keeps a third record that is written
the moment a trial ends: ``<sweep>/trials.jsonl``, one JSON line per finished trial, appended by
the driver only (the Tune callback and, for latency-infeasible proposals, the searcher; both run in
the driver process). :meth:`Ledger.append` checks the trial id under a file lock: a trial already
recorded (Tune re-ran it for one iteration after a resume) is never appended again, so the ledger,
the trial's MLflow run and its Optuna trial keep the first verdict.

A finished trial is written ahead to ``<sweep>/pending.jsonl`` (:class:`PendingTrials`) before
its MLflow run is closed and its ledger line appended; an entry stays there until both succeeded,
and the driver records it again at the end of the sweep or on ``--resume``.

From it come the front (:func:`load_trials`, :func:`load_front`), the MLflow ``pareto`` tags and
the parent run's artifacts; none of them needs Ray, Optuna or the tracking server.

Status rule (:func:`trial_status`): a trial is ``completed`` when its last result holds a finite
``val_mIoU`` at the full proxy budget (``iteration >= proxy.iterations``), ``early_stopped`` when
the result is finite but earlier (only ASHA stops a trial early), ``failed`` otherwise; latency
over the budget makes a proposal ``infeasible`` before any trial exists.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from topnas.errors import ConfigError
from topnas.platform.pareto import finite_or_none

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "KIND_SWEEP",
    "KIND_TRIAL",
    "LEDGER_FILE",
    "PENDING_FILE",
    "OPTUNA_TAG",
    "PARETO_TAG",
    "REASON_TAG",
    "STATE_FILE",
    "STATUS_TAG",
    "SWEEP_TAG",
    "TRIAL_TAG",
    "VARIANT_TAG",
    "Ledger",
    "PendingTrials",
    "SweepState",
    "TrialRecord",
    "frame",
    "load_front",
    "load_trials",
    "resolve_sweep_dir",
    "trial_status",
]

# MLflow tags (parent: SWEEP_TAG + kind sweep; child: every one of these).
SWEEP_TAG = "topnas.sweep"
KIND_TAG = "topnas.kind"
KIND_SWEEP = "sweep"
KIND_TRIAL = "sweep_trial"
STATUS_TAG = "topnas.status"
REASON_TAG = "topnas.status_reason"
VARIANT_TAG = "topnas.variant_id"
TRIAL_TAG = "topnas.trial_id"
OPTUNA_TAG = "topnas.optuna_trial"
PARETO_TAG = "pareto"
ATTEMPTS_TAG = "topnas.train_attempts"

LEDGER_FILE = "trials.jsonl"
PENDING_FILE = "pending.jsonl"
STATE_FILE = "state.json"
CONFIG_FILE = "sweep.yaml"
SPACE_FILE = "search_space.yaml"
OPTUNA_FILE = "optuna.db"
TUNE_DIR = "tune"
TRAIN_DIR = "train"
PARETO_DIR = "pareto"
PARETO_CSV = "pareto.csv"  # the front table: under PARETO_DIR, and an artifact of the parent run


@dataclass
class TrialRecord:
    """One finished trial as the sweep remembers it (a row of the front's DataFrame)."""

    trial_id: str  # the Ray Tune trial id; "infeasible-<optuna number>" for proposals never launched
    variant_id: str
    status: str
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
                 error_reason: str = "") -> tuple[str, str]:
    """``(status, reason)`` of a finished trial from its last Tune result (see module docstring)."""
    if error:
        return "failed", error_reason or "the trial raised (see the Ray Tune trial's error.txt)"
    result = result or {}
    miou = finite_or_none(result.get("val_mIoU"))
    if miou is None:
        if result.get("val_mIoU") is None:
            return "failed", "ended without reporting an evaluation"
        return "failed", f"val_mIoU is {result.get('val_mIoU')!r}"
    it = result.get("iteration")
    if it is None:
        return "failed", "the last result has no `iteration`"
    if int(it) >= iterations:
        return "completed", ""
    return "early_stopped", f"stopped by ASHA at iteration {int(it)}/{iterations}"


# ----------------------------------------------------------------------------- files
class Ledger:
    """Append-only ``trials.jsonl``, one line per trial; :meth:`records` gives them in finish order."""

    def __init__(self, sweep_dir: str | os.PathLike[str]) -> None:
        self.path = Path(sweep_dir) / LEDGER_FILE

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
        self.path = Path(sweep_dir) / PENDING_FILE

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
        with _locked(self.path):
            keep = [e for e in self.entries() if e["trial_id"] != trial_id]
            if not keep:
                self.path.unlink(missing_ok=True)
                return
            tmp = self.path.with_name(self.path.name + ".partial")
            tmp.write_text("".join(json.dumps(e, sort_keys=True, default=_jsonable) + "\n" for e in keep))
            os.replace(tmp, self.path)

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


@dataclass
class SweepState:
    """``state.json``: what a resumed driver or ``topnas pareto show`` needs besides the config."""

    name: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    reference_point: dict[str, float]
    predictor_id: str
    created: float = 0.0
    status: str = "running"  # running | finished | failed
    predictor_label: str = ""        # device + predictor id, for plot axes and tables
    predictor_provenance: str = ""   # what the latency numbers rest on (calibration sources)

    def save(self, sweep_dir: str | os.PathLike[str]) -> Path:
        from topnas.fileio import atomic_write_text

        return atomic_write_text(Path(sweep_dir) / STATE_FILE, json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, sweep_dir: str | os.PathLike[str]) -> "SweepState":
        path = Path(sweep_dir) / STATE_FILE
        if not path.is_file():
            raise ConfigError("sweep", str(sweep_dir), "a sweep folder holding state.json",
                              hint="start it with `topnas sweep <yaml>`")
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            missing = sorted(f for f, d in cls.__dataclass_fields__.items()
                             if f not in data and d.default is MISSING and d.default_factory is MISSING)
            if missing:
                raise TypeError(f"missing {', '.join(missing)}")
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
            why = "empty" if path.stat().st_size == 0 else f"not a sweep state ({str(exc).splitlines()[0]})"
            raise ConfigError("state.json", str(path), "the JSON a sweep writes at its start", hint=(
                f"the file is {why}; its parent run id and reference point are lost with it: start the sweep "
                "again under a new name (--set name=...), or restore the file (keys: "
                f"{', '.join(cls.__dataclass_fields__)}; the sweep's MLflow parent run has the tag "
                f"topnas.sweep={Path(sweep_dir).name})")) from None


def resolve_sweep_dir(sweep: str | os.PathLike[str], storage: str | os.PathLike[str] | None = None) -> Path:
    """A sweep name (under ``storage`` or ``<runs>/sweeps``) or a sweep folder path -> its folder."""
    from topnas.platform.paths import runs_root

    text = str(sweep)
    candidate = Path(text)
    if (candidate / STATE_FILE).is_file() or (candidate / LEDGER_FILE).is_file():
        return candidate.absolute()
    root = Path(storage) if storage else runs_root() / "sweeps"
    folder = root / text
    if folder.is_dir():
        return folder
    known = sorted(p.name for p in root.iterdir() if (p / STATE_FILE).is_file()) if root.is_dir() else []
    raise ConfigError("sweep", text, known or f"a sweep under {root} (none yet)",
                      hint="a sweep name or a sweep folder")


# ----------------------------------------------------------------------------- DataFrames
def frame(records: Iterable[TrialRecord]) -> pd.DataFrame:
    """Records -> the :mod:`topnas.platform.pareto_plots` column contract, with ``pareto`` computed."""
    import pandas as pd

    from topnas.platform.pareto_plots import COLUMNS, add_pareto_column

    rows = []
    for r in records:
        rows.append({
            "trial_id": r.trial_id, "variant_id": r.variant_id, "status": r.status,
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
