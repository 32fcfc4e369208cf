"""Each pipeline step against hand-computed expectations (mmseg 0.19 semantics)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pytest
import torch

from topnas.errors import ConfigError
from topnas.platform.data.transforms import (
    IMG_MEAN,
    IMG_STD,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    Resize,
    ResizeToMultiple,
    build_eval_pipeline,
    build_train_pipeline,
)


class ScriptedRng:
    """Stands in for np.random.Generator: returns scripted values in call order."""

    def __init__(self, integers: Sequence[int] = (), uniform: Sequence[float] = (),
                 random: Sequence[float] = ()) -> None:
        self._int, self._uni, self._rand = list(integers), list(uniform), list(random)

    def integers(self, low: int, high: int | None = None) -> int:
        if high is None:
            low, high = 0, low
        v = self._int.pop(0)
        assert low <= v < high, (v, low, high)
        return v

    def uniform(self, low: float, high: float) -> float:
        v = self._uni.pop(0)
        assert low <= v <= high
        return v

    def random(self) -> float:
        return self._rand.pop(0)


def _img(h: int, w: int) -> np.ndarray:
    return (np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)


# ---------------------------------------------------------------- Resize
@pytest.mark.parametrize(
    "hw, ratio, expected_hw",
    [
        ((100, 150), 1.0, (512, 768)),    # scale (2048,512): short edge binds, factor 5.12
        ((100, 150), 0.5, (256, 384)),    # scale (1024,256): factor 2.56
        ((10, 1000), 1.0, (20, 2048)),    # long edge binds: factor 2.048, h = int(20.48 + .5)
        ((128, 160), 0.75, (384, 480)),   # scale (1536,384): factor min(9.6, 3.0) = 3
    ],
)
def test_resize_keep_ratio_sizes(hw: tuple[int, int], ratio: float, expected_hw: tuple[int, int]) -> None:
    r = Resize((2048, 512), ratio_range=(ratio, ratio))
    seg = np.zeros(hw, np.uint8)
    out = r({"img": _img(*hw), "gt_semantic_seg": seg})
    assert out["scale"] == (int(2048 * ratio), int(512 * ratio))
    assert out["img"].shape == (*expected_hw, 3)
    assert out["gt_semantic_seg"].shape == expected_hw


def test_resize_ratio_drawn_from_rng_and_label_nearest() -> None:
    r = Resize((256, 64), ratio_range=(0.5, 2.0), rng=np.random.default_rng(7))
    expect_rng = np.random.default_rng(7)
    seg = np.zeros((40, 60), np.uint8)
    seg[:, 30:] = 3
    seg[:5] = 255
    for _ in range(5):
        ratio = expect_rng.random() * 1.5 + 0.5
        out = r({"img": _img(40, 60), "gt_semantic_seg": seg.copy()})
        assert out["scale"] == (int(256 * ratio), int(64 * ratio))
        assert set(np.unique(out["gt_semantic_seg"])) <= {0, 3, 255}  # nearest: no blended values
        assert out["gt_semantic_seg"].shape == out["img"].shape[:2]


def test_resize_rejects_bad_config() -> None:
    with pytest.raises(ConfigError):
        Resize((2048, 0))
    with pytest.raises(ConfigError):
        Resize((2048, 512), ratio_range=(2.0, 0.5))


# ---------------------------------------------------------------- RandomCrop
def _crop_label() -> np.ndarray:
    # 4x8: columns 0-3 all class 0; columns 4-7 a checker of classes 1 and 2.
    seg = np.zeros((4, 8), np.uint8)
    seg[:, 4:] = (np.indices((4, 4)).sum(0) % 2) + 1
    return seg


def test_crop_accept_rule_excludes_ignore() -> None:
    c = RandomCrop((4, 4), cat_max_ratio=0.75)
    one_class = np.array([0] * 10 + [255] * 6, np.uint8).reshape(4, 4)
    assert not c.accepts(one_class)                      # a single valid class never passes
    at_limit = np.array([0] * 6 + [1] * 2 + [255] * 8, np.uint8).reshape(4, 4)
    assert not c.accepts(at_limit)                       # 6/8 = 0.75 is not < 0.75 (ignore excluded)
    below = np.array([0] * 5 + [1] * 3 + [255] * 8, np.uint8).reshape(4, 4)
    assert c.accepts(below)                              # 5/8 < 0.75


def test_crop_redraws_until_accepted() -> None:
    # draws are (y, x) pairs; y margin is 0. x=0 (all class 0) and x=1 (12/16) are rejected, x=3 passes.
    rng = ScriptedRng(integers=[0, 0, 0, 1, 0, 3])
    c = RandomCrop((4, 4), cat_max_ratio=0.75, rng=rng)  # type: ignore[arg-type]
    img = _img(4, 8)
    seg = _crop_label()
    out = c({"img": img, "gt_semantic_seg": seg})
    assert out["crop_bbox"] == (0, 4, 3, 7)
    np.testing.assert_array_equal(out["gt_semantic_seg"], seg[:, 3:7])
    np.testing.assert_array_equal(out["img"], img[:, 3:7])
    assert rng._int == []


def test_crop_gives_up_after_ten_redraws() -> None:
    # uniform label: every crop is rejected; the 11th draw is used as is.
    xs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5]
    rng = ScriptedRng(integers=[v for x in xs for v in (0, x)])
    c = RandomCrop((4, 4), cat_max_ratio=0.75, rng=rng)  # type: ignore[arg-type]
    out = c({"img": _img(4, 14), "gt_semantic_seg": np.zeros((4, 14), np.uint8)})
    assert out["crop_bbox"] == (0, 4, 5, 9)
    assert rng._int == []


def test_crop_smaller_image_and_no_ratio_check() -> None:
    c = RandomCrop((64, 64), cat_max_ratio=1.0, rng=np.random.default_rng(0))
    out = c({"img": _img(30, 50), "gt_semantic_seg": np.zeros((30, 50), np.uint8)})
    assert out["img"].shape == (30, 50, 3) and out["crop_bbox"] == (0, 64, 0, 64)


# ---------------------------------------------------------------- RandomFlip / Pad / Normalize
def test_flip_prob_one_and_zero() -> None:
    img, seg = _img(3, 5), np.arange(15, dtype=np.uint8).reshape(3, 5)
    out = RandomFlip(prob=1.0)({"img": img.copy(), "gt_semantic_seg": seg.copy()})
    np.testing.assert_array_equal(out["img"], img[:, ::-1])
    np.testing.assert_array_equal(out["gt_semantic_seg"], seg[:, ::-1])
    assert out["flip"] is True
    out = RandomFlip(prob=0.0)({"img": img.copy(), "gt_semantic_seg": seg.copy()})
    np.testing.assert_array_equal(out["img"], img)
    assert out["flip"] is False


def test_pad_values() -> None:
    img = np.full((3, 5, 3), 7.5, np.float32)
    seg = np.ones((3, 5), np.uint8)
    out = Pad((4, 6))({"img": img, "gt_semantic_seg": seg})
    assert out["img"].shape == (4, 6, 3) and out["gt_semantic_seg"].shape == (4, 6)
    assert (out["img"][:3, :5] == 7.5).all() and (out["img"][3] == 0).all() and (out["img"][:, 5] == 0).all()
    assert (out["gt_semantic_seg"][:3, :5] == 1).all()
    assert (out["gt_semantic_seg"][3] == 255).all() and (out["gt_semantic_seg"][:, 5] == 255).all()


def test_normalize_bgr_to_rgb() -> None:
    img = np.zeros((1, 2, 3), np.uint8)
    img[0, 0] = (10, 20, 30)  # BGR
    out = Normalize()({"img": img})["img"]
    assert out.dtype == np.float32
    rgb = np.array([30, 20, 10], np.float32)
    np.testing.assert_allclose(out[0, 0], (rgb - np.array(IMG_MEAN)) / np.array(IMG_STD), rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], -np.array(IMG_MEAN) / np.array(IMG_STD), rtol=1e-6)


# ---------------------------------------------------------------- PhotoMetricDistortion
def test_photometric_all_coins_off_is_identity() -> None:
    img = _img(6, 7)
    # coins: brightness, mode, saturation, hue, contrast (mode 0 -> contrast last)
    pmd = PhotoMetricDistortion(rng=ScriptedRng(integers=[0, 0, 0, 0, 0]))  # type: ignore[arg-type]
    np.testing.assert_array_equal(pmd({"img": img.copy()})["img"], img)


def test_photometric_brightness_then_contrast_clip() -> None:
    img = np.array([[[100, 200, 250]]], np.uint8)
    # brightness on (+10.5), mode 1 (contrast first, on: x1.5), saturation off, hue off
    rng = ScriptedRng(integers=[1, 1, 1, 0, 0], uniform=[10.5, 1.5])
    pmd = PhotoMetricDistortion(rng=rng)  # type: ignore[arg-type]
    out = pmd({"img": img})["img"]
    b = np.clip(img.astype(np.float32) + 10.5, 0, 255).astype(np.uint8)      # 110, 210, 255 (clipped)
    expected = np.clip(b.astype(np.float32) * 1.5, 0, 255).astype(np.uint8)  # 165, 255, 255
    np.testing.assert_array_equal(out, expected)
    assert out.tolist() == [[[165, 255, 255]]]


def test_photometric_hue_shift_on_grey_keeps_grey() -> None:
    img = np.full((2, 2, 3), 90, np.uint8)  # saturation 0: a hue shift changes nothing
    pmd = PhotoMetricDistortion(rng=ScriptedRng(integers=[0, 0, 0, 1, 17, 0]))  # type: ignore[arg-type]
    np.testing.assert_array_equal(pmd({"img": img.copy()})["img"], img)


# ---------------------------------------------------------------- ResizeToMultiple / pipelines
@pytest.mark.parametrize(
    "hw, expected", [((100, 150), (128, 160)), ((64, 96), (64, 96)), ((33, 31), (64, 32))]
)
def test_resize_to_multiple_resizes_up(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    img = np.full((*hw, 3), 200, np.uint8)
    out = ResizeToMultiple(32)({"img": img})["img"]
    assert out.shape == (*expected, 3)
    assert (out == 200).all()  # a resize of a flat image, not a zero pad


def test_eval_pipeline_sizes_and_label_untouched() -> None:
    # 90x130, scale (256, 64): factor min(256/130, 64/90) = 0.7111 -> 64x92 -> multiple of 32 -> 64x96
    pipe = build_eval_pipeline(img_scale=(256, 64), size_divisor=32)
    seg = np.full((90, 130), 3, np.uint8)
    out = pipe({"img": _img(90, 130), "gt_semantic_seg": seg})
    assert out["img"].shape == (3, 64, 96) and out["img"].dtype == torch.float32
    assert out["gt_semantic_seg"].shape == (90, 130) and out["gt_semantic_seg"].dtype == torch.int64
    no_multiple = build_eval_pipeline(img_scale=(256, 64), size_divisor=None)
    assert no_multiple({"img": _img(90, 130)})["img"].shape == (3, 64, 92)


def _train_sample() -> dict[str, Any]:
    seg = np.zeros((128, 160), np.uint8)
    seg[20:90, 30:120] = 1
    seg[60:128, 100:160] = 2
    seg[:10] = 255
    return {"img": _img(128, 160), "gt_semantic_seg": seg}


def test_train_pipeline_tiny_config_shapes_and_determinism() -> None:
    a = build_train_pipeline(crop_size=64, img_scale=(256, 64), seed=3)
    b = build_train_pipeline(crop_size=64, img_scale=(256, 64), seed=3)
    for _ in range(4):
        oa, ob = a(_train_sample()), b(_train_sample())
        assert oa["img"].shape == (3, 64, 64) and oa["img"].dtype == torch.float32
        assert oa["gt_semantic_seg"].shape == (64, 64) and oa["gt_semantic_seg"].dtype == torch.int64
        assert set(oa["gt_semantic_seg"].unique().tolist()) <= {0, 1, 2, 255}
        assert torch.equal(oa["img"], ob["img"]) and torch.equal(oa["gt_semantic_seg"], ob["gt_semantic_seg"])
    c = build_train_pipeline(crop_size=64, img_scale=(256, 64), seed=4)
    outs_a = [a(_train_sample())["img"] for _ in range(3)]
    outs_c = [c(_train_sample())["img"] for _ in range(3)]
    assert any(not torch.equal(x, y) for x, y in zip(outs_a, outs_c))
    a.reseed(3)
    b.reseed(3)
    assert torch.equal(a(_train_sample())["img"], b(_train_sample())["img"])


def test_train_pipeline_pads_small_crops() -> None:
    # ratio 0.5 on (256, 64) -> scale (128, 32): a 128x160 image becomes 32x40 < crop 48 -> padded
    pipe = build_train_pipeline(crop_size=48, img_scale=(256, 64), ratio_range=(0.5, 0.5), seed=0)
    out = pipe(_train_sample())
    assert out["img"].shape == (3, 48, 48)
    assert (out["gt_semantic_seg"][32:] == 255).all() and (out["gt_semantic_seg"][:, 40:] == 255).all()
    assert (out["img"][:, 32:] == 0).all() and (out["img"][:, :, 40:] == 0).all()
