"""Official loss: CE at label size, ignore 255, mean over ALL pixels including ignored (mmseg 0.19)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from topnas.platform.train.loss import seg_cross_entropy


def test_mean_counts_ignored_pixels_in_the_denominator() -> None:
    # one image, 2 classes, 2x2 pixels; logits equal for both classes except pixel (0, 0)
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0, 0, 0] = 2.0
    labels = torch.tensor([[[0, 1], [255, 255]]])
    ce00 = -math.log(math.exp(2) / (math.exp(2) + 1))  # label 0 at (0, 0)
    ce01 = math.log(2)  # uniform logits
    expected = (ce00 + ce01 + 0 + 0) / 4  # 4 pixels, 2 ignored
    assert seg_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    # torch's default mean (over non-ignored pixels) is twice as large here
    assert F.cross_entropy(logits, labels, ignore_index=255).item() == pytest.approx(2 * expected, rel=1e-6)


def test_all_ignored_gives_zero() -> None:
    assert seg_cross_entropy(torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 255)).item() == 0.0


def test_logits_upsampled_bilinear_to_label_size() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 3, 4, requires_grad=True)  # stride-8 logits of a 24x32 crop
    labels = torch.randint(0, 5, (2, 24, 32))
    labels[:, :4] = 255
    loss = seg_cross_entropy(logits, labels)
    up = F.interpolate(logits, size=(24, 32), mode="bilinear", align_corners=False)
    manual = F.cross_entropy(up, labels, ignore_index=255, reduction="sum") / labels.numel()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
