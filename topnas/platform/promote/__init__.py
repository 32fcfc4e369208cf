"""Promotion: pick a variant from a sweep's Pareto front and give it the full 160k ADE20K training.

One promotion, start to end (registry aliases, not the deprecated stages; the full run re-prices
its own export, because proxy rank is not full-training rank)::

    sweep front ──select──> experiments/promoted/<variant-id>_512x512_160k_ade20k.yaml
         │                  (the variant + the official recipe of its size class)
         └──register──> model version vN (source: the trial run's ``promotion/`` folder),
                        alias ``challenger``, lineage tags (sweep run, trial run, predicted latency
                        and interval, proxy mIoU)
    launch (local, or a Ray job through the Jobs API) ──> ``topnas promote --run-full <yaml>``:
         run_training(...)  then  finalize(run):
             final val_mIoU + the predicted latency of the run's ONNX export, logged on the full
             run beside the promoted predictions; model version vN+1 (source: the full run's
             artifacts) takes alias ``challenger``
    topnas promote --accept <run> ──> alias ``champion`` moves to vN+1 only when the current
         champion does not dominate it (final mIoU vs latency)

The finalize step is a function the full-training job calls itself (``--run-full`` = train, then
finalize, in one process), and also a command of its own (``topnas promote --finalize <run>``) for a
full run started by hand with ``topnas train``. No deprecated registry stages anywhere: aliases and
tags only.

Modules, one job each: ``selection`` (choosing a front member), ``recipe`` (size class and the 160k
YAML; the official recipes ship in ``recipes/``), ``registry`` (model versions, aliases, lineage;
:func:`promote`), ``launch`` (local or Ray Jobs), ``pricing`` (the sweep's predictor on the ONNX
export), ``finalization`` (:func:`finalize`), ``acceptance`` (:func:`accept`), ``lineage`` (the tag
names). The sweep is read through :mod:`topnas.platform.sweep.reader` (:func:`load_sweep`).

Example::

    record = load_sweep("demo_fixture")
    sel = select_trial(record, knee=True)
    promo = promote(sel, record)                  # YAML + registry, no launch
    res = launch_local(promo)                     # or submit_ray_job(promo, address=...)
    accept(res.mlflow_run_id)                     # champion, unless the current one dominates it
"""
from __future__ import annotations

from typing import Any

from topnas.platform.promote.acceptance import AcceptDecision, accept, setup_differences
from topnas.platform.promote.finalization import FinalizeResult, finalize, run_setup
from topnas.platform.promote.launch import (
    LaunchResult,
    find_full_run,
    full_run_command,
    launch_local,
    run_full_training,
    submit_ray_job,
)
from topnas.platform.promote.pricing import PredictorChoice, price_onnx
from topnas.platform.promote.recipe import (
    FULL_EXPERIMENT,
    PRESET_COMPLEXITY,
    SizeClass,
    build_experiment,
    experiment_stem,
    experiments_dir,
    recipe_path,
    scale_down_experiment,
    size_class,
    write_experiment,
)
from topnas.platform.promote.registry import (
    CHALLENGER,
    CHAMPION,
    DEFAULT_MODEL_NAME,
    Promotion,
    promote,
    register_challenger,
)
from topnas.platform.promote.selection import OBJECTIVES, PromotionRefused, Selection, select_trial

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_MODEL_NAME",
    "FULL_EXPERIMENT",
    "OBJECTIVES",
    "PRESET_COMPLEXITY",
    "AcceptDecision",
    "FinalizeResult",
    "LaunchResult",
    "PredictorChoice",
    "Promotion",
    "PromotionRefused",
    "Selection",
    "SizeClass",
    "SweepRecord",
    "accept",
    "build_experiment",
    "experiment_stem",
    "experiments_dir",
    "finalize",
    "find_full_run",
    "full_run_command",
    "launch_local",
    "load_sweep",
    "price_onnx",
    "promote",
    "recipe_path",
    "register_challenger",
    "run_full_training",
    "run_setup",
    "scale_down_experiment",
    "select_trial",
    "setup_differences",
    "size_class",
    "submit_ray_job",
    "write_experiment",
]


def __getattr__(name: str) -> Any:
    # The sweep reader pulls in the sweep package (and torch through it): only when a sweep is read.
    if name in ("load_sweep", "SweepRecord"):
        from topnas.platform.sweep import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
