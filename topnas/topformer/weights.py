"""Loading official TopFormer checkpoints into our modules.

Two formats exist in the wild (hustvl/TopFormer's README links both):

* mmseg segmentation checkpoints: an mmcv dict with ``state_dict`` keyed ``backbone.*`` and
  ``decode_head.*``; they load into the whole segmentor.
* ImageNet classification checkpoints (``topformer-T-224-66.2.pth``...): ``state_dict_ema`` /
  ``state_dict`` / ``model`` / raw dict keyed ``tpm.*`` / ``trans.*`` plus a classifier ``head.*``;
  they load into the BACKBONE only, the classifier is ignored and SIM + head stay freshly initialised.

The official loader is ``strict=False`` with verbatim keys, so a wrong prefix silently loads nothing.
We report every key and fail loudly when nothing matched.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from topnas.errors import TopnasError

__all__ = ["CheckpointError", "LoadReport", "extract_state_dict", "load_checkpoint", "load_state_dict"]

log = logging.getLogger(__name__)

_CONTAINER_KEYS = ("state_dict_ema", "state_dict", "model")
_SEG_PREFIXES = ("backbone.", "decode_head.")
_BACKBONE_PREFIXES = ("tpm.", "trans.", "SIM.")
_CLASSIFIER_PREFIX = "head."


class CheckpointError(TopnasError):
    """A checkpoint that cannot be used: unreadable, or nothing in it matches the model."""


@dataclass
class LoadReport:
    """What a load did, key by key."""

    kind: str  # "segmentation" | "classification"
    target: str  # "model" | "backbone"
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatched)

    def summary(self) -> str:
        lines = [
            f"checkpoint ({self.kind}) -> {self.target}: loaded {len(self.loaded)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.shape_mismatched)}, "
            f"ignored {len(self.ignored)}"
        ]
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                lines.append(f"  {title}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
        for k, got, want in self.shape_mismatched[:8]:
            lines.append(f"  shape mismatch {k}: checkpoint {list(got)} vs model {list(want)}")
        return "\n".join(lines)


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Pick the weights out of a checkpoint object, in the official order of preference."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint is a {type(obj).__name__}, expected a dict of tensors")
    for key in _CONTAINER_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError("checkpoint holds no tensors (looked in %s and the raw dict)" % (_CONTAINER_KEYS,))
    # DataParallel / DDP checkpoints carry a "module." prefix.
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = False) -> LoadReport:
    """Load `state_dict` into a TopFormer segmentor (or its backbone), returning a key report.

    Segmentation keys (``backbone.*`` / ``decode_head.*``) go to the whole model; backbone-relative
    keys (``tpm.*`` / ``trans.*``) go to ``model.backbone``; classifier ``head.*`` keys are ignored.
    """
    keys = list(state_dict)
    is_seg = any(k.startswith(_SEG_PREFIXES) for k in keys)
    target = model if is_seg or not hasattr(model, "backbone") else model.backbone
    report = LoadReport(kind="segmentation" if is_seg else "classification",
                        target="model" if target is model else "backbone")
    own = target.state_dict()
    filtered: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        if not is_seg and k.startswith(_CLASSIFIER_PREFIX):
            report.ignored.append(k)
        elif k not in own:
            report.unexpected.append(k)
        elif tuple(v.shape) != tuple(own[k].shape):
            report.shape_mismatched.append((k, tuple(v.shape), tuple(own[k].shape)))
        else:
            filtered[k] = v
    report.loaded = list(filtered)
    report.missing = [k for k in own if k not in filtered and not any(k == m[0] for m in report.shape_mismatched)]
    if not is_seg:
        # A classification checkpoint has no SIM / head: those are expected to stay initialised.
        report.missing = [k for k in report.missing if not k.startswith("SIM.")]
    if not report.loaded:
        raise CheckpointError(
            "no key of the checkpoint matches the model "
            f"(first checkpoint keys: {keys[:3]}; expected keys like {list(own)[:2]}) - "
            "check the prefix (segmentation: backbone./decode_head., classification: tpm./trans.)"
        )
    if strict and not report.ok:
        raise CheckpointError("strict load failed:\n" + report.summary())
    target.load_state_dict(filtered, strict=False)
    return report


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str], strict: bool = False,
                    verbose: bool = True) -> LoadReport:
    """Load an official segmentation or ImageNet checkpoint file into `model` (weights_only)."""
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # unpickling errors, truncated files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    report = load_state_dict(model, extract_state_dict(obj), strict=strict)
    if verbose:
        print(report.summary())
    log.info("%s", report.summary())
    return report
