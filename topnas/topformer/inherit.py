"""ImageNet initialisation of a searched variant by slicing an official checkpoint (OFA-style).

The official recipe starts the backbone from an ImageNet classification checkpoint (``tpm.*`` /
``trans.*``); a searched variant has other widths and depths, so an exact load would match almost
nothing and its 160k result would not be comparable with the official TopFormer-T/S/B. Following
weight inheritance in once-for-all supernets, every tensor of the variant's backbone takes, from the
tensor at the corresponding position of the checkpoint:

* token pyramid: stages are the runs of blocks starting at a stride-2 block (the first block is a
  stage of its own); block ``p`` of stage ``s`` inherits from block ``p`` of checkpoint stage ``s``
  (the first blocks of a stage); channels are the leading ones, kernels the centre of the bigger one;
* transformer: block ``d`` from block ``d`` (the first blocks); attention projections by leading
  heads and the leading dims of each head; the embedding axis (the concatenated pyramid levels) by
  the leading channels OF EACH LEVEL, so a level's features stay with that level's weights;
  the MLP hidden axis by leading channels;
* SIM and the decode head are not in an ImageNet checkpoint: they stay freshly initialised, as in
  the official recipe.

Per tensor the :class:`InheritReport` says ``inherited`` (same shape, copied), ``sliced`` (every
element taken from a bigger tensor), ``partial`` (the variant is bigger on some axis: the leading
part is copied, the rest keeps its fresh initialisation) or ``fresh``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from topnas.topformer.weights import CheckpointError, extract_state_dict
from topnas.topformer.arch_config import TopFormerConfig, preset_config

__all__ = ["OFFICIAL_IMAGENET_FILES", "InheritReport", "inherit_from_checkpoint", "inherit_state_dict",
           "nearest_official", "resolve_imagenet_checkpoint"]

# File names of the official ImageNet checkpoints (hustvl/TopFormer README, "modelzoos/classification").
OFFICIAL_IMAGENET_FILES = {"tiny": "topformer-T-224-66.2.pth", "small": "topformer-S-224-72.3.pth",
                           "base": "topformer-B-224-75.3.pth"}
OBTAIN_HINT = ("download the official ImageNet checkpoints (hustvl/TopFormer README, 'ImageNet pretrained "
               "models') into modelzoos/classification/, or set model.init: scratch")

STATUSES = ("inherited", "sliced", "partial", "fresh")


@dataclass
class InheritReport:
    """Tensor by tensor, how the variant's backbone was initialised from ``source``."""

    source: str
    status: dict[str, str] = field(default_factory=dict)  # backbone key -> inherited|sliced|partial|fresh
    origin: dict[str, str] = field(default_factory=dict)  # backbone key -> checkpoint key it came from

    def keys(self, status: str) -> list[str]:
        return [k for k, s in self.status.items() if s == status]

    def counts(self) -> dict[str, int]:
        return {s: len(self.keys(s)) for s in STATUSES}

    def summary(self) -> str:
        c = self.counts()
        return (f"ImageNet init from {Path(self.source).name}: inherited {c['inherited']}, sliced {c['sliced']}, "
                f"partial {c['partial']}, fresh {c['fresh']} tensors (of {len(self.status)})")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "counts": self.counts(),
                "tensors": {k: {"status": s, "from": self.origin.get(k)} for k, s in self.status.items()}}

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path


# ----------------------------------------------------------------------------- structure
def _stages(cfg: TopFormerConfig) -> list[list[int]]:
    """Block indices grouped into stages: a stage starts at every stride-2 block (block 0 alone first)."""
    stages: list[list[int]] = []
    for i, b in enumerate(cfg.blocks):
        if i <= 1 or b.stride == 2:
            stages.append([i])
        else:
            stages[-1].append(i)
    return stages


def _block_map(var: TopFormerConfig, ckpt: TopFormerConfig) -> dict[int, int]:
    """Variant block index -> checkpoint block index (same stage, same position in it)."""
    out = {}
    for vs, cs in zip(_stages(var), _stages(ckpt)):
        for p, i in enumerate(vs):
            if p < len(cs):
                out[i] = cs[p]
    return out


def _plain(n_t: int, n_s: int) -> torch.Tensor:
    idx = torch.arange(n_t)
    return torch.where(idx < n_s, idx, -1)


def _centre(n_t: int, n_s: int) -> torch.Tensor:
    idx = torch.arange(n_t) + (n_s - n_t) // 2
    return torch.where((idx >= 0) & (idx < n_s), idx, -1)


def _levels(t: Sequence[int], s: Sequence[int]) -> torch.Tensor:
    """Concatenated pyramid levels: leading channels of each level."""
    parts, s_off = [], 0
    for level, c_t in enumerate(t):
        if level < len(s):
            idx = torch.arange(c_t)
            parts.append(torch.where(idx < s[level], idx + s_off, -1))
            s_off += s[level]
        else:
            parts.append(torch.full((c_t,), -1))
    return torch.cat(parts)


def _heads(h_t: int, d_t: int, h_s: int, d_s: int) -> torch.Tensor:
    """Head-major axis ``[heads, dim]``: leading heads, leading dims of each head."""
    h = torch.arange(h_t).repeat_interleave(d_t)
    d = torch.arange(d_t).repeat(h_t)
    return torch.where((h < h_s) & (d < d_s), h * d_s + d, -1)


def _axis_maps(key: str, shape_t: Sequence[int], shape_s: Sequence[int], var: TopFormerConfig,
               ckpt: TopFormerConfig) -> list[torch.Tensor]:
    """For each axis of a backbone tensor: target index -> source index (-1: no source)."""
    maps = [_plain(t, s) for t, s in zip(shape_t, shape_s)]
    if len(shape_t) == 4:  # conv kernels: the centre of the bigger one
        maps[2], maps[3] = _centre(shape_t[2], shape_s[2]), _centre(shape_t[3], shape_s[3])
    if not key.startswith("trans."):
        return maps
    emb = _levels(var.channels, ckpt.channels)
    q = _heads(var.num_heads, var.key_dim, ckpt.num_heads, ckpt.key_dim)
    v = _heads(var.num_heads, int(var.attn_ratio * var.key_dim), ckpt.num_heads, int(ckpt.attn_ratio * ckpt.key_dim))
    part = key.split(".", 3)[3]  # after trans.transformer_blocks.<d>.
    layout: dict[str, tuple[torch.Tensor | None, ...]] = {
        r"attn\.to_[qk]\.c\.weight": (q, emb), r"attn\.to_[qk]\.bn\.": (q,),
        r"attn\.to_v\.c\.weight": (v, emb), r"attn\.to_v\.bn\.": (v,),
        r"attn\.proj\.1\.c\.weight": (emb, v), r"attn\.proj\.1\.bn\.": (emb,),
        r"mlp\.fc1\.c\.weight": (None, emb), r"mlp\.fc2\.c\.weight": (emb, None), r"mlp\.fc2\.bn\.": (emb,),
    }
    for pattern, axes in layout.items():
        if re.match(pattern, part):
            for i, m in enumerate(axes):
                if m is not None and i < len(maps):
                    maps[i] = m
            break
    return maps


def _source_key(key: str, blocks: Mapping[int, int], depth_s: int) -> str | None:
    m = re.match(r"tpm\.layer(\d+)\.(.*)", key)
    if m:
        src = blocks.get(int(m.group(1)) - 1)
        return None if src is None else f"tpm.layer{src + 1}.{m.group(2)}"
    m = re.match(r"trans\.transformer_blocks\.(\d+)\.(.*)", key)
    if m:
        return key if int(m.group(1)) < depth_s else None
    if key.startswith("tpm.stem."):
        return key
    return None  # SIM.*: not in an ImageNet checkpoint


def _copy(target: torch.Tensor, source: torch.Tensor, maps: Sequence[torch.Tensor]) -> str:
    if target.dim() == 0:
        target.copy_(source)
        return "inherited"
    valid = [m >= 0 for m in maps]
    if not all(v.any() for v in valid):
        return "fresh"
    t_idx = [torch.nonzero(v).flatten() for v in valid]
    s_idx = [m[v] for m, v in zip(maps, valid)]
    sub = source
    for axis, idx in enumerate(s_idx):
        sub = sub.index_select(axis, idx)
    grid = torch.meshgrid(*t_idx, indexing="ij")
    target[grid] = sub.to(target.dtype)
    if all(v.all() for v in valid):
        return "inherited" if tuple(target.shape) == tuple(source.shape) and all(
            torch.equal(m, torch.arange(len(m))) for m in maps) else "sliced"
    return "partial"


# ----------------------------------------------------------------------------- public
def inherit_state_dict(backbone: nn.Module, var: TopFormerConfig, source: Mapping[str, torch.Tensor],
                       ckpt: TopFormerConfig, name: str = "<state dict>") -> InheritReport:
    """Initialise ``backbone`` (a TopFormer backbone of config ``var``) from ImageNet weights ``source``.

    ``source`` is keyed ``tpm.*`` / ``trans.*`` (classifier ``head.*`` ignored); ``ckpt`` is the
    config of the network it was trained as. Tensors without a counterpart keep their values.
    """
    blocks = _block_map(var, ckpt)
    report = InheritReport(name)
    own = backbone.state_dict()
    with torch.no_grad():
        for key, target in own.items():
            src_key = _source_key(key, blocks, ckpt.depths)
            src = source.get(src_key) if src_key else None
            if src is None or src.dim() != target.dim():
                report.status[key] = "fresh"
                continue
            maps = _axis_maps(key, tuple(target.shape), tuple(src.shape), var, ckpt)
            report.status[key] = _copy(target, src, maps)
            if report.status[key] != "fresh":
                report.origin[key] = src_key
    backbone.load_state_dict(own)
    if not any(s != "fresh" for s in report.status.values()):
        raise CheckpointError(f"{name}: no tensor of the checkpoint fits the variant's backbone "
                              "(expected ImageNet keys tpm.* / trans.*)")
    return report


def nearest_official(var: TopFormerConfig) -> str:
    """The official preset (tiny/small/base) nearest to ``var`` in (log params, log MACs) at 512x512."""
    import math

    from topnas.topformer.complexity import count_complexity

    def cx(cfg: TopFormerConfig) -> tuple[int, int]:
        c = count_complexity(cfg.replace(num_classes=150, norm="BN"), (512, 512))
        return c.params, c.macs

    p, m = cx(var)
    dist = {}
    for name in OFFICIAL_IMAGENET_FILES:
        if var.replace(num_classes=150, norm="BN") == preset_config(name, norm="BN"):
            return name
        pp, pm = _preset_complexity(name, cx)
        dist[name] = math.hypot(math.log(p / pp), math.log(m / pm))
    return min(dist, key=dist.get)


_PRESET_CX: dict[str, tuple[int, int]] = {}


def _preset_complexity(name: str, cx: Any) -> tuple[int, int]:
    if name not in _PRESET_CX:
        _PRESET_CX[name] = cx(preset_config(name))
    return _PRESET_CX[name]


def resolve_imagenet_checkpoint(path: str | os.PathLike[str], var: TopFormerConfig) -> tuple[Path, str]:
    """``(file, preset)``: ``path`` itself (its preset read from the official file name), or, for a
    folder holding the official files, the file of the preset nearest to ``var``."""
    p = Path(path)
    if p.is_dir() or (not p.exists() and not p.suffix):  # a folder (perhaps not downloaded yet)
        preset = nearest_official(var)
        return p / OFFICIAL_IMAGENET_FILES[preset], preset
    for preset, fname in OFFICIAL_IMAGENET_FILES.items():
        if p.name == fname or p.name.startswith(f"topformer-{preset[0].upper()}-"):
            return p, preset
    return p, ""


def inherit_from_checkpoint(model: nn.Module, var: TopFormerConfig, path: str | os.PathLike[str],
                            ckpt_preset: str | None = None) -> InheritReport:
    """Load an official ImageNet checkpoint file (or the nearest one in a folder) into ``model``'s backbone.

    The checkpoint's architecture is the official preset named by ``ckpt_preset``, else read from
    the official file name; a checkpoint of another architecture needs ``ckpt_preset``.
    """
    file, preset = resolve_imagenet_checkpoint(path, var)
    preset = ckpt_preset or preset
    if not preset:
        raise CheckpointError(f"{file}: cannot tell which official preset it is (name it like "
                              f"{OFFICIAL_IMAGENET_FILES['tiny']}, or pass its preset)")
    try:
        obj = torch.load(os.fspath(file), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {file}; {OBTAIN_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - unpickling errors, truncated files
        raise CheckpointError(f"cannot read checkpoint {file}: {str(exc).splitlines()[0]}") from None
    sd = extract_state_dict(obj)
    if any(k.startswith(("backbone.", "decode_head.")) for k in sd):
        raise CheckpointError(f"{file} is a segmentation checkpoint; model.init: imagenet_nearest needs an "
                              "ImageNet classification checkpoint (keys tpm.* / trans.*)")
    backbone = getattr(model, "backbone", model)
    return inherit_state_dict(backbone, var, sd, preset_config(preset), name=str(file))
