"""``run_sweep``: checks, the sweep's MLflow parent run, then one Ray Tune experiment (new or restored).

The sweep folder's layout: :mod:`topnas.platform.sweep.layout`.

Example::

    from topnas.platform.sweep import load_sweep_config, run_sweep
    result = run_sweep(load_sweep_config("experiments/sweep_demo_fixture.yaml"))
    print(result.table())                    # the front, fastest first
    run_sweep(load_saved_config("sweep_demo_fixture"), resume=True)   # after a crash / kill
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from topnas.errors import ConfigError
from topnas.platform import pareto as P
from topnas.platform import tracking
from topnas.platform.envvars import env_default
from topnas.platform.objectives import OBJECTIVES, TrialStatus
from topnas.platform.sweep import estimates
from topnas.platform.sweep.sweep_config import SweepConfig
from topnas.platform.sweep.fidelity import (
    fidelity_metrics,
    fidelity_of,
    fidelity_params,
)
from topnas.platform.sweep.layout import (
    CONFIG_FILE,
    SPACE_FILE,
    TUNE_DIR,
    SweepFolder,
    SweepState,
    SweepStatus,
    resolve_sweep_dir,
)
from topnas.platform.sweep.ledger import Ledger, frame
from topnas.platform.sweep.tags import KIND_SWEEP, KIND_TAG, STATUS_TAG, SWEEP_TAG
from topnas.platform.tracking import absolute_sqlite_uri

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TRIAL_RESOURCES", "SweepResult", "load_saved_config", "run_sweep"]

log = logging.getLogger(__name__)

# The trial actor only drives its TorchTrainer; CPU 0 avoids the 2-trials-on-2-CPUs deadlock, and Ray
# needs some resource on an actor (Tune rejects {"cpu": 0} alone).
TRIAL_RESOURCES = {"cpu": 0, "memory": 200 * 1024**2}
SNAPSHOT_ENV = "TUNE_GLOBAL_CHECKPOINT_S"
SNAPSHOT_PERIOD_S = "2"  # Tune's experiment snapshot: a trial finished after it re-runs on resume


@dataclass
class SweepResult:
    """What a finished (or resumed-and-finished) sweep left behind."""

    name: str
    sweep_dir: Path
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    trials: pd.DataFrame  # every finished trial, finish order, with `pareto` (pareto_plots contract)
    hypervolume: float
    reference_point: dict[str, float]
    resumed: bool
    elapsed_s: float

    @property
    def front(self) -> pd.DataFrame:
        return self.trials[self.trials["pareto"]].reset_index(drop=True) if not self.trials.empty else self.trials

    @property
    def counts(self) -> dict[str, int]:
        return {} if self.trials.empty else {str(k): int(v) for k, v in self.trials["status"].value_counts().items()}

    def table(self, sort_by: str = "latency_ms", front_only: bool = True) -> str:
        from topnas.platform.pareto_plots import front_table

        if self.trials.empty:
            return "(no finished trial)"
        return front_table(self.trials, sort_by, front_only=front_only)


def load_saved_config(sweep: str | os.PathLike[str], storage: str | os.PathLike[str] | None = None) -> SweepConfig:
    """The resolved config a sweep stored in its folder (what ``--resume`` uses)."""
    folder = resolve_sweep_dir(sweep, storage)
    return SweepConfig.from_dict(_saved_config_data(folder, str(sweep)), source=str(SweepFolder(folder).config))


def _is_saved_config(cfg: SweepConfig) -> bool:
    """Whether ``cfg`` was read from its own sweep folder's ``sweep.yaml`` (:func:`load_saved_config`)."""
    return cfg.source is not None and Path(cfg.source).resolve() == SweepFolder(cfg.sweep_dir).config.resolve()


def _saved_config_data(folder: Path, sweep: str | None = None) -> dict[str, Any]:
    path = SweepFolder(folder).config
    if not path.is_file():
        raise ConfigError("--resume", sweep or str(folder), "a sweep folder holding sweep.yaml",
                          hint=f"nothing at {path}")
    return yaml.safe_load(path.read_text())


def run_sweep(cfg: SweepConfig, address: str | None = None, resume: bool = False,
              num_cpus: int | None = None) -> SweepResult:
    """Run (or, with ``resume=True``, finish) the sweep ``cfg``; returns its front and record.

    Args:
        cfg: a validated config (:func:`~topnas.platform.sweep.sweep_config.load_sweep_config`, or
            :func:`load_saved_config` to resume).
        address: Ray cluster: ``None`` starts a local Ray (or uses the one already initialised),
            ``"auto"`` joins the running cluster of this machine, ``"ray://host:10001"`` a remote one.
        resume: continue the sweep in ``cfg.sweep_dir`` after a crash or kill: finished trials are not
            re-run, MLflow runs are reused, the Optuna study keeps every trial.
        num_cpus: CPUs of a local Ray started here (default: all).
    """
    t0 = time.perf_counter()
    folder = cfg.sweep_dir
    state = _prepare_folder(cfg, resume)
    # A resumed sweep stays with the tracking store its parent run lives in, whatever the environment says.
    uri = state.tracking_uri if state is not None else absolute_sqlite_uri(cfg.resolved_tracking_uri())
    _check_tracking_reachable(uri, address)  # before the fixture is written: a bad input writes nothing
    _check_before_ray(cfg, address)
    info = estimates.predictor_info(cfg.latency.predictor)
    client = tracking.get_client(uri)
    if state is None:
        state = _create_parent(cfg, client, uri, info)
    else:
        _reopen_parent(cfg, client, state)
    from topnas.platform.sweep.callback import settle
    from topnas.platform.sweep.mlflow_runs import SweepTracker

    tracker = SweepTracker(state.tracking_uri, state.experiment_id, state.parent_run_id, cfg.name)
    if resume:  # trials finished but not recorded before the kill: recorded now, or a loud stop before Ray
        settle(cfg, state, tracker, close_abandoned=False)

    from topnas.platform.raywatch import owned_ray

    # Ray's defaults otherwise: Ray Train's placement-group cleaner asks the dashboard's state API.
    # address None: a local Ray of ours, whose agents must not outlive this driver (raywatch)
    with owned_ray(address is None, address=address, num_cpus=num_cpus if address is None else None):
        status = SweepStatus.FAILED
        try:
            _fit(cfg, state, tracker, info["id"], resume)
            settle(cfg, state, tracker)  # every finished trial recorded, abandoned runs closed, or a loud error
            status = SweepStatus.FINISHED
        except KeyboardInterrupt:
            status = SweepStatus.INTERRUPTED
            raise
        finally:
            state.status = status
            state.save(folder)
            with contextlib.suppress(Exception):  # the parent's status; the trials' records are settled above
                client.set_tag(state.parent_run_id, STATUS_TAG, status)
                client.set_terminated(state.parent_run_id, status={SweepStatus.FINISHED: "FINISHED",
                                                                   SweepStatus.INTERRUPTED: "KILLED"}.get(status, "FAILED"))
    trials = frame(Ledger(folder).records())
    hv = P.hypervolume(P.points_from_records(trials.to_dict("records"), OBJECTIVES), state.reference_point,
                       OBJECTIVES) if not trials.empty else 0.0
    return SweepResult(cfg.name, folder, state.parent_run_id, state.experiment_id, uri, trials, hv,
                       dict(state.reference_point), resume, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- before Ray
def _prepare_folder(cfg: SweepConfig, resume: bool) -> SweepState | None:
    folder = cfg.sweep_dir
    if resume:
        state = SweepState.load(folder)
        if _is_saved_config(cfg):  # read from this folder's sweep.yaml: nothing to compare, nor to parse again
            return state
        saved = load_saved_config(folder)
        diff = _diff(saved.to_dict(), cfg.to_dict())
        if diff:
            raise ConfigError("--resume", cfg.name, "the sweep's own config (its sweep.yaml)",
                              hint=f"differs in {', '.join(diff[:5])}; resume with the saved config "
                                   "(`topnas sweep --resume NAME` without a YAML)")
        return state
    if SweepFolder(folder).is_sweep():
        raise ConfigError("name", cfg.name, "a sweep name not used yet",
                          hint=f"{folder} exists: continue it with `topnas sweep --resume {cfg.name}` "
                               "or choose another name (--set name=...)")
    return None


def _check_before_ray(cfg: SweepConfig, address: str | None) -> None:
    """The dataset (the fixture is generated here, once, not by concurrent trials) and the first variant."""
    if cfg.replay is not None:  # nothing is trained; the table was checked when the config loaded
        return
    from topnas.platform.train import check_ready

    local = address is None
    check_ready(cfg.first_train_config, local_cluster=local)


def _check_tracking_reachable(uri: str, address: str | None) -> None:
    tracking.check_reachable(uri, "tracking.uri")
    if address and address.startswith("ray://") and uri.startswith(("sqlite:", "file:")):
        raise ConfigError("tracking.uri", uri, "an http(s):// MLflow tracking server",
                          hint="trials on a remote cluster cannot write a local SQLite file; "
                               "set tracking.uri or $MLFLOW_TRACKING_URI")


def _create_parent(cfg: SweepConfig, client: Any, uri: str, info: dict[str, Any]) -> SweepState:
    folder = cfg.sweep_dir
    folder.mkdir(parents=True, exist_ok=True)
    reference = _reference_point(cfg)
    exp_id = tracking.get_or_create_experiment(cfg.experiment, client=client)
    tags = {SWEEP_TAG: cfg.name, KIND_TAG: KIND_SWEEP, STATUS_TAG: SweepStatus.RUNNING,
            "topnas.sampler": cfg.sampler, "topnas.scheduler": cfg.scheduler.name, "topnas.predictor_id": info["id"], "topnas.sweep_dir": str(folder)}
    parent, reused = tracking.start_or_resume_run(client, exp_id, f"sweep:{cfg.name}", run_name=cfg.name, tags=tags)
    if reused:
        raise ConfigError("name", cfg.name, "a sweep name not used in this MLflow experiment",
                          hint=f"run {parent.info.run_id} of experiment {cfg.experiment!r} is sweep {cfg.name!r} "
                               f"but {folder} does not hold it; choose another name")
    state = SweepState(cfg.name, parent.info.run_id, exp_id, uri, reference, info["id"], created=time.time(),
                         predictor_label=info["label"], predictor_provenance=info["provenance"])
    (folder / CONFIG_FILE).write_text(cfg.to_yaml())
    (folder / SPACE_FILE).write_text(yaml.safe_dump({"search_space": cfg.space.to_dict()}, sort_keys=False,
                                                      default_flow_style=None))
    state.save(folder)
    _log_parent(cfg, client, parent.info.run_id, info, reference)
    return state


def _reopen_parent(cfg: SweepConfig, client: Any, state: SweepState) -> None:
    client.set_tag(state.parent_run_id, STATUS_TAG, SweepStatus.RUNNING)
    client.update_run(state.parent_run_id, status="RUNNING")
    state.status = SweepStatus.RUNNING
    state.save(cfg.sweep_dir)


def _log_parent(cfg: SweepConfig, client: Any, run_id: str, info: dict[str, Any], reference: dict[str, float]) -> None:
    data = {k: v for k, v in cfg.to_dict().items() if k != "search_space"}
    params = tracking.flatten_params(data)
    space = cfg.space
    params.update({
        "search_space.source": cfg.space_source, "search_space.name": space.name,
        "search_space.size": str(space.size), "search_space.dimensions": json.dumps(sorted(space.parameters())),
        "reference.val_mIoU": str(reference["val_mIoU"]), "reference.latency_ms": str(reference["latency_ms"]),
        "git_commit": tracking.git_commit() or "unknown",
    })
    params.update(tracking.flatten_params({"predictor": {k: info[k] for k in ("id", "path", "schema", "created",
                                                                              "device", "interval", "provenance")}}))
    fidelity = fidelity_of(cfg)  # the proxy's measured seed noise vs spread, when the YAML names a table
    if fidelity is not None:
        params.update(fidelity_params(fidelity))
    tracking.log_params_batched(client, run_id, params)
    folder = cfg.sweep_dir
    if fidelity is not None:
        for key, value in fidelity_metrics(fidelity).items():
            client.log_metric(run_id, key, value)
        path = SweepFolder(folder).fidelity
        path.write_text(json.dumps(fidelity.to_dict(), indent=2) + "\n")
        client.log_artifact(run_id, str(path), "config")
    client.log_artifact(run_id, str(folder / CONFIG_FILE), "config")
    client.log_artifact(run_id, str(folder / SPACE_FILE), "config")
    client.log_artifact(run_id, info["path"], "config")


def _reference_point(cfg: SweepConfig) -> dict[str, float]:
    """Fixed for the whole sweep: mIoU 0 and the latency budget, else 1.1 x the slowest variant."""
    lat = cfg.latency.reference_ms or cfg.latency.budget_ms
    if lat is None:
        predictor = estimates.load_predictor(cfg.latency.predictor)
        lat = 1.1 * estimates.extreme_latency(predictor, cfg.space, fastest=False)
    return {"val_mIoU": 0.0, "latency_ms": float(lat)}


# ----------------------------------------------------------------------------- Ray Tune
def _fit(cfg: SweepConfig, state: SweepState, tracker: Any, predictor_id: str, resume: bool) -> None:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from topnas.platform.sweep.callback import SweepCallback
    from topnas.platform.sweep.scheduler import make_scheduler
    from topnas.platform.sweep.searcher import SweepSearch
    from topnas.platform.sweep.trial import TrialContext, run_trial

    ctx = TrialContext(cfg, state.tracking_uri, state.experiment_id, state.parent_run_id, predictor_id,
                       state.predictor_provenance)
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), TRIAL_RESOURCES)
    tune_dir = cfg.sweep_dir / TUNE_DIR
    with env_default(SNAPSHOT_ENV, SNAPSHOT_PERIOD_S):
        if resume and tune.Tuner.can_restore(str(tune_dir)):
            log.info("resuming sweep %s from %s", cfg.name, tune_dir)
            tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=False,
                                       restart_errored=False)
        else:
            searcher = SweepSearch(cfg, tracker, predictor_id, predictor_provenance=state.predictor_provenance)
            num_samples = cfg.num_samples
            if resume:  # killed before Tune's first snapshot: no Tune trial to restore
                searcher.fail_stale_trials()
                trained = [r for r in Ledger(cfg.sweep_dir).records() if r.status != TrialStatus.INFEASIBLE]
                num_samples -= len(trained)
            if num_samples <= 0:
                return
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=cfg.max_concurrent),
                    scheduler=make_scheduler(cfg, state.reference_point), num_samples=num_samples,
                    trial_dirname_creator=_trial_dirname,
                    reuse_actors=_reuse_actors(cfg),
                ),
                run_config=tune.RunConfig(
                    name=TUNE_DIR, storage_path=str(cfg.sweep_dir),
                    callbacks=[SweepCallback(cfg, tracker, state)],
                    failure_config=tune.FailureConfig(max_failures=0), verbose=1,
                ),
            )
        tuner.fit()


def _reuse_actors(cfg: SweepConfig) -> bool:
    """Whether one Tune actor runs trial after trial (no process start, imports or first MLflow client each).

    A fresh actor per trial costs seconds of every proxy trial (benchmarks/sweep_overhead.py
    --breakdown) and nearly all of a replayed one. Not with a rung scheduler when trials train:
    Tune hands a stopped trial's actor to the next trial only if the stopped function returns
    within seconds (else it fails the NEXT trial), and a stopped trial's training does not return.
    """
    return cfg.replay is not None or cfg.scheduler.name == "fifo"


def _trial_dirname(trial: Any) -> str:
    return trial.trial_id


# ----------------------------------------------------------------------------- helpers
def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, name + ".")
        elif va != vb:
            out.append(name)
    return out
