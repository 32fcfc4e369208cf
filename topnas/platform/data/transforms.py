"""The official TopFormer/mmseg 0.19 ADE20K train and eval pipelines, on mmcv image ops.

Each step is a small class mapping mmseg's ``results`` dict to a new one, with mmseg's defaults and
rules (hustvl/TopFormer ``local_configs/_base_/datasets/ade20k.py``). Randomness comes from an
explicit ``np.random.Generator`` shared by the steps of one :class:`Compose`, so a pipeline is
reproducible from its seed and can be reseeded per DataLoader worker
(:func:`topnas.platform.data.ade20k.seed_worker`).

Label maps are the keys in ``seg_keys`` (default ``("gt_semantic_seg",)``); the eval pipeline passes
``seg_keys=()`` so the label stays at the original size, as mmseg evaluates against the original map.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import mmcv
import numpy as np
import torch

from topnas.errors import ConfigError

__all__ = [
    "IMG_MEAN",
    "IMG_STD",
    "Compose",
    "Normalize",
    "Pad",
    "PhotoMetricDistortion",
    "RandomCrop",
    "RandomFlip",
    "Resize",
    "ResizeToMultiple",
    "ToTensor",
    "build_eval_pipeline",
    "build_train_pipeline",
]

Results = dict[str, Any]
SEG_KEYS: tuple[str, ...] = ("gt_semantic_seg",)
IMG_MEAN = (123.675, 116.28, 103.53)
IMG_STD = (58.395, 57.12, 57.375)


def _pair(field: str, value: Any) -> tuple[int, int]:
    """An int or a 2-sequence of positive ints (YAML gives lists) -> tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(field, value, "a positive int or a pair of positive ints")
    return int(value[0]), int(value[1])


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


class Resize:
    """mmseg ``Resize`` with ``ratio_range`` (or a fixed scale when ``ratio_range`` is None).

    Ratio r ~ U[lo, hi); target scale (int(img_scale[0]*r), int(img_scale[1]*r)). With ``keep_ratio``
    the image is rescaled to fit inside (long edge <= max(scale), short edge <= min(scale)) by
    ``mmcv.imrescale`` (bilinear), label maps with nearest; without it, resized to exactly (w, h).
    """

    def __init__(
        self,
        img_scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] | None = (0.5, 2.0),
        keep_ratio: bool = True,
        rng: np.random.Generator | None = None,
        seg_keys: Sequence[str] = SEG_KEYS,
    ) -> None:
        self.img_scale = _pair("img_scale", img_scale)
        if ratio_range is not None:
            if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1]:
                raise ConfigError("ratio_range", ratio_range, "a pair (lo, hi) with 0 < lo <= hi, or null")
            ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.ratio_range = ratio_range
        self.keep_ratio = keep_ratio
        self.rng = _rng(rng)
        self.seg_keys = tuple(seg_keys)

    def sample_scale(self) -> tuple[int, int]:
        if self.ratio_range is None:
            return self.img_scale
        lo, hi = self.ratio_range
        ratio = self.rng.random() * (hi - lo) + lo
        return int(self.img_scale[0] * ratio), int(self.img_scale[1] * ratio)

    def __call__(self, results: Results) -> Results:
        scale = self.sample_scale()
        img = results["img"]
        h, w = img.shape[:2]
        if self.keep_ratio:
            img = mmcv.imrescale(img, scale, interpolation="bilinear")
        else:
            img = mmcv.imresize(img, scale, interpolation="bilinear")
        new_h, new_w = img.shape[:2]
        for key in self.seg_keys:
            if key in results:
                results[key] = mmcv.imresize(results[key], (new_w, new_h), interpolation="nearest")
        results.update(img=img, scale=scale, img_shape=img.shape, pad_shape=img.shape,
                       scale_factor=(new_w / w, new_h / h), keep_ratio=self.keep_ratio)
        return results


class RandomCrop:
    """mmseg ``RandomCrop``: uniform offset; with ``cat_max_ratio`` < 1 redraw up to 10 times.

    A crop is accepted when it holds more than one non-ignored class and the largest one covers less
    than ``cat_max_ratio`` of the non-ignored pixels; after 10 rejections the 11th draw is used as is.
    """

    MAX_REDRAWS = 10

    def __init__(
        self,
        crop_size: int | Sequence[int],
        cat_max_ratio: float = 0.75,
        ignore_index: int = 255,
        rng: np.random.Generator | None = None,
        seg_keys: Sequence[str] = SEG_KEYS,
    ) -> None:
        self.crop_size = _pair("crop_size", crop_size)  # (h, w)
        if not 0 < cat_max_ratio <= 1:
            raise ConfigError("cat_max_ratio", cat_max_ratio, "a number in (0, 1]")
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = ignore_index
        self.rng = _rng(rng)
        self.seg_keys = tuple(seg_keys)

    def get_crop_bbox(self, img: np.ndarray) -> tuple[int, int, int, int]:
        margin_h = max(img.shape[0] - self.crop_size[0], 0)
        margin_w = max(img.shape[1] - self.crop_size[1], 0)
        y1 = int(self.rng.integers(0, margin_h + 1))
        x1 = int(self.rng.integers(0, margin_w + 1))
        return y1, y1 + self.crop_size[0], x1, x1 + self.crop_size[1]

    @staticmethod
    def crop(img: np.ndarray, bbox: tuple[int, int, int, int]) -> np.ndarray:
        y1, y2, x1, x2 = bbox
        return img[y1:y2, x1:x2, ...]

    def accepts(self, seg: np.ndarray) -> bool:
        labels, cnt = np.unique(seg, return_counts=True)
        cnt = cnt[labels != self.ignore_index]
        return len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < self.cat_max_ratio

    def __call__(self, results: Results) -> Results:
        img = results["img"]
        bbox = self.get_crop_bbox(img)
        seg_key = next((k for k in self.seg_keys if k in results), None)
        if self.cat_max_ratio < 1.0 and seg_key is not None:
            for _ in range(self.MAX_REDRAWS):
                if self.accepts(self.crop(results[seg_key], bbox)):
                    break
                bbox = self.get_crop_bbox(img)
        img = self.crop(img, bbox)
        results.update(img=img, img_shape=img.shape, crop_bbox=bbox)
        for key in self.seg_keys:
            if key in results:
                results[key] = self.crop(results[key], bbox)
        return results


class RandomFlip:
    """mmseg ``RandomFlip``: flip with probability ``prob`` (horizontal by default)."""

    def __init__(
        self,
        prob: float = 0.5,
        direction: str = "horizontal",
        rng: np.random.Generator | None = None,
        seg_keys: Sequence[str] = SEG_KEYS,
    ) -> None:
        if not 0 <= prob <= 1:
            raise ConfigError("flip_prob", prob, "a number in [0, 1]")
        if direction not in ("horizontal", "vertical"):
            raise ConfigError("flip_direction", direction, ["horizontal", "vertical"])
        self.prob = prob
        self.direction = direction
        self.rng = _rng(rng)
        self.seg_keys = tuple(seg_keys)

    def __call__(self, results: Results) -> Results:
        flip = bool(self.rng.random() < self.prob)
        if flip:
            results["img"] = mmcv.imflip(results["img"], direction=self.direction)
            for key in self.seg_keys:
                if key in results:
                    results[key] = mmcv.imflip(results[key], direction=self.direction).copy()
        results.update(flip=flip, flip_direction=self.direction)
        return results


class PhotoMetricDistortion:
    """mmseg ``PhotoMetricDistortion`` on a BGR uint8 image; each op applied with probability 0.5.

    Order: brightness, [contrast if mode 1], saturation, hue, [contrast if mode 0]; each op clips and
    rounds back to uint8 (truncation, as mmseg's ``convert``).
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta
        self.rng = _rng(rng)

    @staticmethod
    def convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        out = img.astype(np.float32) * alpha + beta
        return np.clip(out, 0, 255).astype(np.uint8)

    def _coin(self) -> bool:
        return bool(self.rng.integers(2))

    def brightness(self, img: np.ndarray) -> np.ndarray:
        if self._coin():
            return self.convert(img, beta=self.rng.uniform(-self.brightness_delta, self.brightness_delta))
        return img

    def contrast(self, img: np.ndarray) -> np.ndarray:
        if self._coin():
            return self.convert(img, alpha=self.rng.uniform(self.contrast_lower, self.contrast_upper))
        return img

    def saturation(self, img: np.ndarray) -> np.ndarray:
        if self._coin():
            hsv = mmcv.bgr2hsv(img)
            hsv[:, :, 1] = self.convert(
                hsv[:, :, 1], alpha=self.rng.uniform(self.saturation_lower, self.saturation_upper))
            img = mmcv.hsv2bgr(hsv)
        return img

    def hue(self, img: np.ndarray) -> np.ndarray:
        if self._coin():
            hsv = mmcv.bgr2hsv(img)
            shift = int(self.rng.integers(-self.hue_delta, self.hue_delta))  # high exclusive, as np randint
            hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + shift) % 180
            img = mmcv.hsv2bgr(hsv)
        return img

    def __call__(self, results: Results) -> Results:
        img = results["img"]
        img = self.brightness(img)
        mode = int(self.rng.integers(2))  # 1: contrast first, 0: contrast last
        if mode == 1:
            img = self.contrast(img)
        img = self.saturation(img)
        img = self.hue(img)
        if mode == 0:
            img = self.contrast(img)
        results["img"] = img
        return results


class Normalize:
    """``mmcv.imnormalize``: (img - mean) / std in float32, BGR -> RGB first when ``to_rgb``."""

    def __init__(self, mean: Sequence[float] = IMG_MEAN, std: Sequence[float] = IMG_STD,
                 to_rgb: bool = True) -> None:
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)
        self.to_rgb = to_rgb

    def __call__(self, results: Results) -> Results:
        results["img"] = mmcv.imnormalize(results["img"], self.mean, self.std, self.to_rgb)
        results["img_norm_cfg"] = dict(mean=self.mean, std=self.std, to_rgb=self.to_rgb)
        return results


class Pad:
    """mmseg ``Pad(size=...)``: pad bottom/right to (h, w); image with ``pad_val``, labels ``seg_pad_val``."""

    def __init__(self, size: int | Sequence[int], pad_val: float = 0, seg_pad_val: int = 255,
                 seg_keys: Sequence[str] = SEG_KEYS) -> None:
        self.size = _pair("pad_size", size)
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val
        self.seg_keys = tuple(seg_keys)

    def __call__(self, results: Results) -> Results:
        img = mmcv.impad(results["img"], shape=self.size, pad_val=self.pad_val)
        results.update(img=img, pad_shape=img.shape)
        for key in self.seg_keys:
            if key in results:
                results[key] = mmcv.impad(results[key], shape=img.shape[:2], pad_val=self.seg_pad_val)
        return results


class ResizeToMultiple:
    """mmseg ``ResizeToMultiple``: resize (not pad) the image UP to the next multiple of ``size_divisor``."""

    def __init__(self, size_divisor: int = 32, interpolation: str = "bilinear",
                 seg_keys: Sequence[str] = SEG_KEYS) -> None:
        if not isinstance(size_divisor, int) or isinstance(size_divisor, bool) or size_divisor < 1:
            raise ConfigError("size_divisor", size_divisor, "a positive integer")
        self.size_divisor = size_divisor
        self.interpolation = interpolation
        self.seg_keys = tuple(seg_keys)

    def __call__(self, results: Results) -> Results:
        img = mmcv.imresize_to_multiple(results["img"], self.size_divisor, scale_factor=1,
                                        interpolation=self.interpolation)
        results.update(img=img, img_shape=img.shape, pad_shape=img.shape)
        for key in self.seg_keys:
            if key in results:
                results[key] = mmcv.imresize_to_multiple(results[key], self.size_divisor, scale_factor=1,
                                                         interpolation="nearest")
        return results


class ToTensor:
    """DefaultFormatBundle: image HWC -> CHW float32 tensor; every label map -> int64 HxW tensor."""

    def __init__(self, seg_keys: Sequence[str] = SEG_KEYS) -> None:
        self.seg_keys = tuple(seg_keys)

    def __call__(self, results: Results) -> Results:
        img = np.ascontiguousarray(results["img"].transpose(2, 0, 1), dtype=np.float32)
        results["img"] = torch.from_numpy(img)
        for key in self.seg_keys:
            if key in results and not isinstance(results[key], torch.Tensor):
                results[key] = torch.from_numpy(np.ascontiguousarray(results[key]).astype(np.int64))
        return results


class Compose:
    """Steps applied in order; owns the generator the random steps share (reseedable)."""

    def __init__(self, transforms: Sequence[Callable[[Results], Results]], seed: int | None = None) -> None:
        self.transforms = list(transforms)
        self.seed = seed
        if seed is not None:
            self.reseed(seed)

    def reseed(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        for t in self.transforms:
            if hasattr(t, "rng"):
                t.rng = rng

    def __call__(self, results: Results) -> Results:
        for t in self.transforms:
            results = t(results)
        return results

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(type(t).__name__ for t in self.transforms) + "])"


def build_train_pipeline(
    crop_size: int | Sequence[int] = (512, 512),
    img_scale: Sequence[int] = (2048, 512),
    ratio_range: Sequence[float] | None = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip_prob: float = 0.5,
    photometric: bool = True,
    mean: Sequence[float] = IMG_MEAN,
    std: Sequence[float] = IMG_STD,
    to_rgb: bool = True,
    ignore_index: int = 255,
    seed: int = 0,
) -> Compose:
    """Resize -> RandomCrop -> RandomFlip -> PhotoMetricDistortion -> Normalize -> Pad -> ToTensor.

    Defaults are the official 512x512 ADE20K config; tiny CPU runs pass e.g. ``crop_size=64,
    img_scale=(256, 64)``. Output: ``img`` float32 3xHxW, ``gt_semantic_seg`` int64 HxW (both crop-sized).
    """
    crop = _pair("crop_size", crop_size)
    steps: list[Callable[[Results], Results]] = [
        Resize(img_scale, ratio_range, keep_ratio=True),
        RandomCrop(crop, cat_max_ratio=cat_max_ratio, ignore_index=ignore_index),
        RandomFlip(prob=flip_prob),
    ]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += [Normalize(mean, std, to_rgb), Pad(crop, pad_val=0, seg_pad_val=ignore_index), ToTensor()]
    return Compose(steps, seed=seed)


def build_eval_pipeline(
    img_scale: Sequence[int] = (2048, 512),
    size_divisor: int | None = 32,
    mean: Sequence[float] = IMG_MEAN,
    std: Sequence[float] = IMG_STD,
    to_rgb: bool = True,
) -> Compose:
    """Keep-ratio Resize -> ResizeToMultiple (skipped when ``size_divisor`` is None) -> Normalize -> ToTensor.

    The label is left untouched at the original size (``seg_keys=()``) but converted to int64, since
    mIoU is computed on the original map after resizing the logits back (see ``seg_metrics``).
    """
    steps: list[Callable[[Results], Results]] = [
        Resize(img_scale, ratio_range=None, keep_ratio=True, seg_keys=()),
    ]
    if size_divisor is not None:
        steps.append(ResizeToMultiple(size_divisor, seg_keys=()))
    steps += [Normalize(mean, std, to_rgb), ToTensor(seg_keys=SEG_KEYS)]
    return Compose(steps)
