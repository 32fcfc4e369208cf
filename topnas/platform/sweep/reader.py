"""Reading a sweep from outside it: its trials, its MLflow parent run and its config, wherever they are.

For code downstream of a sweep (promotion): a sweep may be a folder under the run folder, a folder
elsewhere, or only an MLflow parent run (the folder stayed on the cluster). Only this module knows
where a sweep keeps each of these; it reads them through the sweep's own layout names and classes.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from topnas.errors import ConfigError
from topnas.platform import paths, tracking
from topnas.platform.sweep.layout import CONFIG_FILE, PARETO_CSV, PARETO_DIR, STATE_FILE, SweepState
from topnas.platform.sweep.ledger import Ledger, frame
from topnas.platform.sweep.tags import SWEEP_TAG

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = ["SweepRecord", "load_sweep"]

_CONFIG_ARTIFACTS = "config"  # the parent run's artifact folder holding the sweep YAML (runner.py)
# Where a front table may be: in the folder itself (a hand-made sweep, or a downloaded parent run),
# or where the sweep writes it; the same two relative paths among the parent run's artifacts.
_PARETO_PLACES = (PARETO_CSV, f"{PARETO_DIR}/{PARETO_CSV}")
_TEXT_COLUMNS = ("trial_id", "variant_id", "status", "run_id", "preset", "config")


@dataclass(frozen=True)
class SweepRecord:
    """A finished (or running) sweep as promotion sees it: its trials and its MLflow parent run.

    ``trials`` follows the :mod:`topnas.platform.pareto_plots` column contract, ``pareto``
    recomputed here from ``status`` / ``val_mIoU`` / ``latency_ms`` (never trusted from the file).
    """

    name: str
    trials: pd.DataFrame = field(repr=False)
    tracking_uri: str
    parent_run_id: str | None = None
    experiment_id: str | None = None
    folder: Path | None = None
    source: str = ""                       # where the trials came from (file or artifact)
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # the sweep YAML, when found
    seed_noise: float | None = None        # the proxy's measured seed noise (mIoU), when the sweep measured it

    @property
    def front(self) -> pd.DataFrame:
        return self.trials[self.trials["pareto"]]


def load_sweep(
    sweep: str,
    *,
    tracking_uri: str | None = None,
    storage: str | os.PathLike[str] | None = None,
) -> SweepRecord:
    """Find sweep ``sweep`` (a name under ``<runs>/sweeps``, a sweep folder, or only in MLflow).

    Trials come from, in order: the folder's front table (``pareto.csv``, then
    ``pareto/pareto.csv``), the folder's trial ledger, or the parent run's ``pareto.csv`` artifact.
    The parent run is the one in the folder's saved state, else the run tagged
    ``topnas.sweep=<name>`` without a parent. Tracking URI: ``tracking_uri`` >
    ``$MLFLOW_TRACKING_URI`` > the saved state > the local store.

    Example::

        record = load_sweep("demo_fixture")
        record.front[["trial_id", "variant_id", "val_mIoU", "latency_ms"]]
    """
    from topnas.platform.pareto_plots import add_pareto_column, check_columns

    folder = _sweep_folder(str(sweep), storage)
    name = str(sweep)
    state: SweepState | None = None
    config: dict[str, Any] = {}
    if folder is not None:
        name = folder.name
        if (folder / STATE_FILE).is_file():
            state = SweepState.load(folder)
            name = state.name or name
        for cfg_path in (folder / CONFIG_FILE, folder / _CONFIG_ARTIFACTS / CONFIG_FILE):
            if cfg_path.is_file():
                config = yaml.safe_load(cfg_path.read_text()) or {}
                break
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or (state.tracking_uri if state else "") \
        or paths.default_tracking_uri()
    client = tracking.get_client(uri)

    parent_id = (state.parent_run_id if state else "") or None
    experiment_id = (state.experiment_id if state else "") or None
    if not parent_id:
        parent = _find_parent_run(client, name)
        if parent is not None:
            parent_id, experiment_id = parent.info.run_id, parent.info.experiment_id

    trials, source = None, ""
    if folder is not None:
        for rel in _PARETO_PLACES:
            if (folder / rel).is_file():
                trials, source = _read_trials_csv(folder / rel), str(folder / rel)
                break
        ledger = Ledger(folder)
        if trials is None and ledger.path.is_file():
            trials, source = frame(ledger.records()), str(ledger.path)
    if trials is None and parent_id:
        trials, source = _trials_from_parent(client, parent_id)
    if trials is None:
        root = paths.sweeps_root(storage)
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise ConfigError("--sweep", name, known or f"a sweep under {root} or an MLflow run tagged "
                          f"{SWEEP_TAG}=<name> at {uri}", hint=f"no {PARETO_CSV}, trial ledger or parent run found")
    check_columns(trials, ("trial_id", "variant_id", "status", "val_mIoU", "latency_ms", "latency_lo",
                           "latency_hi", "run_id", "config"))
    trials = add_pareto_column(trials.reset_index(drop=True))
    return SweepRecord(name=name, trials=trials, tracking_uri=uri, parent_run_id=parent_id,
                       experiment_id=experiment_id, folder=folder, source=source, config=config,
                       seed_noise=_seed_noise(folder, client, parent_id))


def _seed_noise(folder: Path | None, client: Any, parent_id: str | None) -> float | None:
    """The folder's ``proxy_fidelity.json``, else the parent run's ``proxy_seed_noise`` metric, else None."""
    from topnas.platform.sweep.fidelity import load_fidelity
    from topnas.platform.sweep.layout import SweepFolder

    if folder is not None:
        fidelity = load_fidelity(SweepFolder(folder).fidelity)
        if fidelity is not None:
            return fidelity.seed_noise
    if parent_id:
        value = client.get_run(parent_id).data.metrics.get("proxy_seed_noise")
        return float(value) if value is not None else None
    return None


def _sweep_folder(sweep: str, storage: str | os.PathLike[str] | None) -> Path | None:
    """``sweep`` itself when it is a folder holding any part of a sweep, else ``<sweeps root>/<sweep>``."""
    candidate = Path(sweep)
    markers = (candidate / PARETO_CSV, candidate / STATE_FILE, Ledger(candidate).path, candidate / PARETO_DIR)
    if candidate.is_dir() and any(m.exists() for m in markers):
        return candidate.absolute()
    folder = paths.sweeps_root(storage) / sweep
    return folder if folder.is_dir() else None


def _read_trials_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    df = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=True)
    for c in ("run_id", "preset", "config"):
        if c in df.columns:
            df[c] = df[c].fillna("")
    return df


def _find_parent_run(client: MlflowClient, name: str) -> Run | None:
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiments or "'" in name:
        return None
    runs = client.search_runs(experiments, filter_string=f"tags.`{SWEEP_TAG}` = '{name}'",
                              run_view_type=ViewType.ACTIVE_ONLY, max_results=500,
                              order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if tracking.PARENT_RUN_TAG not in r.data.tags]
    return parents[0] if parents else None


def _trials_from_parent(client: MlflowClient, parent_id: str) -> tuple[pd.DataFrame | None, str]:
    names = {f.path for f in client.list_artifacts(parent_id)}
    rel = next((p for p in _PARETO_PLACES if p in names or p.split("/")[0] in names), None)
    if rel is None:
        return None, ""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(parent_id, rel, tmp)
        except Exception:  # noqa: BLE001 - "pareto/" without the csv
            return None, ""
        return _read_trials_csv(Path(local)), f"runs:/{parent_id}/{rel}"
