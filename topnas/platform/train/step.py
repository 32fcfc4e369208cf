"""One training iteration of :func:`topnas.platform.train.loop.run_loop`, on its own.

Kept apart from the loop so a benchmark times exactly what the loop runs (``benchmarks/official_speed.py``
compares it with the official mmseg train step).
"""
from __future__ import annotations

import torch
from torch import nn

from topnas.platform.train.loss import seg_cross_entropy

__all__ = ["train_step"]


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               img: torch.Tensor, label: torch.Tensor, *, amp: bool = False,
               class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Forward, the official loss, backward and one optimizer step; returns the detached loss.

    No host sync: the loss stays on the device (the loop averages it at log intervals).
    """
    with torch.autocast(img.device.type, dtype=torch.float16, enabled=amp):
        logits = net(img)
    loss = seg_cross_entropy(logits, label, class_weight=class_weight)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()
