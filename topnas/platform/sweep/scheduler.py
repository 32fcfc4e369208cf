"""ASHA for proxy trials: early stopping on ``val_mIoU`` by training iteration (design notes 4-5).

Optuna cannot prune multi-objective trials, so early stopping comes from Ray's ASHA on the one metric
that needs training. Two changes to Ray's ``AsyncHyperBandScheduler``: a trial's final evaluation
(``iteration >= proxy.iterations``) is never a stop decision - the trial is finishing anyway and must
close its own runs - and rungs therefore sit strictly below the full budget, so ASHA only ever
compares evaluations made at equal iterations. A stopped trial is recorded ``early_stopped``: kept
off the Pareto front and told to Optuna as PRUNED (see ``searcher.py``).
"""
from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from topnas.platform.sweep.config import SweepConfig

__all__ = ["ProxyASHA", "make_scheduler"]


class ProxyASHA(AsyncHyperBandScheduler):
    def __init__(self, *, final_iteration: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._final_iteration = final_iteration

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._final_iteration:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


def make_scheduler(cfg: SweepConfig) -> ProxyASHA | None:
    """``None`` unless ``asha.enabled``; grace period default: the first evaluation."""
    if not cfg.asha.enabled:
        return None
    every = cfg.proxy.eval_interval or cfg.proxy.iterations
    return ProxyASHA(final_iteration=cfg.proxy.iterations, time_attr="iteration", metric="val_mIoU", mode="max",
                     max_t=cfg.proxy.iterations, grace_period=cfg.asha.grace_period or every,
                     reduction_factor=cfg.asha.reduction_factor, stop_last_trials=False)
