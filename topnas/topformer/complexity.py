"""Parameters and MACs of a TopFormer variant, counted with torch's own FLOP counter.

``torch.utils.flop_counter.FlopCounterMode`` counts convolutions and matmuls (as 2 FLOPs per MAC).
The figures TopFormer users compare against (hustvl/TopFormer's README table, fvcore on backbone +
head without the final resize, i.e. the ONNX/TNN latency graph) also count batch norm (2 per element
in eval), bilinear resize (4 per output element) and adaptive average pooling (1 per input element).
We add those as custom formulas so our "MACs" are fvcore-compatible and agree with the published
numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from topnas.topformer.arch_config import TopFormerConfig

__all__ = ["Complexity", "count_complexity", "count_params"]

aten = torch.ops.aten


def _numel(shape: Any) -> int:
    return math.prod(shape) if shape is not None else 0


# Formulas receive tensor shapes (torch's shape_wrapper) and return FLOPs (= 2 x MACs).
def _bn_flops(input_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * (2 * _numel(input_shape))


def _bilinear_flops(*args, out_shape=None, **kwargs) -> int:
    return 2 * (4 * _numel(out_shape))


def _adaptive_pool_flops(input_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(input_shape)


_EXTRA_FORMULAS = {
    aten._native_batch_norm_legit_no_training: _bn_flops,
    aten._native_batch_norm_legit: _bn_flops,
    aten.native_batch_norm: _bn_flops,
    aten.upsample_bilinear2d: _bilinear_flops,
    aten._upsample_bilinear2d_aa: _bilinear_flops,
    aten._adaptive_avg_pool2d: _adaptive_pool_flops,
}


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    by_op: dict[str, int]
    input_size: tuple[int, int]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_complexity(model_or_config: torch.nn.Module | TopFormerConfig, input_size: tuple[int, int] = (512, 512),
                     full_resize: bool = False) -> Complexity:
    """Params and fvcore-compatible MACs of one forward pass at batch 1, eval mode.

    By default the graph ends at the stride-8 head logits (the official latency graph);
    ``full_resize=True`` adds the final bilinear resize to the input size.
    """
    if isinstance(model_or_config, TopFormerConfig):
        from topnas.topformer.model import TopFormer

        model = TopFormer(model_or_config.replace(norm="BN"))
    else:
        model = model_or_config
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *input_size)
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    try:
        with counter, torch.no_grad():
            model.forward_full(x) if full_resize else model(x)
    finally:
        model.train(was_training)
    by_op = {str(k).removeprefix("aten."): int(v // 2) for k, v in counter.get_flop_counts()["Global"].items()}
    return Complexity(params=count_params(model), macs=int(counter.get_total_flops() // 2), by_op=by_op,
                      input_size=tuple(input_size))
