"""Sliding-window inference (mmseg ``test_cfg=dict(mode='slide', crop_size=..., stride=...)``).

A network trained on crops much smaller than the test images meets, at whole-image test time,
feature maps of another size than any it was trained on. TopFormer pools its token pyramid to 1/64 of
the input: 64x64 training crops give it one token, a 128x160 test image six, and its attention (no
scaling) then mixes tokens it never saw together. Testing on windows of the training crop size, as
mmseg does for datasets whose images are larger than the crop, keeps test inputs like training ones.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["slide_logits", "window_grid"]


def _starts(size: int, crop: int, stride: int) -> list[int]:
    """Window starts along one axis: every ``stride``, the last window flush with the end (mmseg)."""
    grids = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(grids)]


def window_grid(hw: Sequence[int], crop: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` of every window over an ``hw`` image; windows cover it and may overlap.

    An image smaller than ``crop`` along an axis is one window of the image's size along it.
    """
    h, w = int(hw[0]), int(hw[1])
    ch, cw = min(int(crop[0]), h), min(int(crop[1]), w)
    return [(y, y + ch, x, x + cw) for y in _starts(h, ch, int(stride[0])) for x in _starts(w, cw, int(stride[1]))]


def slide_logits(net: nn.Module, img: torch.Tensor, crop: Sequence[int], stride: Sequence[int],
                 channels_last: bool = False) -> torch.Tensor:
    """Logits ``(1, K, H, W)`` of one image ``(1, 3, H, W)``: each window's logits resized to the window,
    summed where windows overlap and divided by how many covered each pixel.

    The windows of one image have one size, so they run as one batch (``net`` in eval mode: batching
    does not change its output).
    """
    if img.dim() != 4 or img.shape[0] != 1:
        raise ValueError(f"img must be (1, 3, H, W); got {tuple(img.shape)}")
    boxes = window_grid(img.shape[-2:], crop, stride)
    crops = torch.cat([img[..., y0:y1, x0:x1] for y0, y1, x0, x1 in boxes])
    if channels_last:
        crops = crops.contiguous(memory_format=torch.channels_last)
    out = net(crops).float()
    wh = (boxes[0][1] - boxes[0][0], boxes[0][3] - boxes[0][2])
    if tuple(out.shape[-2:]) != wh:
        out = F.interpolate(out, size=wh, mode="bilinear", align_corners=False)
    total = out.new_zeros((1, out.shape[1], *img.shape[-2:]))
    count = out.new_zeros((1, 1, *img.shape[-2:]))
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        total[..., y0:y1, x0:x1] += out[k]
        count[..., y0:y1, x0:x1] += 1
    return total / count
