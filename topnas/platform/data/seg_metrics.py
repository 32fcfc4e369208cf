"""Segmentation metrics with mmseg 0.19 semantics (mIoU, mAcc, aAcc), distributable.

Per-image areas are class histograms (int64 tensors, exact at any dataset size); summing them over
images — or ``all_reduce``-ing the stacked (4, C) tensor across workers — then :func:`summarize`
gives exactly mmseg's numbers: classes whose union (IoU) or label area (Acc) is 0 are NaN and left
out of the mean. Values are fractions in [0, 1] (mmseg prints them x100).
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IoUAccumulator", "evaluate_logits_to_original", "intersect_and_union", "summarize"]


def _hist(values: torch.Tensor, num_classes: int) -> torch.Tensor:
    # torch.histc(min=0, max=C-1) semantics: values outside [0, C) are not counted
    values = values[(values >= 0) & (values < num_classes)]
    return torch.bincount(values, minlength=num_classes)[:num_classes]


def intersect_and_union(
    pred: torch.Tensor | np.ndarray,
    label: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int = 255,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(area_intersect, area_union, area_pred, area_label), each an int64 (num_classes,) tensor.

    ``pred`` and ``label`` are same-shaped class-index maps (any leading batch dims); pixels whose label
    is ``ignore_index`` are dropped from every area, as in mmseg.
    """
    pred_t = torch.as_tensor(pred).long()
    label_t = torch.as_tensor(label, device=pred_t.device).long()
    if pred_t.shape != label_t.shape:
        raise ValueError(f"pred shape {tuple(pred_t.shape)} != label shape {tuple(label_t.shape)}")
    mask = label_t != ignore_index
    pred_t, label_t = pred_t[mask], label_t[mask]
    area_intersect = _hist(pred_t[pred_t == label_t], num_classes)
    area_pred = _hist(pred_t, num_classes)
    area_label = _hist(label_t, num_classes)
    area_union = area_pred + area_label - area_intersect
    return area_intersect, area_union, area_pred, area_label


def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN -> NaN, no warning spam
        return float(np.nanmean(values)) if values.size else float("nan")


def summarize(
    total_intersect: torch.Tensor | np.ndarray,
    total_union: torch.Tensor | np.ndarray,
    total_pred: torch.Tensor | np.ndarray,
    total_label: torch.Tensor | np.ndarray,
) -> dict[str, Any]:
    """``{"mIoU", "mAcc", "aAcc", "IoU_per_class", "Acc_per_class"}`` from summed areas.

    IoU = intersect / union, Acc = intersect / label per class (NaN where the denominator is 0, then
    excluded by nanmean); aAcc = sum(intersect) / sum(label). ``total_pred`` is accepted for symmetry
    with :func:`intersect_and_union` (union already includes it).
    """
    del total_pred
    inter = np.asarray(torch.as_tensor(total_intersect).double().cpu())
    union = np.asarray(torch.as_tensor(total_union).double().cpu())
    label = np.asarray(torch.as_tensor(total_label).double().cpu())
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
        acc = inter / label
        a_acc = inter.sum() / label.sum() if label.sum() > 0 else float("nan")
    iou[union == 0] = np.nan
    acc[label == 0] = np.nan
    return {
        "mIoU": _nanmean(iou),
        "mAcc": _nanmean(acc),
        "aAcc": float(a_acc),
        "IoU_per_class": iou.tolist(),
        "Acc_per_class": acc.tolist(),
    }


class IoUAccumulator:
    """Running sums of the four areas; ``totals`` is one (4, C) int64 tensor to ``all_reduce``."""

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.totals = torch.zeros(4, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray) -> None:
        areas = intersect_and_union(pred, label, self.num_classes, self.ignore_index)
        self.totals += torch.stack(areas).to(self.totals.device)

    def all_reduce(self) -> None:
        """Sum the totals over the default process group (no-op when not distributed)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.totals, op=dist.ReduceOp.SUM)

    def summarize(self) -> dict[str, Any]:
        return summarize(*self.totals.unbind(0))


def evaluate_logits_to_original(
    logits: torch.Tensor,
    orig_hw: Sequence[int],
    input_hw: Sequence[int] | None = None,
    align_corners: bool = False,
) -> torch.Tensor:
    """Official test path: logits -> bilinear to input size -> bilinear to original size -> argmax.

    ``logits`` is (B, C, h, w) or (C, h, w) (e.g. the stride-8 head output); ``input_hw`` is the
    network input size (skip when the model already returns input-size logits). Softmax is skipped:
    it does not change the argmax. Returns int64 (B, H, W) or (H, W).
    """
    squeeze = logits.dim() == 3
    x = logits.unsqueeze(0) if squeeze else logits
    if x.dim() != 4:
        raise ValueError(f"logits must be (B, C, h, w) or (C, h, w); got {tuple(logits.shape)}")
    for size in (input_hw, orig_hw):
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear",
                              align_corners=align_corners)
    pred = x.argmax(dim=1)
    return pred[0] if squeeze else pred
