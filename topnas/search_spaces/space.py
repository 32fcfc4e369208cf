"""The space a sweep explores, defined in YAML, and how a point of it becomes a :class:`Variant`.

Structure (the official TopFormer block tables, ``local_configs/topformer/topformer_*.py``): a fixed
``layer1`` block at stride 2, then four pyramid stages at strides 4, 8, 16, 32. Each stage is one
stride-2 block followed by stride-1 blocks; its last block is tapped into the token pyramid. A
stage's block ``j`` takes kernel ``kernels[j]`` and expand ratio ``expand_ratios[j]`` (the last
entry repeats for deeper stages). Every dimension is a list of choices, so a point is a flat dict of
categorical values, which is exactly what Optuna's samplers (NSGA-II, TPE, GP) and Ray Tune need.

The whole space is validated when it is loaded: a width that is not a multiple of 8, heads that do
not fit the smallest embedding, a token stride too large for the smallest input, an unknown key or a
wrong type all fail here, naming the field and the allowed values, before any model is built.
"""
from __future__ import annotations

import itertools
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from topnas.errors import ConfigError, check_choice, check_keys, check_type
from topnas.search_spaces.variant import MIN_TOKEN_SIDE, Variant
from topnas.topformer.arch_config import INJECTION_TYPES, KERNEL_SIZES, TopFormerConfig, make_divisible

__all__ = ["SearchSpace", "StageSpace", "DEFAULT_SPACE_PATH", "default_space"]

DEFAULT_SPACE_PATH = Path(__file__).with_name("default.yaml")
NUM_STAGES = 4

_TOP_KEYS = ("name", "num_classes", "input_size", "stem_block", "stages", "width_mult", "transformer", "head")
_STAGE_KEYS = ("channels", "depth", "kernels", "expand_ratios")
_TRANS_KEYS = ("depths", "num_heads", "key_dim", "attn_ratio", "mlp_ratio", "c2t_stride", "drop_path_rate")
_HEAD_KEYS = ("channels", "is_dw", "injection_type", "dropout_ratio")
TRANSFORMER_DEPTHS = range(1, 7)
C2T_STRIDES = (1, 2, 4)


def _choices(field_name: str, value: Any, types: type | tuple[type, ...], allowed: str = "",
             distinct: bool = True) -> tuple[Any, ...]:
    """A list of choices (a scalar means a single fixed choice); `distinct=False` for per-block lists."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ConfigError(field_name, value, f"a non-empty list of {allowed}" if allowed else "a non-empty list")
    for i, v in enumerate(values):
        check_type(f"{field_name}[{i}]", v, types, allowed)
    if distinct and len(set(map(repr, values))) != len(values):
        raise ConfigError(field_name, values, "distinct choices")
    return tuple(values)


@dataclass(frozen=True)
class StageSpace:
    channels: tuple[int, ...]
    depth: tuple[int, ...]
    kernels: tuple[int, ...]
    expand_ratios: tuple[float, ...]

    def blocks(self, channels: int, depth: int) -> list[list[Any]]:
        rows = []
        for j in range(depth):
            k = self.kernels[min(j, len(self.kernels) - 1)]
            t = self.expand_ratios[min(j, len(self.expand_ratios) - 1)]
            rows.append([k, t, channels, 2 if j == 0 else 1])
        return rows


@dataclass(frozen=True)
class SearchSpace:
    """A YAML-defined, validated space of TopFormer variants."""

    name: str
    num_classes: int
    input_sizes: tuple[tuple[int, int], ...]
    stem_block: tuple[Any, ...]
    stages: tuple[StageSpace, ...]
    width_mult: tuple[float, ...] | None
    transformer: dict[str, tuple[Any, ...]]
    head: dict[str, tuple[Any, ...]]
    drop_path_rate: float = 0.1
    dropout_ratio: float = 0.1
    base_channels: tuple[int, ...] = field(default=(16, 32, 64, 96))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], field_prefix: str = "search_space") -> "SearchSpace":
        if not isinstance(data, Mapping):
            raise ConfigError(field_prefix, data, "a mapping with keys " + ", ".join(_TOP_KEYS))
        if "search_space" in data and len(data) == 1:
            data = data["search_space"]
        p = field_prefix
        check_keys(p, data, _TOP_KEYS)
        for req in ("stages", "transformer", "head"):
            if req not in data:
                raise ConfigError(f"{p}.{req}", "<missing>", "a value is required")
        num_classes = check_type(f"{p}.num_classes", data.get("num_classes", 150), int, "an int >= 1")
        if num_classes < 1:
            raise ConfigError(f"{p}.num_classes", num_classes, "an int >= 1")

        sizes = []
        raw_sizes = data.get("input_size", [[512, 512]])
        if not isinstance(raw_sizes, (list, tuple)) or not raw_sizes:
            raise ConfigError(f"{p}.input_size", raw_sizes, "a list of [height, width] choices")
        if all(isinstance(s, int) for s in raw_sizes):  # [512, 448] means square sizes
            raw_sizes = [[s, s] for s in raw_sizes]
        for i, s in enumerate(raw_sizes):
            if not isinstance(s, (list, tuple)) or len(s) != 2 or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 32 for v in s):
                raise ConfigError(f"{p}.input_size[{i}]", s, "[height, width] with ints >= 32")
            sizes.append((s[0], s[1]))

        stem = data.get("stem_block", [3, 1, 16, 1])
        if not isinstance(stem, (list, tuple)) or len(stem) != 4 or stem[3] != 1:
            raise ConfigError(f"{p}.stem_block", stem, "[kernel, expand_ratio, out_channels, stride=1]")

        raw_stages = data["stages"]
        if not isinstance(raw_stages, (list, tuple)) or len(raw_stages) != NUM_STAGES:
            raise ConfigError(f"{p}.stages", raw_stages, f"a list of {NUM_STAGES} stages (strides 4, 8, 16, 32)")
        width_mult = data.get("width_mult")
        stages = []
        for i, st in enumerate(raw_stages):
            sp = f"{p}.stages[{i}]"
            if not isinstance(st, Mapping):
                raise ConfigError(sp, st, "a mapping with keys " + ", ".join(_STAGE_KEYS))
            check_keys(sp, st, _STAGE_KEYS)
            for req in ("channels", "depth", "kernels", "expand_ratios"):
                if req not in st:
                    raise ConfigError(f"{sp}.{req}", "<missing>", "a value is required")
            chans = _choices(f"{sp}.channels", st["channels"], int, "positive multiples of 8")
            for j, c in enumerate(chans):
                if c <= 0 or c % 8:
                    raise ConfigError(f"{sp}.channels[{j}]", c, "positive multiples of 8",
                                      hint=f"nearest: {make_divisible(c, 8)}")
            depth = _choices(f"{sp}.depth", st["depth"], int, "ints in 1..8")
            for j, d in enumerate(depth):
                if not 1 <= d <= 8:
                    raise ConfigError(f"{sp}.depth[{j}]", d, "ints in 1..8")
            kernels = _choices(f"{sp}.kernels", st["kernels"], int, distinct=False)
            for j, k in enumerate(kernels):
                check_choice(f"{sp}.kernels[{j}]", k, KERNEL_SIZES)
            expands = _choices(f"{sp}.expand_ratios", st["expand_ratios"], (int, float), distinct=False)
            for j, t in enumerate(expands):
                if t < 1:
                    raise ConfigError(f"{sp}.expand_ratios[{j}]", t, "numbers >= 1")
            stages.append(StageSpace(chans, depth, kernels, expands))
        wm = None
        if width_mult is not None:
            wm = _choices(f"{p}.width_mult", width_mult, (int, float), "numbers in (0, 4]")
            for j, w in enumerate(wm):
                if not 0 < w <= 4:
                    raise ConfigError(f"{p}.width_mult[{j}]", w, "numbers in (0, 4]")
            if any(len(s.channels) > 1 for s in stages):
                raise ConfigError(f"{p}.width_mult", list(wm), "null when stages list several channel choices",
                                  hint="give either per-stage channel choices or a width multiplier, not both")

        t = data["transformer"]
        if not isinstance(t, Mapping):
            raise ConfigError(f"{p}.transformer", t, "a mapping with keys " + ", ".join(_TRANS_KEYS))
        check_keys(f"{p}.transformer", t, _TRANS_KEYS)
        trans = {
            "depths": _choices(f"{p}.transformer.depths", t.get("depths", [4]), int, "ints in 1..6"),
            "num_heads": _choices(f"{p}.transformer.num_heads", t.get("num_heads", [8]), int, "positive ints"),
            "key_dim": _choices(f"{p}.transformer.key_dim", t.get("key_dim", [16]), int, "positive ints"),
            "attn_ratio": _choices(f"{p}.transformer.attn_ratio", t.get("attn_ratio", [2]), (int, float), "> 0"),
            "mlp_ratio": _choices(f"{p}.transformer.mlp_ratio", t.get("mlp_ratio", [2]), (int, float), "> 0"),
            "c2t_stride": _choices(f"{p}.transformer.c2t_stride", t.get("c2t_stride", [2]), int, "1, 2 or 4"),
        }
        for j, d in enumerate(trans["depths"]):
            check_choice(f"{p}.transformer.depths[{j}]", d, TRANSFORMER_DEPTHS)
        for j, s in enumerate(trans["c2t_stride"]):
            check_choice(f"{p}.transformer.c2t_stride[{j}]", s, C2T_STRIDES)
        for name in ("num_heads", "key_dim", "attn_ratio", "mlp_ratio"):
            for j, v in enumerate(trans[name]):
                if v <= 0:
                    raise ConfigError(f"{p}.transformer.{name}[{j}]", v, "positive values")
        dpr = t.get("drop_path_rate", 0.1)
        check_type(f"{p}.transformer.drop_path_rate", dpr, (int, float), "a number in [0, 1)")

        h = data["head"]
        if not isinstance(h, Mapping):
            raise ConfigError(f"{p}.head", h, "a mapping with keys " + ", ".join(_HEAD_KEYS))
        check_keys(f"{p}.head", h, _HEAD_KEYS)
        head = {
            "channels": _choices(f"{p}.head.channels", h.get("channels", [128]), int, "positive multiples of 8"),
            "is_dw": _choices(f"{p}.head.is_dw", h.get("is_dw", [False]), bool, "true / false"),
            "injection_type": _choices(f"{p}.head.injection_type", h.get("injection_type", ["muli_sum"]), str,
                                       f"names in {list(INJECTION_TYPES)}"),
        }
        for j, c in enumerate(head["channels"]):
            if c <= 0 or c % 8:
                raise ConfigError(f"{p}.head.channels[{j}]", c, "positive multiples of 8")
        for j, it in enumerate(head["injection_type"]):
            check_choice(f"{p}.head.injection_type[{j}]", it, INJECTION_TYPES)
        dropout = h.get("dropout_ratio", 0.1)
        check_type(f"{p}.head.dropout_ratio", dropout, (int, float), "a number in [0, 1)")

        space = cls(
            name=str(data.get("name", "topformer")), num_classes=num_classes, input_sizes=tuple(sizes),
            stem_block=tuple(stem), stages=tuple(stages), width_mult=wm, transformer=trans, head=head,
            drop_path_rate=float(dpr), dropout_ratio=float(dropout),
            base_channels=tuple(s.channels[0] for s in stages),
        )
        space._check_extremes(p)
        return space

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> "SearchSpace":
        from topnas.yamlio import read_yaml_mapping

        data = read_yaml_mapping(path, "search space file")
        if isinstance(data, Mapping) and "search_space" in data:
            data = data["search_space"]
        return cls.from_dict(data)

    def _check_extremes(self, p: str) -> None:
        """Reject combinations that some point of the space would break, before sampling starts."""
        min_embed = min(sum(chs) for chs in self._all_stage_channels())
        max_heads, max_kd = max(self.transformer["num_heads"]), max(self.transformer["key_dim"])
        if max_heads * max_kd > min_embed:
            fit = [h for h in self.transformer["num_heads"] if h * max_kd <= min_embed]
            raise ConfigError(
                f"{p}.transformer.num_heads", list(self.transformer["num_heads"]), fit or f"<= {min_embed // max_kd}",
                hint=f"num_heads * key_dim ({max_heads}*{max_kd}) must fit the smallest embedding dim {min_embed}",
            )
        for j, kd in enumerate(self.transformer["key_dim"]):
            for ar in self.transformer["attn_ratio"]:
                if int(ar * kd) < 1:
                    raise ConfigError(f"{p}.transformer.attn_ratio", ar, f">= {1 / kd}")
        for (h, w) in self.input_sizes:
            for s in self.transformer["c2t_stride"]:
                grid = _token_side(min(h, w), s)
                if grid < MIN_TOKEN_SIDE:
                    ok = [c for c in C2T_STRIDES if _token_side(min(h, w), c) >= MIN_TOKEN_SIDE]
                    raise ConfigError(
                        f"{p}.transformer.c2t_stride", s, ok,
                        hint=f"input {h}x{w} gives a {grid}x{grid} token grid at stride {s}",
                    )

    def _all_stage_channels(self) -> Iterable[tuple[int, ...]]:
        if self.width_mult is not None:
            return [tuple(make_divisible(c * w, 8) for c in self.base_channels) for w in self.width_mult]
        return itertools.product(*(s.channels for s in self.stages))

    # ------------------------------------------------------------------ points
    def parameters(self) -> dict[str, tuple[Any, ...]]:
        """Flat categorical dimensions: name -> choices (values Optuna can store)."""
        dims: dict[str, tuple[Any, ...]] = {"input_size": tuple(f"{h}x{w}" for h, w in self.input_sizes)}
        if self.width_mult is not None:
            dims["width_mult"] = self.width_mult
        for i, st in enumerate(self.stages):
            if self.width_mult is None:
                dims[f"stage{i + 1}.channels"] = st.channels
            dims[f"stage{i + 1}.depth"] = st.depth
        for k, v in self.transformer.items():
            dims[f"transformer.{k}"] = v
        for k, v in self.head.items():
            dims[f"head.{k}"] = v
        return dims

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.parameters().values())

    def build(self, point: Mapping[str, Any]) -> Variant:
        """Turn a point (flat dict, see :meth:`parameters`) into a validated Variant."""
        dims = self.parameters()
        check_keys("point", point, dims)
        for k, choices in dims.items():
            if k not in point:
                raise ConfigError(f"point.{k}", "<missing>", list(choices))
            check_choice(f"point.{k}", point[k], choices)
        h, w = (int(v) for v in str(point["input_size"]).split("x"))
        if self.width_mult is not None:
            chans = [make_divisible(c * point["width_mult"], 8) for c in self.base_channels]
        else:
            chans = [point[f"stage{i + 1}.channels"] for i in range(NUM_STAGES)]
        blocks = [list(self.stem_block)]
        taps = []
        for i, st in enumerate(self.stages):
            blocks += st.blocks(chans[i], point[f"stage{i + 1}.depth"])
            taps.append(len(blocks) - 1)
        head_ch = point["head.channels"]
        cfg = TopFormerConfig.from_dict(dict(
            blocks=blocks, embed_out_indice=taps, channels=chans,
            out_channels=[None] + [head_ch] * (NUM_STAGES - 1), decode_out_indices=[1, 2, 3],
            depths=point["transformer.depths"], num_heads=point["transformer.num_heads"],
            key_dim=point["transformer.key_dim"], attn_ratio=point["transformer.attn_ratio"],
            mlp_ratio=point["transformer.mlp_ratio"], c2t_stride=point["transformer.c2t_stride"],
            drop_path_rate=self.drop_path_rate, injection_type=point["head.injection_type"],
            head_channels=head_ch, head_is_dw=point["head.is_dw"], dropout_ratio=self.dropout_ratio,
            num_classes=self.num_classes,
        ), prefix="variant.model")
        return Variant(cfg, (h, w))

    def sample(self, rng: random.Random) -> Variant:
        return self.build({k: rng.choice(v) for k, v in self.parameters().items()})

    def suggest(self, trial: Any) -> Variant:
        """Define-by-run sampling for an Optuna trial (or anything with ``suggest_categorical``)."""
        return self.build({k: trial.suggest_categorical(k, list(v)) for k, v in self.parameters().items()})

    def point_of(self, variant: Variant) -> dict[str, Any] | None:
        """The point that builds `variant` (ignoring training-only fields), or None if outside the space."""
        dims = self.parameters()
        cfg = variant.model
        guess: dict[str, Any] = {
            "input_size": f"{variant.input_size[0]}x{variant.input_size[1]}",
            "transformer.depths": cfg.depths, "transformer.num_heads": cfg.num_heads,
            "transformer.key_dim": cfg.key_dim, "transformer.attn_ratio": cfg.attn_ratio,
            "transformer.mlp_ratio": cfg.mlp_ratio, "transformer.c2t_stride": cfg.c2t_stride,
            "head.channels": cfg.head_channels, "head.is_dw": cfg.head_is_dw,
            "head.injection_type": cfg.injection_type,
        }
        taps = list(cfg.embed_out_indice)
        starts = [1] + [t + 1 for t in taps[:-1]]
        for i in range(NUM_STAGES):
            guess[f"stage{i + 1}.depth"] = taps[i] - starts[i] + 1 if i < len(taps) else -1
            if self.width_mult is None:
                guess[f"stage{i + 1}.channels"] = cfg.channels[i] if i < len(cfg.channels) else -1
        if self.width_mult is not None:
            for w in self.width_mult:
                if [make_divisible(c * w, 8) for c in self.base_channels] == list(cfg.channels):
                    guess["width_mult"] = w
        if any(k not in guess or guess[k] not in v for k, v in dims.items()):
            return None
        try:
            built = self.build(guess)
        except ConfigError:
            return None
        ignore = ("norm", "drop_path_rate", "dropout_ratio")
        same = {k: v for k, v in built.model.to_dict().items() if k not in ignore} == {
            k: v for k, v in cfg.to_dict().items() if k not in ignore}
        return guess if same else None

    def contains(self, variant: Variant) -> bool:
        return self.point_of(variant) is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "num_classes": self.num_classes,
            "input_size": [list(s) for s in self.input_sizes], "stem_block": list(self.stem_block),
            "stages": [{"channels": list(s.channels), "depth": list(s.depth), "kernels": list(s.kernels),
                        "expand_ratios": list(s.expand_ratios)} for s in self.stages],
            "width_mult": list(self.width_mult) if self.width_mult else None,
            "transformer": {**{k: list(v) for k, v in self.transformer.items()},
                            "drop_path_rate": self.drop_path_rate},
            "head": {**{k: list(v) for k, v in self.head.items()}, "dropout_ratio": self.dropout_ratio},
        }


def _token_side(side: int, c2t_stride: int) -> int:
    last = side
    for _ in range(5):  # stride 32 = stem + 4 stride-2 stages
        last = (last - 1) // 2 + 1
    return (last - 1) // c2t_stride + 1


def default_space(num_classes: int | None = None) -> SearchSpace:
    """The packaged default space; the official tiny/small/base presets are points of it."""
    data = yaml.safe_load(DEFAULT_SPACE_PATH.read_text())["search_space"]
    if num_classes is not None:
        data["num_classes"] = num_classes
    return SearchSpace.from_dict(data)

