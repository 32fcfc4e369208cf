"""Synthetic, learnable segmentation dataset in the exact ADE20K layout (CPU tests and demos).

Each object class has its own shape (rectangle / ellipse / triangle), colour and texture (stripes,
checker, dots, noise at a class-specific period), drawn at random size and place over a textured
background class; some images also hold an "other" patch labelled 0 (ignored after
``reduce_zero_label``), exactly as in ADE20K. Colour + texture make classes separable by a small
CNN in a few hundred CPU iterations; shape gives the context a segmentation head can use.
``colours=k`` makes the task harder: every object takes one of ``k`` hues at random, so colour says
nothing about the class and a network must tell classes apart by texture, period and shape (two
classes share the noise texture and differ only in shape).

Every image comes from its own generator seeded by (seed, split, index): output is byte-identical
for a seed and the first N images do not depend on how many are generated.
"""
from __future__ import annotations

import colorsys
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from topnas.errors import ConfigError

from .ade20k import DATASET_DIRNAME, METADATA_JSON

__all__ = ["FIXTURE_GENERATOR", "fixture_class_names", "render_sample", "write_fixture"]

log = logging.getLogger(__name__)

FIXTURE_GENERATOR = "topnas.platform.data.fixture"
SHAPES = ("rectangle", "ellipse", "triangle")
TEXTURES = ("hstripes", "checker", "vstripes", "dots", "noise")
_SPLITS = (("training", "ADE_train", 0), ("validation", "ADE_val", 1))
MAX_CLASSES = 254  # raw labels 1..K must stay below 255 (ignore)


def _object_style(raw: int) -> tuple[str, str, tuple[float, float, float], int]:
    """(shape, texture, RGB colour in [0,1], period px) of raw label ``raw`` >= 2."""
    j = raw - 2
    shape = SHAPES[j % len(SHAPES)]
    texture = TEXTURES[(j // len(SHAPES) + j) % len(TEXTURES)]
    hue = (j * 0.618033988749895) % 1.0  # golden-ratio hues: neighbours far apart on the wheel
    sat = 0.9 if (j // 7) % 2 == 0 else 0.55
    val = 0.95 if (j // 14) % 2 == 0 else 0.7
    period = 4 + (j * 3) % 7
    return shape, texture, colorsys.hsv_to_rgb(hue, sat, val), period


def fixture_class_names(num_classes: int) -> list[str]:
    """Names of the training classes 0..K-1 (raw labels 1..K): background, then style descriptions."""
    names = ["background"]
    for raw in range(2, num_classes + 1):
        shape, texture, _, _ = _object_style(raw)
        names.append(f"c{raw - 1:03d}_{shape}_{texture}")
    return names


def _texture(kind: str, period: int, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A [0, 1] pattern in image coordinates (so it is continuous across an object's pixels)."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "hstripes":
        return ((yy // period) % 2).astype(np.float32)
    if kind == "vstripes":
        return ((xx // period) % 2).astype(np.float32)
    if kind == "checker":
        return (((yy // period) + (xx // period)) % 2).astype(np.float32)
    if kind == "dots":
        cy, cx = (yy % (2 * period)) - period, (xx % (2 * period)) - period
        return (cy * cy + cx * cx <= (period * 0.6) ** 2).astype(np.float32)
    return rng.random((h, w), dtype=np.float32)  # noise


def _shape_mask(shape: str, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = hw
    size = rng.uniform(0.2, 0.55) * min(h, w)
    aspect = rng.uniform(0.65, 1.55)
    cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    if shape == "rectangle":
        hh, hw_ = size * aspect / 2, size / aspect / 2
        return (np.abs(yy - cy) <= hh) & (np.abs(xx - cx) <= hw_)
    if shape == "ellipse":
        a, b = size * aspect / 2, size / aspect / 2
        return ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1.0
    # triangle: three vertices around the centre, random rotation; inside = same side of all edges
    rot = rng.uniform(0, 2 * np.pi)
    radius = size * 0.6
    angles = rot + np.array([0.0, 2.0944, 4.1888]) + rng.uniform(-0.3, 0.3, 3)
    vy, vx = cy + radius * np.sin(angles), cx + radius * np.cos(angles)
    signs = []
    for i in range(3):
        j = (i + 1) % 3
        signs.append((vx[j] - vx[i]) * (yy - vy[i]) - (vy[j] - vy[i]) * (xx - vx[i]))
    s = np.stack(signs)
    return np.all(s >= 0, axis=0) | np.all(s <= 0, axis=0)


def _palette_colour(k: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """One of ``k`` evenly spaced hues, drawn at random (``colours=k``: colour carries no class)."""
    hue = int(rng.integers(0, k)) / k
    return colorsys.hsv_to_rgb(hue, 0.75, 0.85)


def render_sample(
    num_classes: int, hw: tuple[int, int], rng: np.random.Generator, colours: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 HxWx3, raw label uint8 HxW) pair: labels 0 (other), 1 (background), 2..K objects.

    ``colours``: None, each class has its own colour; ``k``, each object one of ``k`` hues at random.
    """
    h, w = hw
    # background (raw 1): muted olive with fine noise and a gentle gradient
    grad = np.linspace(0.9, 1.1, w, dtype=np.float32)[None, :, None]
    img = np.array([0.42, 0.45, 0.38], np.float32) * grad * (0.85 + 0.15 * rng.random((h, w, 1), np.float32))
    label = np.ones((h, w), np.uint8)
    if rng.random() < 0.35:  # an "other" patch: ADE's unlabelled pixels (raw 0)
        ph, pw = int(rng.uniform(0.1, 0.3) * h), int(rng.uniform(0.1, 0.3) * w)
        y0, x0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        img[y0:y0 + ph, x0:x0 + pw] = 0.5 + 0.25 * rng.standard_normal((ph, pw, 1), np.float32)
        label[y0:y0 + ph, x0:x0 + pw] = 0
    if num_classes >= 2:
        for _ in range(int(rng.integers(1, 5))):
            raw = int(rng.integers(2, num_classes + 1))
            shape, texture, colour, period = _object_style(raw)
            if colours is not None:
                colour = _palette_colour(colours, rng)
            mask = _shape_mask(shape, hw, rng)
            pattern = _texture(texture, period, hw, rng)
            look = np.asarray(colour, np.float32) * (0.45 + 0.55 * pattern[..., None])
            img[mask] = look[mask]
            label[mask] = raw
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0.0, 0.012, (h, w, 3)).astype(np.float32)
    rgb = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return rgb, label


def _check_args(num_classes: int, train: int, val: int, size: Sequence[int], colours: int | None = None
                ) -> tuple[int, int]:
    checks = [("classes", num_classes, 2), ("train", train, 1), ("val", val, 1)]
    if colours is not None:
        checks.append(("colours", colours, 1))
    for name, value, lo in checks:
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise ConfigError(name, value, f"an integer >= {lo}")
    if num_classes > MAX_CLASSES:
        raise ConfigError("classes", num_classes, f"2..{MAX_CLASSES} (raw labels 1..K, 255 = ignore)")
    if len(size) != 2 or not all(isinstance(v, int) and v >= 16 for v in size):
        raise ConfigError("size", size, "two integers H W, each >= 16")
    return int(size[0]), int(size[1])


_STAGE_PREFIX = f".{DATASET_DIRNAME}.partial-"  # + the writer's pid


def _remove_stale_stages(out: Path) -> None:
    """Remove staging folders of writers that are gone (killed halfway through a fixture)."""
    for stage in out.glob(f"{_STAGE_PREFIX}*"):
        pid = stage.name[len(_STAGE_PREFIX):]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare_root(out: Path, overwrite: bool) -> Path:
    root = out / DATASET_DIRNAME
    if root.exists() and any(root.iterdir()):
        meta = root / METADATA_JSON
        ours = False
        if meta.is_file():
            try:
                ours = json.loads(meta.read_text()).get("generator") == FIXTURE_GENERATOR
            except (OSError, ValueError, AttributeError):
                ours = False
        if not overwrite:
            raise ConfigError("out", str(out), "a folder without a non-empty " + DATASET_DIRNAME,
                              hint="pass --force to replace a fixture written before")
        if not ours:
            raise ConfigError("out", str(out), "a folder whose " + DATASET_DIRNAME + " is a topnas fixture",
                              hint="refusing to delete a dataset this tool did not write")
        shutil.rmtree(root)
    return root


def write_fixture(
    out: str | Path,
    num_classes: int = 8,
    train: int = 32,
    val: int = 8,
    size: Sequence[int] = (128, 160),
    seed: int = 0,
    overwrite: bool = False,
    colours: int | None = None,
) -> Path:
    """Write ``out/ADEChallengeData2016/{images,annotations}/{training,validation}`` + ``dataset.json``.

    ``num_classes`` counts training classes (background included), i.e. raw labels 1..K. Returns the
    ``ADEChallengeData2016`` folder. ``overwrite`` replaces an earlier fixture (never other data).
    ``colours``: None, every class its own colour; ``k``, objects coloured from ``k`` hues at random.
    The images are written to a staging folder beside it that is renamed into place at the end, so a
    writer killed halfway never leaves a partial fixture that a later run would take as complete.
    """
    from PIL import Image

    hw = _check_args(num_classes, train, val, size, colours)
    out = Path(out).expanduser()
    final = _prepare_root(out, overwrite)
    _remove_stale_stages(out)
    root = out / f"{_STAGE_PREFIX}{os.getpid()}"
    if root.exists():
        shutil.rmtree(root)
    counts = {"training": train, "validation": val}
    total, done = train + val, 0
    log_every = max(1, total // 10) if total >= 200 else 0
    log.info("writing %d train + %d val fixture images (%d classes, %dx%d) to %s",
             train, val, num_classes, hw[0], hw[1], root)
    for split, prefix, code in _SPLITS:
        img_dir, seg_dir = root / "images" / split, root / "annotations" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        seg_dir.mkdir(parents=True, exist_ok=True)
        for i in range(1, counts[split] + 1):
            rng = np.random.default_rng([seed, code, i])
            rgb, label = render_sample(num_classes, hw, rng, colours)
            stem = f"{prefix}_{i:08d}"
            Image.fromarray(rgb).save(img_dir / f"{stem}.jpg", format="JPEG", quality=95)
            Image.fromarray(label).save(seg_dir / f"{stem}.png", format="PNG")
            done += 1
            if log_every and done % log_every == 0:
                log.info("fixture: %d/%d images written", done, total)
    meta = {
        "name": "topnas-fixture",
        "format": "ADE20K",
        "generator": FIXTURE_GENERATOR,
        "num_classes": num_classes,
        "classes": fixture_class_names(num_classes),
        "reduce_zero_label": True,
        "seed": seed,
        "colours": colours,
        "splits": counts,
        "image_size": list(hw),
    }
    (root / METADATA_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    if final.exists():
        final.rmdir()  # left empty by _prepare_root; a non-empty one was refused or removed there
    os.replace(root, final)
    log.info("fixture written: %s", final)
    return final
