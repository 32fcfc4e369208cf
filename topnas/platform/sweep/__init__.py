"""Multi-objective architecture search: Ray Tune + Optuna over TopFormer variants, the front in MLflow.

Objectives ``val_mIoU`` (max, measured by a fixed proxy training) and ``latency_ms`` (min, predicted
before training); NSGA-II by default, TPE and GP by name; an optional latency budget as a hard
constraint; optional ASHA; resumable after the driver is killed. Public API::

    from topnas.platform.sweep import load_sweep_config, run_sweep, load_front

    result = run_sweep(load_sweep_config("experiments/sweep_demo_fixture.yaml"), address=None)
    print(result.table(sort_by="val_mIoU"))
    front = load_front("sweep_demo_fixture")     # DataFrame (pareto_plots column contract)

Modules: ``sweep_config`` (YAML -> :class:`SweepConfig`), ``estimates`` (latency predictor, params/MACs),
``searcher`` (:class:`SweepSearch`, the OptunaSearch subclass), ``trial`` (the Tune trial function),
``scheduler`` (ASHA for proxy trials), ``callback`` (front, tags and artifacts as trials finish),
``layout`` (the sweep folder: file names, :func:`resolve_sweep_dir`, ``state.json``), ``ledger``
(``trials.jsonl``, the status rule, :func:`load_front`), ``tags`` (MLflow tag names), ``mlflow_runs`` (MLflow parent/child runs),
``runner`` (:func:`run_sweep`, resume). Ray, Optuna and MLflow are imported only when a sweep runs.
"""
from topnas.platform.objectives import OBJECTIVES, TrialStatus
from topnas.platform.sweep.sweep_config import (
    SAMPLERS,
    SweepConfig,
    load_sweep_config,
    make_sampler,
)
from topnas.platform.sweep.layout import resolve_sweep_dir
from topnas.platform.sweep.ledger import (
    Ledger,
    TrialRecord,
    load_front,
    load_trials,
    trial_status,
)

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "Ledger",
    "SweepConfig",
    "SweepResult",
    "TrialRecord",
    "TrialStatus",
    "load_front",
    "load_saved_config",
    "load_sweep_config",
    "load_trials",
    "make_sampler",
    "resolve_sweep_dir",
    "run_sweep",
    "trial_status",
]


def __getattr__(name: str):
    if name in ("run_sweep", "SweepResult", "load_saved_config"):
        from topnas.platform.sweep import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
