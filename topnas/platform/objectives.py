"""What a sweep optimises and how one of its trials can end: the objectives and the trial statuses.

The front (:mod:`topnas.platform.pareto`), its plots, the sweep (searcher, scheduler, ledger, MLflow
tags) and ``promote`` all read these two definitions, so a new status or objective is added here once.
"""
from __future__ import annotations

from enum import StrEnum

__all__ = ["ABANDONED_PREFIX", "FINISHED_STATUSES", "OBJECTIVES", "TrialStatus"]

# Objective name -> direction; measured mIoU of the proxy training against predicted latency.
OBJECTIVES: dict[str, str] = {"val_mIoU": "max", "latency_ms": "min"}


class TrialStatus(StrEnum):
    """A trial's status in the ledger (``trials.jsonl``), on its MLflow run and on its Optuna trial.

    A ``StrEnum``: each member *is* its string (``TrialStatus.COMPLETED == "completed"``), so JSON
    files, MLflow tags and DataFrame columns hold the plain value and old files read back unchanged.
    """

    RUNNING = "running"  # launched, not finished (MLflow tag and Optuna attribute while it trains)
    PENDING = "pending"  # not launched yet
    COMPLETED = "completed"  # a finite val_mIoU at the full proxy budget: the only status on a front
    EARLY_STOPPED = "early_stopped"  # finite val_mIoU before the budget: a rung scheduler stopped it
    INFEASIBLE = "infeasible"  # predicted latency over the budget: never launched, never trained
    FAILED = "failed"  # raised, reported no finite val_mIoU, or abandoned by a killed driver
    DUPLICATE = "duplicate"  # Optuna only: a proposal of a variant the sweep already evaluated
    SNAPPED = "snapped"  # Optuna only (replay): a proposal outside the table, replaced by a table variant


# The reason of a FAILED trial that a killed driver left running; the resumed sweep runs a new trial in its
# place, so it does not count towards ``num_samples``.
ABANDONED_PREFIX = "abandoned:"


FINISHED_STATUSES = frozenset({TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED, TrialStatus.INFEASIBLE,
                               TrialStatus.FAILED})
