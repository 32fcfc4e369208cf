"""Typed training configuration: YAML files composed mmseg-style, validated into one dataclass.

A training YAML has these sections (every key optional except ``data.root``; defaults are the
official TopFormer-T ADE20K 512x512 160k recipe, hustvl/TopFormer
``local_configs/topformer/topformer_tiny_512x512_160k_2x8_ade20k.py``)::

    _base_: [_base_/ade20k_160k.yaml]   # files merged first (paths relative to this file)
    name: topformer_tiny_512x512_160k_ade20k
    model:     {preset, variant, num_classes, norm, input_size, pretrained, init, class_weight}
    data:      {root, train_split, val_split, reduce_zero_label, crop_size, img_scale, ratio_range,
                cat_max_ratio, flip_prob, photometric, test_img_scale, size_divisor,
                samples_per_gpu, workers_per_gpu, val_max_samples, fixture}
    optimizer: {type, lr, betas, eps, weight_decay, custom_keys}        # mmcv paramwise custom_keys
    schedule:  {policy, power, min_lr, warmup, warmup_iters, warmup_ratio, max_iters}
    runtime:   {log_interval, eval_interval, checkpoint_interval, keep_checkpoints, seed, amp,
                channels_last, cudnn_benchmark, find_unused_parameters, deterministic}
    scaling:   {num_workers, use_gpu, cpus_per_worker, resources_per_worker, max_failures,
                storage_path, report_poll_s, ray_address}
    tracking:  {enabled, uri, experiment, log_checkpoint, export_onnx}
    fault_injection: null   # test-only: {rank, at_iter, marker}

Composition, overrides, type checks and paths follow :mod:`topnas.configkit`: ``_base_`` files are
deep-merged in order, then the file itself, then ``--set a.b=c`` overrides (values parsed as YAML).
Unknown keys, wrong types and out-of-range values raise :class:`~topnas.errors.ConfigError` naming
the dotted field. Path fields accept ``~``, ``$VARS`` and a leading ``{runs}`` (the project's run
folder) and are made absolute against the working directory at load time (workers run elsewhere).

Example::

    cfg = load_config("experiments/demo_tiny_fixture.yaml", ["runtime.seed=1"])
    print(cfg.to_yaml())
    cfg.variant.id, cfg.total_batch_size
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from topnas.configkit import (BASE_KEY, Overrides, Section, apply_overrides, compose_yaml, load_yaml,
                              parse_override, plain, require_positive, resolve_path)
from topnas.errors import ConfigError, check_keys

__all__ = [
    "BASE_KEY",
    "DataConfig",
    "FaultInjection",
    "FixtureSpec",
    "ModelConfig",
    "OptimizerConfig",
    "RuntimeConfig",
    "ScalingSpec",
    "ScheduleConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "compose_yaml",
    "load_config",
    "parse_override",
]

MAX_CLASSES = 255  # labels are uint8 and 255 is the ignore index


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class ModelConfig(Section):
    """Which network: an official preset or a search-space variant, and how it is initialised.

    ``variant`` is a Variant mapping (``topnas model sample`` output) or a path to its YAML/JSON file;
    a path is read at load time and inlined, so the resolved config is self-contained.
    ``num_classes`` overrides the variant's. ``norm: auto`` = SyncBN on GPU workers, BN on CPU.
    ``input_size`` is the deployment size (ONNX export, variant id); default: the variant's own, for
    presets the training crop size. ``pretrained``: ImageNet checkpoint for the backbone
    (``topformer-{T,S,B}-224-*.pth``).
    ``init`` says how it is used: ``auto`` loads it key by key (the official recipe: tensors whose
    name and shape match), ``imagenet_nearest`` slices it into a searched variant (leading channels,
    first blocks of a stage, leading heads; :mod:`topnas.topformer.inherit`; ``pretrained`` may then
    be a folder holding the three official files, and the one of the nearest preset is used),
    ``scratch`` ignores it.
    ``class_weight``: one positive weight per class for the decode-head cross-entropy, as mmseg's
    ``loss_decode.class_weight`` (each pixel's loss times its class's weight, then the mean over all
    pixels); ``null``: every class weighs 1, the official recipe.
    """

    preset: str | None = "tiny"
    variant: dict[str, Any] | str | None = None
    num_classes: int = 150
    norm: Literal["auto", "BN", "SyncBN"] = "auto"
    input_size: tuple[int, int] | None = None
    pretrained: str | None = None
    init: Literal["auto", "imagenet_nearest", "scratch"] = "auto"
    class_weight: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        from topnas.search_spaces import Variant
        from topnas.topformer import PRESETS

        if self.preset is not None and self.variant is not None:
            raise ConfigError("variant", "<set together with preset>", "either model.preset or model.variant",
                              hint="set `preset: null` when giving a variant")
        if self.preset is None and self.variant is None:
            raise ConfigError("preset", None, sorted(PRESETS), hint="or give model.variant")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError("preset", self.preset, sorted(PRESETS))
        if not 1 <= self.num_classes <= MAX_CLASSES:
            raise ConfigError("num_classes", self.num_classes, f"an integer in [1, {MAX_CLASSES}]")
        if self.class_weight is not None and (len(self.class_weight) != self.num_classes
                                              or not all(w > 0 for w in self.class_weight)):
            raise ConfigError("class_weight", list(self.class_weight),
                              f"null or {self.num_classes} positive numbers (one per class, model.num_classes)")
        if isinstance(self.variant, str):
            loaded = Variant.load(resolve_path(self.variant)).to_dict()
            object.__setattr__(self, "variant", loaded)
        if isinstance(self.variant, Mapping):
            inline = {k: v for k, v in self.variant.items() if k != "id"}  # id changes with num_classes
            object.__setattr__(self, "variant", plain(inline))
        object.__setattr__(self, "pretrained", resolve_path(self.pretrained))
        if self.init == "imagenet_nearest" and self.pretrained is None:
            from topnas.topformer.inherit import OBTAIN_HINT

            raise ConfigError("pretrained", None, "an official ImageNet checkpoint file, or a folder holding them",
                              hint=f"model.init is imagenet_nearest; {OBTAIN_HINT}")

    def init_source(self) -> str | None:
        """The checkpoint training starts from (None: from scratch)."""
        return None if self.init == "scratch" else self.pretrained

    def build_variant(self, crop_size: tuple[int, int]):
        from topnas.search_spaces import Variant

        if self.preset is not None:
            spec: dict[str, Any] = {"preset": self.preset, "model": {"num_classes": self.num_classes},
                                    "input_size": list(self.input_size or crop_size)}
        else:
            spec = copy.deepcopy(dict(self.variant or {}))
            spec["model"] = {**dict(spec.get("model") or {}), "num_classes": self.num_classes}
            if self.input_size is not None:
                spec["input_size"] = list(self.input_size)
        return Variant.from_dict(spec, field="model.variant" if self.preset is None else "model")


@dataclass(frozen=True)
class FixtureSpec(Section):
    """Generate the synthetic fixture at ``data.root`` before training if it is not there yet."""

    classes: int = 5
    train: int = 32
    val: int = 8
    size: tuple[int, int] = (128, 160)
    seed: int = 0
    colours: int | None = None  # None: every class its own colour; k: objects drawn from k hues (harder)

    def __post_init__(self) -> None:
        if self.colours is not None and self.colours < 1:
            raise ConfigError("colours", self.colours, "null (each class its own colour) or an integer >= 1")

    def write(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write this fixture under ``out`` (see :func:`topnas.platform.data.write_fixture`)."""
        from topnas.platform.data import write_fixture

        return write_fixture(out, num_classes=self.classes, train=self.train, val=self.val, size=tuple(self.size),
                             seed=self.seed, overwrite=overwrite, colours=self.colours)

    def ensure(self, root: str | Path) -> tuple[Path, bool]:
        """``(ADEChallengeData2016 folder, written now)``: the fixture at dataset root ``root`` (the folder
        holding ``ADEChallengeData2016``, or that folder), written unless present. Processes that share
        one root (a sweep's trials) take a lock file beside it, so exactly one writes; the writer renames
        a finished fixture into place, so one that is present is complete."""
        import fcntl

        from topnas.platform.data import dataset_dir

        root = Path(root)
        target = dataset_dir(root)
        root.mkdir(parents=True, exist_ok=True)
        with open(root.parent / f".{root.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (target / "images").is_dir():
                return target, False
            self.write(target.parent)
            return target, True


@dataclass(frozen=True)
class DataConfig(Section):
    """Dataset folder and the official pipelines' parameters (mmseg ``data`` + pipelines).

    ``test_mode``: ``whole`` (the official ADE20K test: the whole image at ``test_img_scale``) or
    ``slide`` (mmseg's sliding window: windows of ``test_crop_size``, default ``crop_size``, every
    ``test_stride``, default half the window; for training crops much smaller than the test images).
    """

    root: str = ""
    train_split: str = "training"
    val_split: str = "validation"
    reduce_zero_label: bool | None = None  # None: from dataset.json, else True (ADE20K)
    crop_size: tuple[int, int] = (512, 512)
    img_scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] | None = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    test_img_scale: tuple[int, int] = (2048, 512)
    size_divisor: int | None = 32
    samples_per_gpu: int = 2
    workers_per_gpu: int = 4
    val_max_samples: int | None = None
    fixture: FixtureSpec | None = None
    test_mode: Literal["whole", "slide"] = "whole"
    test_crop_size: tuple[int, int] | None = None
    test_stride: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not self.root:
            raise ConfigError("root", self.root, "a dataset folder (containing ADEChallengeData2016)")
        object.__setattr__(self, "root", resolve_path(self.root))
        for name in ("crop_size", "img_scale", "test_img_scale"):
            for i, v in enumerate(getattr(self, name)):
                require_positive(f"{name}[{i}]", v)
        if self.ratio_range is not None and not 0 < self.ratio_range[0] <= self.ratio_range[1]:
            raise ConfigError("ratio_range", list(self.ratio_range), "[lo, hi] with 0 < lo <= hi, or null")
        if not 0 < self.cat_max_ratio <= 1:
            raise ConfigError("cat_max_ratio", self.cat_max_ratio, "a number in (0, 1]")
        if not 0 <= self.flip_prob <= 1:
            raise ConfigError("flip_prob", self.flip_prob, "a number in [0, 1]")
        require_positive("size_divisor", self.size_divisor)
        require_positive("samples_per_gpu", self.samples_per_gpu)
        require_positive("workers_per_gpu", self.workers_per_gpu, allow_zero=True)
        require_positive("val_max_samples", self.val_max_samples)
        if self.train_split == self.val_split:
            raise ConfigError("val_split", self.val_split, f"a split other than train_split={self.train_split!r}")
        for name in ("test_crop_size", "test_stride"):
            value = getattr(self, name)
            if value is not None and self.test_mode != "slide":
                raise ConfigError(name, list(value), "null unless test_mode is slide")
            for i, v in enumerate(value or ()):
                require_positive(f"{name}[{i}]", v)
        if self.test_mode == "slide":
            crop, stride = self.slide_window()
            if any(s > c for s, c in zip(stride, crop)):
                raise ConfigError("test_stride", list(stride), f"at most the window test_crop_size={list(crop)} "
                                  "on each axis (a larger step leaves pixels unpredicted)")

    def slide_window(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """``(window, stride)`` of sliding-window testing, None for whole-image testing."""
        if self.test_mode != "slide":
            return None
        crop = tuple(self.test_crop_size or self.crop_size)
        stride = tuple(self.test_stride or (max(1, crop[0] // 2), max(1, crop[1] // 2)))
        return (int(crop[0]), int(crop[1])), (int(stride[0]), int(stride[1]))


@dataclass(frozen=True)
class OptimizerConfig(Section):
    """AdamW with mmcv ``paramwise_cfg.custom_keys``: ``{substring: {lr_mult, decay_mult}}``.

    Keys match by substring of the full parameter name, longest key first (mmcv 1.3.14). In the
    official configs only ``head`` matches anything (decode-head lr x10); ``norm`` and
    ``absolute_pos_embed`` match no TopFormer parameter, so BN weights ARE decayed (its norms are
    named ``bn``).
    """

    type: Literal["AdamW"] = "AdamW"
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    custom_keys: dict[str, dict[str, float]] = field(default_factory=lambda: {
        "absolute_pos_embed": {"decay_mult": 0.0},
        "head": {"lr_mult": 10.0},
        "norm": {"decay_mult": 0.0},
    })

    def __post_init__(self) -> None:
        require_positive("lr", self.lr)
        require_positive("eps", self.eps)
        require_positive("weight_decay", self.weight_decay, allow_zero=True)
        for i, b in enumerate(self.betas):
            if not 0 <= b < 1:
                raise ConfigError(f"betas[{i}]", b, "a number in [0, 1)")
        for key, mults in self.custom_keys.items():
            check_keys(f"custom_keys.{key}", mults.keys(), ("lr_mult", "decay_mult"))
            for m, v in mults.items():
                require_positive(f"custom_keys.{key}.{m}", v, allow_zero=True)


@dataclass(frozen=True)
class ScheduleConfig(Section):
    """mmcv ``lr_config`` (poly by iteration, linear warm-up) and the runner's ``max_iters``."""

    policy: Literal["poly"] = "poly"
    power: float = 1.0
    min_lr: float = 0.0
    warmup: Literal["linear"] | None = "linear"
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    max_iters: int = 160_000

    def __post_init__(self) -> None:
        require_positive("power", self.power)
        require_positive("min_lr", self.min_lr, allow_zero=True)
        require_positive("max_iters", self.max_iters)
        require_positive("warmup_iters", self.warmup_iters, allow_zero=self.warmup is None)
        if not 0 < self.warmup_ratio <= 1:
            raise ConfigError("warmup_ratio", self.warmup_ratio, "a number in (0, 1]")


@dataclass(frozen=True)
class RuntimeConfig(Section):
    """Hooks of the official runtime: log / evaluation / checkpoint intervals (iterations)."""

    log_interval: int = 50
    eval_interval: int = 16_000
    checkpoint_interval: int = 16_000
    keep_checkpoints: int | None = None  # Ray CheckpointConfig(num_to_keep); None keeps all
    seed: int = 0
    amp: bool = False  # fp16 autocast + GradScaler, GPU only (official: fp32)
    channels_last: bool = True  # channels-last training (faster on CPU, same numerics to float rounding)
    cudnn_benchmark: bool = True
    find_unused_parameters: bool = True
    deterministic: bool = False

    def __post_init__(self) -> None:
        for name in ("log_interval", "eval_interval", "checkpoint_interval", "keep_checkpoints"):
            require_positive(name, getattr(self, name))
        require_positive("seed", self.seed, allow_zero=True)


@dataclass(frozen=True)
class ScalingSpec(Section):
    """Ray Train workers (``ScalingConfig``), failure handling and storage.

    Official "2x8": ``num_workers: 8, use_gpu: true, data.samples_per_gpu: 2``. ``report_poll_s``
    sets ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` for the run (Ray's 2.0 s default makes every
    ``ray.train.report`` block ~1.7 s). ``storage_path`` default: ``<runs>/train``.
    """

    num_workers: int = 8
    use_gpu: bool = True
    cpus_per_worker: float = 1.0
    resources_per_worker: dict[str, float] = field(default_factory=dict)
    max_failures: int = 0
    storage_path: str | None = None
    report_poll_s: float = 0.5
    ray_address: str | None = None

    def __post_init__(self) -> None:
        require_positive("num_workers", self.num_workers)
        require_positive("cpus_per_worker", self.cpus_per_worker, allow_zero=True)
        if self.max_failures < -1:
            raise ConfigError("max_failures", self.max_failures, "-1 (retry forever) or an integer >= 0")
        require_positive("report_poll_s", self.report_poll_s)
        for k in ("CPU", "GPU"):
            if k in self.resources_per_worker:
                raise ConfigError(f"resources_per_worker.{k}", self.resources_per_worker[k],
                                  "custom resources only", hint="use cpus_per_worker / use_gpu")
        object.__setattr__(self, "storage_path", resolve_path(self.storage_path))


@dataclass(frozen=True)
class TrackingConfig(Section):
    """MLflow: URI (else $MLFLOW_TRACKING_URI, else sqlite under the run folder) and what to log."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "topnas-train"
    log_checkpoint: bool = True
    export_onnx: bool = True

    def __post_init__(self) -> None:
        if not self.experiment.strip():
            raise ConfigError("experiment", self.experiment, "a non-empty MLflow experiment name")


@dataclass(frozen=True)
class FaultInjection(Section):
    """TEST ONLY: worker ``rank`` raises before iteration ``at_iter`` once (a marker file remembers)."""

    rank: int = 0
    at_iter: int = 1
    marker: str | None = None  # default: <run dir>/fault_injected_rank<r>_iter<k>

    def __post_init__(self) -> None:
        require_positive("rank", self.rank, allow_zero=True)
        require_positive("at_iter", self.at_iter, allow_zero=True)
        object.__setattr__(self, "marker", resolve_path(self.marker))


@dataclass(frozen=True)
class TrainConfig(Section):
    """One training job, from YAML to trainer to tracker (nothing re-parses it)."""

    name: str = "train"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(root="data/ade/ADEChallengeData2016"))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    scaling: ScalingSpec = field(default_factory=ScalingSpec)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    fault_injection: FaultInjection | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\") or self.name.strip() != self.name:
            raise ConfigError("name", self.name, "a non-empty run name without slashes or outer spaces")
        fixture = self.data.fixture
        if fixture is not None and fixture.classes != self.model.num_classes:
            raise ConfigError("data.fixture.classes", fixture.classes, [self.model.num_classes],
                              hint="must equal model.num_classes")
        fault = self.fault_injection
        if fault is not None:
            if fault.rank >= self.scaling.num_workers:
                raise ConfigError("fault_injection.rank", fault.rank, f"0..{self.scaling.num_workers - 1}")
            if fault.at_iter >= self.schedule.max_iters:
                raise ConfigError("fault_injection.at_iter", fault.at_iter, f"0..{self.schedule.max_iters - 1}")
        if self.schedule.warmup is not None and self.schedule.warmup_iters > self.schedule.max_iters:
            raise ConfigError("schedule.warmup_iters", self.schedule.warmup_iters,
                              f"at most schedule.max_iters={self.schedule.max_iters}")
        _ = self.variant  # build and validate the architecture now, not on a worker

    # ------------------------------------------------------------------ derived values
    @functools.cached_property
    def variant(self):
        """The :class:`~topnas.search_spaces.Variant` trained by this config."""
        return self.model.build_variant(self.data.crop_size)

    @property
    def total_batch_size(self) -> int:
        return self.data.samples_per_gpu * self.scaling.num_workers

    def resolved_norm(self) -> str:
        """SyncBN needs NCCL (GPUs): on CPU (gloo) workers BatchNorm is used."""
        if not self.scaling.use_gpu:
            return "BN"
        return "SyncBN" if self.model.norm == "auto" else self.model.norm

    # ------------------------------------------------------------------ (de)serialisation
    def to_yaml(self) -> str:
        """Block-style mappings, flow-style lists; loads back with :meth:`from_yaml_text`."""
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)

    @classmethod
    def from_yaml_text(cls, text: str) -> "TrainConfig":
        return cls.from_dict(yaml.safe_load(text) or {})

    def with_overrides(self, overrides: Overrides) -> "TrainConfig":
        """A new config with dotted overrides, e.g. ``{"runtime.seed": 1}`` or ``["runtime.seed=1"]``."""
        return TrainConfig.from_dict(apply_overrides(self.to_dict(), overrides))

    def __getstate__(self) -> dict[str, Any]:  # cached_property values stay out of pickles
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(list, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


# ----------------------------------------------------------------------------- loading
def load_config(path: str | os.PathLike[str], overrides: Overrides = ()) -> TrainConfig:
    """Compose ``path`` with its bases, apply ``overrides``, validate. ``name`` defaults to the file stem."""
    raw = load_yaml(path, overrides)
    raw.setdefault("name", Path(path).stem)
    return TrainConfig.from_dict(raw)
