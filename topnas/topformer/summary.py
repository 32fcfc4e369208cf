"""A per-stage table of a variant: output shapes, parameters and MACs (``topnas model summary``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from topnas.topformer.complexity import count_complexity
from topnas.topformer.model import TopFormer

__all__ = ["StageRow", "summarize"]


@dataclass(frozen=True)
class StageRow:
    name: str
    shape: tuple[int, ...]
    params: int


def _stage_modules(model: TopFormer) -> list[tuple[str, nn.Module]]:
    bb = model.backbone
    mods: list[tuple[str, nn.Module]] = [("tpm.stem", bb.tpm.stem)]
    mods += [(f"tpm.{n}", getattr(bb.tpm, n)) for n in bb.tpm.layer_names]
    mods.append(("trans", bb.trans))
    mods += [(f"SIM.{i}", bb.SIM[i]) for i in bb.decode_out_indices]
    mods.append(("decode_head", model.decode_head))
    return mods


@torch.no_grad()
def summarize(model: TopFormer, input_size: tuple[int, int] = (512, 512)) -> tuple[list[StageRow], str]:
    """Rows per stage plus a printable table with totals (params, fvcore-compatible MACs)."""
    model = model.eval()
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, mod in _stage_modules(model):
        def hook(_m, _i, out, name=name):
            shapes[name] = tuple(out.shape)
        hooks.append(mod.register_forward_hook(hook))
    try:
        model(torch.zeros(1, 3, *input_size))
    finally:
        for h in hooks:
            h.remove()
    taps = {f"tpm.{model.backbone.tpm.layer_names[i]}": k for k, i in enumerate(model.config.embed_out_indice)}
    rows = [StageRow(n + (f" [tap {taps[n]}]" if n in taps else ""), shapes[n], sum(p.numel() for p in m.parameters()))
            for n, m in _stage_modules(model)]
    cx = count_complexity(model, input_size)
    w = max(len(r.name) for r in rows) + 2
    lines = [f"{'stage':<{w}}{'output shape':<24}{'params':>12}", "-" * (w + 36)]
    lines += [f"{r.name:<{w}}{'x'.join(map(str, r.shape[1:])):<24}{r.params:>12,}" for r in rows]
    lines += ["-" * (w + 36),
              f"input 1x3x{input_size[0]}x{input_size[1]}   params {cx.params:,}   MACs {cx.gmacs:.4f} G "
              f"(backbone + head, no final resize; fvcore-compatible)"]
    return rows, "\n".join(lines)
