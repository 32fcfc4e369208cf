"""A sweep's folder: the name of every file in it, the resolver from a name to the folder, the saved state.

``<runs>/sweeps/<name>/`` (``storage:`` moves ``<runs>/sweeps``)::

    sweep.yaml          the resolved config (what --resume reads back)
    search_space.yaml   the resolved search space
    state.json          parent run id, experiment id, tracking URI, hypervolume reference, status
    optuna.db           the Optuna study (SQLite, study name = sweep name; optuna-dashboard reads it)
    trials.jsonl        the driver's record of every finished trial (:mod:`.ledger`)
    pending.jsonl       finished trials written ahead of their record (:mod:`.ledger`)
    rungs.jsonl         every rung decision of a rung scheduler (:mod:`.moasha`)
    proxy_fidelity.json the proxy's measured seed noise, when the config names a table
    pareto/             pareto.csv, pareto_front.png, pareto_front.html, hypervolume.png (also on MLflow)
    tune/               Ray Tune experiment state (tuner.pkl, experiment_state-*.json, searcher state, trials)
    train/<trial>-<variant>/   each trial's Ray Train run: checkpoints, resumable

Every other module (and ``promote``) reaches these files through :class:`SweepFolder`, never by
literal names.
"""
from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass
from enum import StrEnum
from pathlib import Path

from topnas.errors import ConfigError

__all__ = [
    "CONFIG_FILE", "FIDELITY_FILE", "LEDGER_FILE", "OPTUNA_FILE", "PARETO_CSV", "PARETO_DIR", "PENDING_FILE", "RUNG_FILE",
    "SPACE_FILE", "STATE_FILE", "TRAIN_DIR", "TUNE_DIR", "SweepFolder", "SweepState", "SweepStatus", "resolve_sweep_dir",
]

CONFIG_FILE = "sweep.yaml"
SPACE_FILE = "search_space.yaml"
STATE_FILE = "state.json"
OPTUNA_FILE = "optuna.db"
LEDGER_FILE = "trials.jsonl"
PENDING_FILE = "pending.jsonl"
RUNG_FILE = "rungs.jsonl"
FIDELITY_FILE = "proxy_fidelity.json"
PARETO_DIR = "pareto"
PARETO_CSV = "pareto.csv"  # the front table: under PARETO_DIR, and an artifact of the parent run
TUNE_DIR = "tune"
TRAIN_DIR = "train"


@dataclass(frozen=True)
class SweepFolder:
    """The paths of one sweep's folder (nothing is created or read here)."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    config = property(lambda self: self.root / CONFIG_FILE)
    space = property(lambda self: self.root / SPACE_FILE)
    state = property(lambda self: self.root / STATE_FILE)
    optuna = property(lambda self: self.root / OPTUNA_FILE)
    ledger = property(lambda self: self.root / LEDGER_FILE)
    pending = property(lambda self: self.root / PENDING_FILE)
    rungs = property(lambda self: self.root / RUNG_FILE)
    fidelity = property(lambda self: self.root / FIDELITY_FILE)
    pareto = property(lambda self: self.root / PARETO_DIR)
    tune = property(lambda self: self.root / TUNE_DIR)
    train = property(lambda self: self.root / TRAIN_DIR)

    def is_sweep(self) -> bool:
        """Whether a sweep started here (its state or its ledger exists)."""
        return self.state.is_file() or self.ledger.is_file()


class SweepStatus(StrEnum):
    """A whole sweep's status (``state.json`` and the parent run's ``topnas.status`` tag)."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: continue it with --resume


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
    status: str = "running"  # a SweepStatus
    predictor_label: str = ""        # device + predictor id, for plot axes and tables
    predictor_provenance: str = ""   # what the latency numbers rest on (calibration sources)

    def save(self, sweep_dir: str | os.PathLike[str]) -> Path:
        from topnas.fileio import atomic_write_text

        return atomic_write_text(SweepFolder(sweep_dir).state,
                                 json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, sweep_dir: str | os.PathLike[str]) -> "SweepState":
        path = SweepFolder(sweep_dir).state
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
    from topnas.platform.paths import sweeps_root

    text = str(sweep)
    candidate = Path(text)
    if SweepFolder(candidate).is_sweep():
        return candidate.absolute()
    root = sweeps_root(storage)
    folder = root / text
    if folder.is_dir():
        return folder
    known = sorted(p.name for p in root.iterdir() if SweepFolder(p).state.is_file()) if root.is_dir() else []
    raise ConfigError("sweep", text, known or f"a sweep under {root} (none yet)",
                      hint="a sweep name or a sweep folder")
