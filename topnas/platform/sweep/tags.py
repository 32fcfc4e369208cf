"""The MLflow tag names a sweep writes on its parent run and on each trial's child run.

Parent: :data:`SWEEP_TAG` and :data:`KIND_TAG` = :data:`KIND_SWEEP`; child: every tag below, with
:data:`KIND_TAG` = :data:`KIND_TRIAL` (the layout: :mod:`topnas.platform.sweep.mlflow_runs`). ``topnas
pareto``, ``promote`` and the UI find a sweep's runs by these names.
"""
from __future__ import annotations

from topnas.platform.train.mlflow_logger import (
           FINAL_ITERATION_TAG,  # the training run's tag; trials read it
)

__all__ = ["ATTEMPTS_TAG", "FINAL_ITERATION_TAG", "KIND_SWEEP", "KIND_TAG", "KIND_TRIAL", "OPTUNA_TAG",
           "PARETO_TAG", "REASON_TAG", "REPLAY_TAG", "RUNG_FRONT_TAG", "RUNG_TAG", "STATUS_TAG", "SWEEP_TAG",
           "TRIAL_TAG", "VARIANT_TAG"]

SWEEP_TAG = "topnas.sweep"
KIND_TAG = "topnas.kind"
KIND_SWEEP = "sweep"
KIND_TRIAL = "sweep_trial"
STATUS_TAG = "topnas.status"  # a topnas.platform.objectives.TrialStatus value
REASON_TAG = "topnas.status_reason"
VARIANT_TAG = "topnas.variant_id"
TRIAL_TAG = "topnas.trial_id"
OPTUNA_TAG = "topnas.optuna_trial"
PARETO_TAG = "pareto"  # "true" / "false", kept current as trials finish
ATTEMPTS_TAG = "topnas.train_attempts"
REPLAY_TAG = "topnas.replay"
RUNG_TAG = "topnas.rung"  # early_stopped: the rung whose decision stopped it
RUNG_FRONT_TAG = "topnas.rung_front"
