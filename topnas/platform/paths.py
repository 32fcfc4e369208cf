"""Where topnas keeps what it computes: one run folder, overridable, never hidden global state."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["runs_root", "default_tracking_uri", "sweeps_root", "train_root"]


def runs_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The project's run folder: ``$TOPNAS_HOME`` or ``./runs``; created on first use."""
    root = Path(override or os.environ.get("TOPNAS_HOME") or Path.cwd() / "runs").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def default_tracking_uri(root: str | os.PathLike[str] | None = None) -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store under the run folder (absolute path)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{runs_root(root) / 'mlflow.db'}"


def sweeps_root(storage: str | os.PathLike[str] | None = None) -> Path:
    """Where sweeps keep their folders: ``storage`` when given (a sweep YAML's ``storage``), else
    ``<run folder>/sweeps``."""
    return Path(storage) if storage else runs_root() / "sweeps"


def train_root(storage: str | os.PathLike[str] | None = None) -> Path:
    """Where ``topnas train`` keeps its runs' checkpoints: ``storage`` when given, else ``<run folder>/train``."""
    return Path(storage).absolute() if storage else runs_root() / "train"
