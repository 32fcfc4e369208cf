"""ADE20K-layout dataset reader (real ADEChallengeData2016 or a fixture in the same layout).

Layout: ``<root>/ADEChallengeData2016/{images,annotations}/{training,validation}/<stem>.{jpg,png}``
(``root`` may also point at ``ADEChallengeData2016`` itself). Loading mirrors mmseg 0.19
``LoadImageFromFile`` (cv2, BGR uint8) + ``LoadAnnotations`` (pillow, ``reduce_zero_label``), so the
official pipelines in :mod:`.transforms` see the same arrays as the official code.

Every layout problem raises :class:`DatasetError` naming the path and what was expected, at
construction (folders, file pairing) or at load (undecodable file, label out of range) — never a
shape error deep inside a training step. The full label scan is :meth:`ADE20KDataset.validate`,
run on demand because it decodes every file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from topnas.errors import ConfigError, TopnasError, check_keys

__all__ = [
    "ADE20K_CLASSES",
    "DATASET_DIRNAME",
    "IGNORE_INDEX",
    "SPLITS",
    "ADE20KDataset",
    "DatasetError",
    "DatasetInfo",
    "Sample",
    "ValidationReport",
    "dataset_dir",
    "list_samples",
    "load_image",
    "load_label",
    "read_dataset_info",
    "reduce_zero_label",
    "resolve_dataset_root",
    "seed_worker",
    "seg_collate",
]

DATASET_DIRNAME = "ADEChallengeData2016"
IGNORE_INDEX = 255
IMG_SUFFIX = ".jpg"
SEG_SUFFIX = ".png"
# accepted split spellings -> folder name
SPLITS: Mapping[str, str] = {
    "training": "training",
    "train": "training",
    "validation": "validation",
    "val": "validation",
}
METADATA_JSON = "dataset.json"
METADATA_TXT = "classes.txt"
_METADATA_KEYS = (
    "num_classes", "classes", "reduce_zero_label",
    # descriptive keys (written by the fixture generator, ignored by the reader)
    "name", "description", "format", "seed", "splits", "image_size", "generator", "colours",
)

# mmseg 0.19 ADE20KDataset.CLASSES, verbatim (including the trailing space in 'bed ').
ADE20K_CLASSES: tuple[str, ...] = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ',
    'windowpane', 'grass', 'cabinet', 'sidewalk', 'person', 'earth',
    'door', 'table', 'mountain', 'plant', 'curtain', 'chair', 'car',
    'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug',
    'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe',
    'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box', 'column',
    'signboard', 'chest of drawers', 'counter', 'sand', 'sink',
    'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path',
    'stairs', 'runway', 'case', 'pool table', 'pillow', 'screen door',
    'stairway', 'river', 'bridge', 'bookcase', 'blind', 'coffee table',
    'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove',
    'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower',
    'chandelier', 'awning', 'streetlight', 'booth', 'television receiver',
    'airplane', 'dirt track', 'apparel', 'pole', 'land', 'bannister',
    'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van',
    'ship', 'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything',
    'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent',
    'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank',
    'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake',
    'dishwasher', 'screen', 'blanket', 'sculpture', 'hood', 'sconce',
    'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen',
    'plate', 'monitor', 'bulletin board', 'shower', 'radiator', 'glass',
    'clock', 'flag')
assert len(ADE20K_CLASSES) == 150


class DatasetError(TopnasError):
    """Files on disk do not match the expected dataset layout/content; the message names the path."""


# --------------------------------------------------------------------------------------------------
# layout + metadata
# --------------------------------------------------------------------------------------------------
def dataset_dir(root: str | os.PathLike[str]) -> Path:
    """Where the ``ADEChallengeData2016`` folder of dataset root ``root`` is (or will be), not checked."""
    path = Path(root).expanduser()
    return path if path.name == DATASET_DIRNAME else path / DATASET_DIRNAME


def resolve_dataset_root(root: str | os.PathLike[str]) -> Path:
    """The ``ADEChallengeData2016`` folder for ``root`` (the folder itself or its parent)."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"dataset root {path}: not a folder; expected a folder containing "
                           f"{DATASET_DIRNAME}/images and {DATASET_DIRNAME}/annotations")
    if (path / "images").is_dir() or path.name == DATASET_DIRNAME:
        return path.resolve()
    nested = path / DATASET_DIRNAME
    if nested.is_dir():
        return nested.resolve()
    raise DatasetError(f"dataset root {path}: no {DATASET_DIRNAME}/ (or images/) folder inside; "
                       f"expected {path}/{DATASET_DIRNAME}/{{images,annotations}}/{{training,validation}}")


@dataclass(frozen=True)
class DatasetInfo:
    """Class list and label convention of one dataset folder."""

    root: Path
    class_names: tuple[str, ...]
    reduce_zero_label: bool = True
    metadata_file: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def read_dataset_info(root: str | os.PathLike[str], num_classes: int | None = None) -> DatasetInfo:
    """Classes from ``dataset.json`` / ``classes.txt`` (dataset folder or its parent), else ADE20K's 150.

    ``num_classes`` (e.g. from a training config) must agree with the metadata when both exist, so a
    150-class config pointed at an 8-class fixture fails here rather than at the first bad label.
    """
    ds_root = resolve_dataset_root(root)
    names: tuple[str, ...] | None = None
    reduce = True
    meta_path: Path | None = None
    for folder in (ds_root, ds_root.parent):
        if (folder / METADATA_JSON).is_file():
            meta_path = folder / METADATA_JSON
            names, reduce = _read_json_metadata(meta_path)
            break
        if (folder / METADATA_TXT).is_file():
            meta_path = folder / METADATA_TXT
            names = _read_txt_metadata(meta_path)
            break
    if names is None:
        if num_classes is None or num_classes == len(ADE20K_CLASSES):
            names = ADE20K_CLASSES
        else:
            if num_classes < 1:
                raise ConfigError("num_classes", num_classes, "a positive integer")
            names = tuple(f"class_{i}" for i in range(num_classes))
    elif num_classes is not None and num_classes != len(names):
        raise ConfigError("num_classes", num_classes, f"{len(names)} (from {meta_path})",
                          hint="the dataset metadata and the config disagree")
    return DatasetInfo(root=ds_root, class_names=names, reduce_zero_label=reduce, metadata_file=meta_path)


def _read_json_metadata(path: Path) -> tuple[tuple[str, ...], bool]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable dataset metadata ({exc}); expected a JSON object "
                           f"with 'num_classes' and 'classes'") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'num_classes' and 'classes'")
    check_keys(str(path), meta.keys(), _METADATA_KEYS)
    classes = meta.get("classes")
    count = meta.get("num_classes", len(classes) if isinstance(classes, list) else None)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 255:
        raise ConfigError(f"{path}:num_classes", count, "an integer in [1, 255]")
    if classes is None:
        classes = [f"class_{i}" for i in range(count)]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"{path}:classes", classes, "a list of class-name strings")
    if len(classes) != count:
        raise ConfigError(f"{path}:classes", f"{len(classes)} names", f"num_classes={count} names")
    reduce = meta.get("reduce_zero_label", True)
    if not isinstance(reduce, bool):
        raise ConfigError(f"{path}:reduce_zero_label", reduce, "true or false")
    return tuple(classes), reduce


def _read_txt_metadata(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable class list ({exc}); expected one class name a line") from exc
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise DatasetError(f"{path}: empty class list; expected one class name a line")
    return names


@dataclass(frozen=True)
class Sample:
    stem: str
    image: Path
    label: Path


def _split_folder(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError("split", split, sorted(SPLITS))
    return SPLITS[split]


def _stems(folder: Path, suffix: str) -> dict[str, Path]:
    with os.scandir(folder) as it:
        return {Path(e.name).stem: Path(e.path) for e in it
                if e.is_file() and e.name.lower().endswith(suffix)}


def list_samples(root: str | os.PathLike[str], split: str) -> list[Sample]:
    """Image/label pairs of ``split`` sorted by stem (mmseg order); every image needs its label."""
    ds_root = resolve_dataset_root(root)
    sub = _split_folder(split)
    img_dir, seg_dir = ds_root / "images" / sub, ds_root / "annotations" / sub
    for folder, what in ((img_dir, f"*{IMG_SUFFIX} images"), (seg_dir, f"*{SEG_SUFFIX} label maps")):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: missing folder; expected {what} for split {sub!r}")
    images, labels = _stems(img_dir, IMG_SUFFIX), _stems(seg_dir, SEG_SUFFIX)
    if not images:
        raise DatasetError(f"{img_dir}: no *{IMG_SUFFIX} images")
    no_label = sorted(set(images) - set(labels))
    no_image = sorted(set(labels) - set(images))
    if no_label or no_image:
        parts = []
        if no_label:
            parts.append(f"{len(no_label)} image(s) without a label in {seg_dir} (e.g. {_few(no_label)})")
        if no_image:
            parts.append(f"{len(no_image)} label(s) without an image in {img_dir} (e.g. {_few(no_image)})")
        raise DatasetError("image/label stems do not match: " + "; ".join(parts)
                           + f"; expected <stem>{IMG_SUFFIX} and <stem>{SEG_SUFFIX} pairs")
    return [Sample(s, images[s], labels[s]) for s in sorted(images)]


def _few(names: Sequence[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")


# --------------------------------------------------------------------------------------------------
# file decoding
# --------------------------------------------------------------------------------------------------
def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """BGR uint8 HxWx3 via mmcv/cv2 (what mmseg's LoadImageFromFile returns)."""
    import mmcv

    try:
        img = mmcv.imread(str(path))  # flag='color', channel_order='bgr', cv2 backend
    except OSError as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from exc
    if img is None:
        raise DatasetError(f"{path}: not a decodable image; expected a JPEG")
    return img


def load_label(path: str | os.PathLike[str]) -> np.ndarray:
    """Raw single-channel uint8 HxW label map via pillow (mmseg's LoadAnnotations backend)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.array(im)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"{path}: not a decodable label map ({exc}); "
                           "expected a single-channel PNG") from exc
    if arr.ndim != 2:
        raise DatasetError(f"{path}: label map has shape {arr.shape}; expected a single-channel "
                           f"(mode L or P) PNG of class indices")
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DatasetError(f"{path}: label values span [{arr.min()}, {arr.max()}]; expected 0..255")
        arr = arr.astype(np.uint8)
    return arr


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmseg's ADE convention: 0 ("other") -> 255 (ignored), k -> k-1, 255 stays 255."""
    out = label.astype(np.uint8, copy=True)
    out[out == 0] = 255
    out = out - 1  # uint8 wraps: 255 -> 254, re-mapped below
    out[out == 254] = 255
    return out


def _out_of_range(label: np.ndarray, num_classes: int) -> np.ndarray:
    return (label >= num_classes) & (label != IGNORE_INDEX)


# --------------------------------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------------------------------
@dataclass
class ValidationReport:
    """What a full scan found: sample count, per-class pixel counts, ignored pixels, sizes."""

    split: str
    num_samples: int
    class_names: tuple[str, ...]
    pixel_counts: np.ndarray  # (num_classes,) after reduce_zero_label
    ignore_pixels: int = 0
    min_hw: tuple[int, int] = (0, 0)
    max_hw: tuple[int, int] = (0, 0)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        total = int(self.pixel_counts.sum()) + self.ignore_pixels
        present = int((self.pixel_counts > 0).sum())
        lines = [
            f"{self.split}: {self.num_samples} image/label pairs, sizes {self.min_hw}..{self.max_hw} (HxW), "
            f"{present}/{len(self.class_names)} classes present, "
            f"ignored pixels {self.ignore_pixels / max(total, 1):.1%}",
        ]
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


Pipeline = Callable[[dict[str, Any]], dict[str, Any]]


class ADE20KDataset(Dataset[dict[str, Any]]):
    """Map-style torch dataset over one split; ``pipeline`` turns a loaded sample into tensors.

    ``load(i)`` returns mmseg's results dict (``img`` BGR uint8, ``gt_semantic_seg`` uint8 after
    ``reduce_zero_label``, ``filename``, ``ori_shape``...); ``dataset[i]`` is ``pipeline(load(i))``.
    Labels are range-checked at every load (one vectorised compare, cheap next to JPEG decoding).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "training",
        pipeline: Pipeline | None = None,
        *,
        num_classes: int | None = None,
        reduce_zero_label: bool | None = None,
    ) -> None:
        self.info = read_dataset_info(root, num_classes)
        if reduce_zero_label is not None and not isinstance(reduce_zero_label, bool):
            raise ConfigError("reduce_zero_label", reduce_zero_label, "true, false or unset")
        if reduce_zero_label is None:
            reduce_zero_label = self.info.reduce_zero_label
        self.reduce_zero_label = reduce_zero_label
        self.split = _split_folder(split)
        self.samples = list_samples(self.info.root, self.split)
        self.pipeline = pipeline

    @property
    def root(self) -> Path:
        return self.info.root

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        results = self.load(index)
        return self.pipeline(results) if self.pipeline is not None else results

    def load_label(self, index: int) -> np.ndarray:
        """The training-convention label map of sample ``index`` (for evaluation at original size)."""
        sample = self.samples[index]
        label = load_label(sample.label)
        if self.reduce_zero_label:
            label = reduce_zero_label(label)
        bad = _out_of_range(label, self.num_classes)
        if bad.any():
            raise DatasetError(self._range_message(sample.label, label[bad]))
        return label

    def load(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        img = load_image(sample.image)
        label = self.load_label(index)
        if img.shape[:2] != label.shape:
            raise DatasetError(f"{sample.label}: label map is {label.shape[0]}x{label.shape[1]} but "
                               f"{sample.image.name} is {img.shape[0]}x{img.shape[1]}; expected equal sizes")
        return {
            "img": img,
            "gt_semantic_seg": label,
            "filename": str(sample.image),
            "ann_filename": str(sample.label),
            "ori_shape": img.shape,
            "img_shape": img.shape,
        }

    def reseed(self, seed: int) -> None:
        """Reseed the pipeline's random generator (per DataLoader worker, see :func:`seed_worker`)."""
        reseed = getattr(self.pipeline, "reseed", None)
        if reseed is not None:
            reseed(seed)

    def validate(
        self,
        max_samples: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        raise_on_error: bool = True,
    ) -> ValidationReport:
        """Decode every (or the first ``max_samples``) pair: decodability, sizes, label range.

        Expensive (decodes all files), so it is never run implicitly. Collects all problems, then
        raises one :class:`DatasetError` listing the first few unless ``raise_on_error`` is False.
        """
        n = len(self) if max_samples is None else min(max_samples, len(self))
        counts = np.zeros(self.num_classes, dtype=np.int64)
        ignored = 0
        min_hw, max_hw = [np.iinfo(np.int64).max] * 2, [0, 0]
        errors: list[str] = []
        for i in range(n):
            sample = self.samples[i]
            try:
                img = load_image(sample.image)
                label = load_label(sample.label)
                if self.reduce_zero_label:
                    label = reduce_zero_label(label)
                if img.shape[:2] != label.shape:
                    raise DatasetError(f"{sample.label}: size {label.shape} != image size {img.shape[:2]}")
                bad = _out_of_range(label, self.num_classes)
                if bad.any():
                    raise DatasetError(self._range_message(sample.label, label[bad]))
            except DatasetError as exc:
                errors.append(str(exc))
            else:
                valid = label[label != IGNORE_INDEX]
                counts += np.bincount(valid.ravel(), minlength=self.num_classes)[: self.num_classes]
                ignored += label.size - valid.size
                h, w = label.shape
                min_hw = [min(min_hw[0], h), min(min_hw[1], w)]
                max_hw = [max(max_hw[0], h), max(max_hw[1], w)]
            if progress is not None:
                progress(i + 1, n)
        report = ValidationReport(
            split=self.split, num_samples=n, class_names=self.class_names, pixel_counts=counts,
            ignore_pixels=ignored, min_hw=(min_hw[0], min_hw[1]) if n > len(errors) else (0, 0),
            max_hw=(max_hw[0], max_hw[1]), errors=errors,
        )
        if errors and raise_on_error:
            raise DatasetError(f"{len(errors)} of {n} samples in {self.root} ({self.split}) are invalid: "
                               + "; ".join(errors[:3]) + (" ..." if len(errors) > 3 else ""))
        return report

    def _range_message(self, path: Path, bad_values: np.ndarray) -> str:
        vals = sorted(int(v) for v in np.unique(bad_values))[:8]
        raw = [v + 1 for v in vals] if self.reduce_zero_label else vals
        allowed = (f"raw values 0..{self.num_classes} or 255 (reduce_zero_label)" if self.reduce_zero_label
                   else f"0..{self.num_classes - 1} or 255")
        return (f"{path}: label values {raw} out of range for {self.num_classes} classes; "
                f"expected {allowed}")


# --------------------------------------------------------------------------------------------------
# DataLoader helpers
# --------------------------------------------------------------------------------------------------
def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: give each DataLoader worker its own augmentation stream.

    Forked workers otherwise inherit identical numpy generators and draw identical crops/flips.
    torch's per-worker seed (base seed from the loader's generator + worker id) keeps it reproducible.
    """
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    ds: Any = info.dataset
    while not hasattr(ds, "reseed") and hasattr(ds, "dataset"):  # Subset and friends
        ds = ds.dataset
    if hasattr(ds, "reseed"):
        ds.reseed(info.seed)


def seg_collate(batch: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``img``/``gt_semantic_seg`` tensors; every other key becomes a list (one entry per sample).

    Labels are stacked only when all have the same size (training crops; eval keeps original sizes).
    """
    items = list(batch)
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if key in ("img", "gt_semantic_seg") and all(isinstance(v, torch.Tensor) for v in values) \
                and len({tuple(v.shape) for v in values}) == 1:
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out
