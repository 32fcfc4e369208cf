"""Metrics against a hand-made confusion matrix (mmseg semantics: ignore 255, NaN classes excluded)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from topnas.platform.data.seg_metrics import (
    IoUAccumulator,
    evaluate_logits_to_original,
    intersect_and_union,
    summarize,
)

# 3 classes; class 2 never appears in the label and is predicted only on ignored pixels.
LABEL = np.array([[0, 0, 0, 1], [1, 255, 255, 0]], np.uint8)
PRED = np.array([[0, 0, 1, 1], [0, 2, 0, 0]], np.int64)
# non-ignored (label, pred): (0,0) (0,0) (0,1) (1,1) (1,0) (0,0)
# intersect [3, 1, 0]; pred [4, 2, 0]; label [4, 2, 0]; union [5, 3, 0]


def test_intersect_and_union_hand_computed() -> None:
    inter, union, pred, label = intersect_and_union(PRED, LABEL, num_classes=3, ignore_index=255)
    assert inter.tolist() == [3, 1, 0]
    assert union.tolist() == [5, 3, 0]
    assert pred.tolist() == [4, 2, 0]
    assert label.tolist() == [4, 2, 0]
    assert inter.dtype == torch.int64


def test_summarize_excludes_absent_class() -> None:
    res = summarize(*intersect_and_union(PRED, LABEL, 3))
    assert res["IoU_per_class"][:2] == pytest.approx([3 / 5, 1 / 3])
    assert math.isnan(res["IoU_per_class"][2]) and math.isnan(res["Acc_per_class"][2])
    assert res["mIoU"] == pytest.approx((3 / 5 + 1 / 3) / 2)
    assert res["Acc_per_class"][:2] == pytest.approx([3 / 4, 1 / 2])
    assert res["mAcc"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert res["aAcc"] == pytest.approx(4 / 6)


def test_predicted_but_absent_class_counts_as_zero_iou() -> None:
    label = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 predicted on a valid pixel: union 1, IoU 0, Acc NaN
    res = summarize(*intersect_and_union(pred, label, 3))
    assert res["IoU_per_class"] == pytest.approx([0.5, 1.0, 0.0])
    assert res["mIoU"] == pytest.approx(0.5)
    assert math.isnan(res["Acc_per_class"][2])
    assert res["mAcc"] == pytest.approx(0.75)


def test_out_of_range_label_dropped_like_histc() -> None:
    inter, union, pred, label = intersect_and_union(np.array([0, 1]), np.array([0, 7]), 2)
    assert label.tolist() == [1, 0] and pred.tolist() == [1, 1] and inter.tolist() == [1, 0]


def test_accumulator_sums_images_and_all_reduce_noop() -> None:
    acc = IoUAccumulator(3)
    acc.update(torch.from_numpy(PRED[0]), torch.from_numpy(LABEL[0]))
    acc.update(PRED[1], LABEL[1])
    whole = torch.stack(intersect_and_union(PRED, LABEL, 3))
    assert torch.equal(acc.totals, whole)
    assert acc.totals.shape == (4, 3) and acc.totals.dtype == torch.int64
    acc.all_reduce()  # not distributed: unchanged
    assert torch.equal(acc.totals, whole)
    assert acc.summarize()["mIoU"] == pytest.approx((3 / 5 + 1 / 3) / 2)


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        intersect_and_union(np.zeros((2, 2)), np.zeros((2, 3)), 2)


def test_logits_to_original_two_stage_resize() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    out = evaluate_logits_to_original(logits, orig_hw=(37, 45), input_hw=(40, 48))
    ref = F.interpolate(F.interpolate(logits, (40, 48), mode="bilinear", align_corners=False),
                        (37, 45), mode="bilinear", align_corners=False).argmax(1)
    assert out.shape == (2, 37, 45) and out.dtype == torch.int64
    assert torch.equal(out, ref)
    single = evaluate_logits_to_original(logits[1], orig_hw=(37, 45), input_hw=(40, 48))
    assert torch.equal(single, ref[1])
    const = torch.zeros(1, 3, 4, 4)
    const[:, 2] = 1.0
    assert (evaluate_logits_to_original(const, (7, 9)) == 2).all()
