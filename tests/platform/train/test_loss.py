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


def _reference(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, labels, ignore_index=255, reduction="sum") / labels.numel()


@pytest.mark.parametrize("logit_hw,label_hw", [((2, 2), (16, 16)), ((3, 4), (24, 32)), ((5, 7), (15, 14)),
                                               ((4, 4), (4, 8))])
def test_integer_scale_path_matches_interpolate_and_cross_entropy(logit_hw, label_hw) -> None:
    # the CPU fast path (separable resize + fused cross-entropy) vs torch's ops: value and gradients
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 5, *logit_hw, generator=g) * 4).requires_grad_()
    labels = torch.randint(0, 5, (2, *label_hw), generator=g)
    labels[0, :2] = 255
    labels[1, :, -1] = 255
    upstream = 3.0  # a loss scaled after the fact: the gradient must scale too
    ours = seg_cross_entropy(logits, labels)
    (got,) = torch.autograd.grad(ours * upstream, logits)
    ref = _reference(logits, labels)
    (want,) = torch.autograd.grad(ref * upstream, logits)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert got.abs().max() > 1e-3  # not a trivial zero gradient


def test_integer_scale_path_ignores_fully_ignored_images() -> None:
    logits = torch.randn(2, 5, 2, 2, requires_grad=True)
    labels = torch.full((2, 16, 16), 255)
    labels[1, 3, 3] = 4
    loss = seg_cross_entropy(logits, labels)
    loss.backward()
    torch.testing.assert_close(loss, _reference(logits.detach(), labels), rtol=1e-6, atol=1e-7)
    assert torch.count_nonzero(logits.grad[0]) == 0 and torch.count_nonzero(logits.grad[1]) > 0


@pytest.mark.parametrize("scale", [(8, 8), (2, 3), (1, 4)])
def test_upsample_bilinear_int_matches_interpolate(scale) -> None:
    from topnas.platform.train.loss import upsample_bilinear_int

    x = torch.randn(2, 3, 5, 6)
    want = F.interpolate(x, size=(5 * scale[0], 6 * scale[1]), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample_bilinear_int(x, *scale), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("logit_hw,label_hw", [((3, 4), (24, 32)), ((5, 7), (15, 14))])  # fast path, general path
def test_class_weight_multiplies_each_pixel_loss_as_mmseg(logit_hw, label_hw) -> None:
    # mmseg 0.19: F.cross_entropy(weight=w, reduction="none"), then the mean over ALL pixels
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 4, *logit_hw, generator=g) * 3).requires_grad_()
    labels = torch.randint(0, 4, (2, *label_hw), generator=g)
    labels[0, :2] = 255
    weight = torch.tensor([0.5, 1.0, 2.0, 4.0])
    ours = seg_cross_entropy(logits, labels, class_weight=weight)
    (got,) = torch.autograd.grad(ours * 3.0, logits)
    up = F.interpolate(logits, size=label_hw, mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(up, labels, weight=weight, ignore_index=255, reduction="none")
    ref = per_pixel.mean()
    (want,) = torch.autograd.grad(ref * 3.0, logits)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    plain = seg_cross_entropy(logits, labels)  # the weights change the loss (labels of every class present)
    assert not torch.isclose(ours, plain)
    ones = seg_cross_entropy(logits, labels, class_weight=torch.ones(4))
    torch.testing.assert_close(ones, plain, rtol=1e-6, atol=1e-7)
