"""The sweep's Ray Tune scheduler, chosen by ``scheduler.name``.

Optuna cannot prune multi-objective trials, so early stopping comes from Ray. ``fifo``: none, every
trial trains the full proxy budget. ``asha``: successive halving on ``val_mIoU`` alone, kept for
comparison (across architectures of very different latency it stops exactly the fast, lower-mIoU
variants that belong on the front). ``moasha``: successive halving on (``val_mIoU`` at the rung,
predicted latency); a variant non-dominated at its rung is never stopped. Both early-stopping
schedulers are :class:`~topnas.platform.sweep.moasha.RungScheduler` (same rungs, same record in
``rungs.jsonl``, same resume); only the ranking differs. A stopped trial is recorded
``early_stopped`` with its rung and the rung's front, kept off the Pareto front and told to Optuna
as PRUNED (see ``searcher.py``).
"""
from __future__ import annotations

from typing import Mapping

from topnas.platform.objectives import OBJECTIVES
from topnas.platform.sweep.sweep_config import SweepConfig
from topnas.platform.sweep.moasha import RungScheduler

__all__ = ["make_scheduler"]


def make_scheduler(cfg: SweepConfig, reference_point: Mapping[str, float]) -> RungScheduler | None:
    """``None`` for ``fifo`` (Tune's default), else the rung scheduler of ``cfg.scheduler``."""
    sched = cfg.scheduler
    if not sched.early_stopping:
        return None
    objectives = OBJECTIVES if sched.name == "moasha" else {"val_mIoU": "max"}
    return RungScheduler(cfg.sweep_dir, sched.rungs, cfg.proxy.iterations, sched.reduction_factor,
                         reference_point, objectives)
