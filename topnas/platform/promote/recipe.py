"""The 160k training config of a promoted variant: its size class and the official recipe of that size.

The official recipes (``topformer_<size>_512x512_160k_ade20k.yaml`` with their ``_base_`` files,
the hustvl/TopFormer configs field for field) ship with the package under ``recipes/``, so a
promotion works from an installed package too; ``experiments/`` holds identical copies for users to
copy and edit.
"""
from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from topnas.errors import ConfigError
from topnas.fileio import atomic_path

if TYPE_CHECKING:
    from topnas.platform.promote.selection import Selection
    from topnas.platform.sweep.reader import SweepRecord
    from topnas.search_spaces import Variant

__all__ = [
    "FULL_EXPERIMENT",
    "LR_BY_SIZE",
    "PRESET_COMPLEXITY",
    "RECIPES",
    "SizeClass",
    "build_experiment",
    "experiment_stem",
    "experiments_dir",
    "promotion_header",
    "recipe_path",
    "scale_down_experiment",
    "size_class",
    "write_experiment",
]

RECIPES = Path(__file__).with_name("recipes")   # the official 160k recipes (package data)
FULL_EXPERIMENT = "topnas-promoted"             # the MLflow experiment of promoted full runs
OFFICIAL_ITERS = 160_000
OFFICIAL_WARMUP = 1500

# Params and fvcore MACs of the official presets at 512x512 with 150 classes (`topnas model summary
# --preset NAME` prints them).
PRESET_COMPLEXITY: dict[str, tuple[int, float]] = {
    "tiny": (1_389_654, 0.5761e9),
    "small": (3_034_662, 1.1676e9),
    "base": (5_062_646, 1.8202e9),
}
# The lr rule of the official configs (hustvl/TopFormer local_configs): TopFormer-T 3e-4, S and B 1.2e-4.
LR_BY_SIZE = {"tiny": 3e-4, "small": 1.2e-4, "base": 1.2e-4}


@dataclass(frozen=True)
class SizeClass:
    """Which official recipe a variant gets: the preset nearest in (log params, log MACs)."""

    name: str                 # tiny | small | base
    params: int               # at 150 classes
    macs: int                 # at 512x512, 150 classes
    distances: dict[str, float]
    exact_preset: bool = False


def size_class(variant: Variant) -> SizeClass:
    """The nearest preset by params and MACs, both counted at 150 classes and 512x512 (log distance).

    A variant equal to a preset's architecture gets that preset. Counting uses
    :func:`topnas.topformer.complexity.count_complexity` (one model build, ~1 s).
    """
    params, macs = _complexity_150_512(variant.model.replace(num_classes=150, norm="BN"))
    dist = {name: math.hypot(math.log(params / p), math.log(macs / m))
            for name, (p, m) in PRESET_COMPLEXITY.items()}
    preset = variant.preset
    name = preset if preset in PRESET_COMPLEXITY else min(dist, key=dist.get)
    return SizeClass(name, params, macs, dist, exact_preset=preset is not None)


@functools.lru_cache(maxsize=64)
def _complexity_150_512(cfg: Any) -> tuple[int, int]:
    from topnas.topformer.complexity import count_complexity

    cx = count_complexity(cfg, (512, 512))
    return cx.params, cx.macs


def experiments_dir() -> Path:
    """``experiments/`` of this checkout (beside the package), else of the working directory.

    Where users keep their YAML files: promoted configs go to its ``promoted/`` folder, the demo
    reads its sweep and fixture files there. The official recipes themselves come from
    :data:`RECIPES`.
    """
    beside = Path(__file__).resolve().parents[3] / "experiments"
    if beside.is_dir():
        return beside
    here = Path.cwd() / "experiments"
    if here.is_dir():
        return here
    raise ConfigError("experiments", str(beside), "a checkout with an experiments/ folder")


def recipe_path(size: str) -> Path:
    """The official 160k recipe of size class ``size`` (tiny, small, base), shipped with the package."""
    path = RECIPES / f"topformer_{size}_512x512_160k_ade20k.yaml"
    if not path.is_file():
        raise ConfigError("size class", size, sorted(PRESET_COMPLEXITY), hint=f"{path} is missing")
    return path


def experiment_stem(variant: Variant) -> str:
    h, w = variant.input_size
    return f"{variant.id}_{h}x{w}_160k_ade20k"


def build_experiment(
    selection: Selection,
    size: SizeClass,
    *,
    num_classes: int = 150,
    experiment: str = FULL_EXPERIMENT,
) -> dict[str, Any]:
    """The promoted training config (raw mapping): the variant plus the size class's 160k recipe.

    Every section except ``model``, ``name`` and ``tracking.experiment`` is the composed official
    file (``recipes/topformer_<size>_512x512_160k_ade20k.yaml`` with its ``_base_`` files), so
    the lr rule comes with it (tiny 3e-4, small/base 1.2e-4). A variant at another input size gets
    the crop and scales of that size (as the official 448x448 config). The backbone starts from the
    size class's official ImageNet checkpoint (``model.pretrained`` of the recipe) with
    ``model.init: imagenet_nearest``: a searched variant inherits sliced weights from it (leading
    channels, first blocks of a stage, leading heads), a preset loads it whole, so the 160k result
    compares with the official TopFormer-T/S/B.
    """
    from topnas.platform.train.train_config import compose_yaml

    raw = compose_yaml(recipe_path(size.name))
    raw.pop("name", None)
    variant = selection.variant
    model = dict(raw.get("model") or {})
    inline = variant.to_dict()
    inline.pop("id", None)
    inline.pop("name", None)
    # model.num_classes / model.norm of the training config govern; the inline copy agrees with them
    inline["model"] = {k: v for k, v in inline["model"].items() if k != "norm"}
    inline["model"]["num_classes"] = num_classes
    model.update({"preset": None, "variant": inline, "num_classes": num_classes, "init": "imagenet_nearest"})
    if not model.get("pretrained"):
        raise ConfigError(f"{recipe_path(size.name).name}:model.pretrained", None,
                          "the official ImageNet checkpoint of the recipe")
    data = dict(raw.get("data") or {})
    h, w = variant.input_size
    if (h, w) != tuple(data.get("crop_size", (512, 512))):
        data["crop_size"] = [h, w]
        data["img_scale"] = [2048, min(h, w)]
        data["test_img_scale"] = [2048, min(h, w)]
    lr = LR_BY_SIZE[size.name]
    optimizer = dict(raw.get("optimizer") or {})
    if not math.isclose(float(optimizer.get("lr", lr)), lr, rel_tol=1e-9):
        raise ConfigError(f"{recipe_path(size.name).name}:optimizer.lr", optimizer.get("lr"), [lr],
                          hint="the official lr rule: tiny 3e-4, small/base 1.2e-4")
    optimizer["lr"] = lr
    out: dict[str, Any] = {"name": experiment_stem(variant), "model": model, "data": data,
                           "optimizer": optimizer}
    for section in ("schedule", "runtime", "scaling"):
        if section in raw:
            out[section] = raw[section]
    tracking_section = dict(raw.get("tracking") or {})
    tracking_section["experiment"] = experiment
    out["tracking"] = tracking_section
    return out


def promotion_header(selection: Selection, record: SweepRecord, size: SizeClass, recipe: Path, path: Path) -> str:
    """The comment block atop a promoted YAML: where the variant comes from and how to train it."""
    lat = (selection.value("latency_ms"), selection.value("latency_lo"), selection.value("latency_hi"))
    lines = [
        f"Promoted from sweep {record.name}: trial {selection.trial_id}, rule {selection.rule}"
        + (" (FORCED: off the Pareto front)" if selection.forced else "") + f", {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Variant {selection.variant_id} at {selection.variant.input_size[0]}x{selection.variant.input_size[1]}: "
        f"proxy mIoU {selection.value('val_mIoU'):.4f}, predicted latency {lat[0]:.2f} ms "
        f"[{lat[1]:.2f}, {lat[2]:.2f}].",
        f"Size class {size.name}: {size.params / 1e6:.2f} M params, {size.macs / 1e9:.3f} GMACs at 512x512 "
        f"(150 classes); recipe {recipe.name} (lr {LR_BY_SIZE[size.name]:g}).",
        f"Train it: topnas train {_display_path(path)}   (registry + finalize: `topnas promote --run-full`)",
    ]
    return "".join(f"# {line}\n" for line in lines)


def _display_path(path: Path) -> str:
    try:
        return str(Path(path).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Dumper(yaml.SafeDumper):
    pass


def _flow_lists(dumper: yaml.SafeDumper, data: list) -> Any:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_Dumper.add_representer(list, _flow_lists)
_Dumper.add_representer(tuple, _flow_lists)


def write_experiment(config: Mapping[str, Any], path: str | os.PathLike[str], header: str = "") -> Path:
    """Write a training YAML and check it loads as a :class:`TrainConfig` (raises ConfigError if not)."""
    from topnas.platform.train.train_config import load_config

    path = Path(path)
    text = header + yaml.dump(dict(config), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110)
    with atomic_path(path) as tmp:  # a file that does not load is never left behind
        tmp.write_text(text)
        load_config(tmp)
    return path


def scale_down_experiment(
    promoted_yaml: str | os.PathLike[str],
    fixture_yaml: str | os.PathLike[str] | None = None,
    *,
    max_iters: int | None = None,
) -> dict[str, Any]:
    """A scaled-down copy of a promoted config: same variant, optimizer and schedule shape, on the fixture.

    From ``fixture_yaml`` (default ``experiments/demo_tiny_fixture.yaml``) it takes the dataset
    (``data``: root, fixture, crop and scales, batch), ``model.num_classes`` / ``norm``, the workers
    (``scaling``), the intervals (``runtime``) and ``schedule.max_iters`` (or ``max_iters``); the
    warm-up keeps its share of the run (1500 of 160k). lr, betas, weight decay, head lr x10 and the
    poly decay stay the official ones. ``model.pretrained`` / ``model.init`` come from the fixture
    file (no checkpoint there: ``init: scratch``). The result ``_base_``-s the promoted file.
    """
    from topnas.platform.train.train_config import compose_yaml

    promoted_yaml = Path(promoted_yaml)
    fixture_yaml = Path(fixture_yaml) if fixture_yaml else experiments_dir() / "demo_tiny_fixture.yaml"
    small = compose_yaml(fixture_yaml)
    base = compose_yaml(promoted_yaml)
    iters = int(max_iters or (small.get("schedule") or {}).get("max_iters") or 300)
    if iters <= 0:
        raise ConfigError("--max-iters", max_iters, "a positive number of iterations")
    full_iters = int((base.get("schedule") or {}).get("max_iters", OFFICIAL_ITERS))
    full_warmup = int((base.get("schedule") or {}).get("warmup_iters", OFFICIAL_WARMUP))
    warmup = max(1, round(full_warmup * iters / full_iters))
    small_model = small.get("model") or {}
    runtime = dict(small.get("runtime") or {})
    interval = min(int(runtime.get("eval_interval", iters)), iters)
    out: dict[str, Any] = {
        "_base_": [promoted_yaml.name],
        "name": promoted_yaml.stem.replace("_160k_ade20k", "") + f"_{iters}it_fixture",
        "model": {"num_classes": int(small_model.get("num_classes", 5)),
                  "norm": small_model.get("norm", "BN"), "pretrained": small_model.get("pretrained"),
                  # the fixture's own choice; without a checkpoint it trains from scratch, and says so
                  "init": small_model.get("init") or ("imagenet_nearest" if small_model.get("pretrained")
                                                      else "scratch")},
        "data": small.get("data") or {},
        "schedule": {"max_iters": iters, "warmup_iters": min(warmup, iters)},
        "runtime": {"log_interval": min(int(runtime.get("log_interval", 20)), iters),
                    "eval_interval": interval, "checkpoint_interval": interval},
        "scaling": small.get("scaling") or {},
    }
    return out
