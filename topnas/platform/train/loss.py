"""The official decode-head loss: mmseg 0.19 ``CrossEntropyLoss`` at label resolution, its mean.

Logits are upsampled bilinearly (``align_corners=False``) to the label size, per-pixel cross-entropy
uses ``ignore_index=255``, and the mean runs over ALL pixels: ignored pixels add 0 to the sum but
count in the denominator (mmseg 0.19 has no ``avg_non_ignore``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "seg_cross_entropy"]

IGNORE_INDEX = 255


def seg_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    align_corners: bool = False,
) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, K, h, w) against ``labels`` (B, H, W), ignored pixels counted.

    Computed in float32 even under autocast. Returns a scalar tensor.
    """
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=align_corners)
    # sum / all pixels == mmseg's mean with ignored pixels in the denominator, without a per-pixel tensor
    total = F.cross_entropy(logits.float(), labels.long(), reduction="sum", ignore_index=ignore_index)
    return total / labels.numel()
