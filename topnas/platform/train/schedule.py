"""Learning rate by iteration: mmcv ``PolyLrUpdaterHook`` with linear warm-up, as the official configs.

The learning rate is a pure function of the iteration, so a resumed run continues on exactly the
curve it left (no scheduler state to lose, ray#46814). Semantics of mmcv 1.3.14 ``LrUpdaterHook``
(``by_epoch=False``), with ``it`` the 0-based index of the iteration about to run::

    regular(it) = (base_lr - min_lr) * (1 - it / max_iters) ** power + min_lr
    lr(it)      = regular(it) * (1 - (1 - it / warmup_iters) * (1 - warmup_ratio))   if it < warmup_iters
                = regular(it)                                                        otherwise

Each parameter group scales from its own ``initial_lr`` (the decode head's is 10x), as in mmcv.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from topnas.platform.train.train_config import ScheduleConfig

__all__ = ["apply_lr", "lr_at", "regular_lr"]


def regular_lr(iteration: int, base_lr: float, schedule: ScheduleConfig) -> float:
    """The poly learning rate at ``iteration`` without warm-up."""
    coeff = (1.0 - iteration / schedule.max_iters) ** schedule.power
    return (base_lr - schedule.min_lr) * coeff + schedule.min_lr


def lr_at(iteration: int, base_lr: float, schedule: ScheduleConfig) -> float:
    """The learning rate used by iteration ``iteration`` (0-based) for a group whose base lr is ``base_lr``."""
    if not 0 <= iteration <= schedule.max_iters:
        raise ValueError(f"iteration: got {iteration}; allowed: 0..{schedule.max_iters}")
    regular = regular_lr(iteration, base_lr, schedule)
    if schedule.warmup is None or iteration >= schedule.warmup_iters:
        return regular
    k = (1.0 - iteration / schedule.warmup_iters) * (1.0 - schedule.warmup_ratio)
    return regular * (1.0 - k)


def apply_lr(optimizer: torch.optim.Optimizer, iteration: int, schedule: ScheduleConfig) -> float:
    """Set every group's ``lr`` for ``iteration`` from its ``initial_lr``; returns the first group's."""
    lrs = [lr_at(iteration, group["initial_lr"], schedule) for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    return lrs[0]
