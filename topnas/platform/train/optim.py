"""AdamW with mmcv ``DefaultOptimizerConstructor`` ``paramwise_cfg.custom_keys`` semantics.

mmcv 1.3.14: custom keys are tried longest first (ties alphabetically); the first key that is a
substring of a parameter's full name sets that parameter's ``lr = base_lr * lr_mult`` and
``weight_decay = base_wd * decay_mult``. Parameters no key matches keep the base values, so with the
official keys ``head`` (lr x10), ``norm`` and ``absolute_pos_embed`` (decay 0), every ``decode_head.*``
parameter trains at 10x and BatchNorm weights/biases ARE weight-decayed: TopFormer names its norms
``bn``, so the ``norm`` key matches nothing (checked against the official parameter names).

mmcv makes one group per parameter; groups here merge parameters with the same key (same AdamW
hyper-parameters, same updates). Each group carries ``initial_lr`` for :mod:`.schedule` and a
``name`` (the matching key or ``"default"``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

if TYPE_CHECKING:
    from topnas.platform.train.train_config import OptimizerConfig

__all__ = ["build_optimizer", "build_param_groups", "match_custom_key"]


def _sorted_keys(custom_keys: Mapping[str, Any]) -> list[str]:
    return sorted(sorted(custom_keys), key=len, reverse=True)  # mmcv's order


def match_custom_key(param_name: str, custom_keys: Mapping[str, Any]) -> str | None:
    """The custom key applying to ``param_name`` (mmcv rule), or None."""
    for key in _sorted_keys(custom_keys):
        if key in param_name:
            return key
    return None


def build_param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    custom_keys: Mapping[str, Mapping[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups in first-appearance order; trainable parameters only, as ``(name, tensor)``."""
    custom_keys = custom_keys or {}
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = match_custom_key(name, custom_keys)
        gname = key or "default"
        if gname not in groups:
            mults = custom_keys.get(key, {}) if key else {}
            lr_mult = float(mults.get("lr_mult", 1.0))
            decay_mult = float(mults.get("decay_mult", 1.0))
            groups[gname] = {
                "params": [], "name": gname,
                "lr": lr * lr_mult, "initial_lr": lr * lr_mult,
                "weight_decay": weight_decay * decay_mult,
                "lr_mult": lr_mult, "decay_mult": decay_mult,
            }
        groups[gname]["params"].append((name, param))  # torch stores the names as `param_names`
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The configured AdamW over :func:`build_param_groups` (build it on the unwrapped model)."""
    groups = build_param_groups(model, cfg.lr, cfg.weight_decay, cfg.custom_keys)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             weight_decay=cfg.weight_decay)
