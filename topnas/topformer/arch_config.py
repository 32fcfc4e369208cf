"""Typed, validated configuration of one TopFormer segmentor, and the official presets.

A variant is data, not code (timm style): the searcher produces :class:`TopFormerConfig` values and
the model builder consumes them. Every check runs in ``__post_init__`` so an invalid config fails at
construction, naming the field and the allowed values, before any module is built.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from topnas.errors import ConfigError, check_choice, check_keys, check_type

__all__ = [
    "BlockSpec",
    "TopFormerConfig",
    "PRESETS",
    "INJECTION_TYPES",
    "NORM_TYPES",
    "make_divisible",
    "preset_config",
]

INJECTION_TYPES = ("muli_sum", "muli_sum_cbr", "fuse_sum", "fuse_multi")
NORM_TYPES = ("BN", "SyncBN")
KERNEL_SIZES = (3, 5, 7)
STRIDES = (1, 2)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNet channel rounding used by the official TPM (never drops more than 10%)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual row of the token pyramid: the official ``[k, t, c, s]``."""

    kernel: int
    expand_ratio: float
    out_channels: int
    stride: int

    def as_list(self) -> list[Any]:
        t = int(self.expand_ratio) if float(self.expand_ratio).is_integer() else self.expand_ratio
        return [self.kernel, t, self.out_channels, self.stride]


def _block_from(idx: int, row: Any) -> BlockSpec:
    name = f"blocks[{idx}]"
    if isinstance(row, BlockSpec):
        row = row.as_list()
    if isinstance(row, Mapping):
        check_keys(name, row, ("kernel", "expand_ratio", "out_channels", "stride"))
        row = [row.get("kernel"), row.get("expand_ratio"), row.get("out_channels"), row.get("stride")]
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise ConfigError(name, row, "[kernel, expand_ratio, out_channels, stride]")
    k, t, c, s = row
    check_type(f"{name}.kernel", k, int)
    check_choice(f"{name}.kernel", k, KERNEL_SIZES)
    check_type(f"{name}.expand_ratio", t, (int, float), "a number >= 1")
    if not t >= 1:
        raise ConfigError(f"{name}.expand_ratio", t, "a number >= 1")
    check_type(f"{name}.out_channels", c, int, "a positive multiple of 8")
    if c <= 0 or c % 8:
        raise ConfigError(f"{name}.out_channels", c, "a positive multiple of 8")
    check_type(f"{name}.stride", s, int)
    check_choice(f"{name}.stride", s, STRIDES)
    return BlockSpec(k, t, c, s)


@dataclass(frozen=True)
class TopFormerConfig:
    """Everything that defines a TopFormer segmentor (backbone + SimpleHead).

    Field names follow the official configs (``embed_out_indice``, ``c2t_stride``, ...), so users
    can read them against ``local_configs/topformer/*.py``.
    """

    blocks: tuple[BlockSpec, ...]
    embed_out_indice: tuple[int, ...]
    channels: tuple[int, ...]
    out_channels: tuple[int | None, ...]
    decode_out_indices: tuple[int, ...] = (1, 2, 3)
    depths: int = 4
    num_heads: int = 8
    key_dim: int = 16
    attn_ratio: float = 2
    mlp_ratio: float = 2
    c2t_stride: int = 2
    drop_path_rate: float = 0.1
    injection_type: str = "muli_sum"
    head_channels: int = 128
    head_is_dw: bool = False
    dropout_ratio: float = 0.1
    num_classes: int = 150
    norm: str = "SyncBN"
    stem_channels: int = 16

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        blocks = tuple(_block_from(i, b) for i, b in enumerate(_as_seq("blocks", self.blocks)))
        if not blocks:
            raise ConfigError("blocks", [], "a non-empty list of [kernel, expand_ratio, out_channels, stride]")
        object.__setattr__(self, "blocks", blocks)
        for name in ("embed_out_indice", "channels", "decode_out_indices"):
            object.__setattr__(self, name, tuple(_as_seq(name, getattr(self, name))))
        object.__setattr__(self, "out_channels", tuple(_as_seq("out_channels", self.out_channels)))

        n = len(blocks)
        taps = self.embed_out_indice
        for i, t in enumerate(taps):
            check_type(f"embed_out_indice[{i}]", t, int)
        if len(taps) < 2 or list(taps) != sorted(set(taps)) or taps[0] < 0 or taps[-1] >= n:
            raise ConfigError(
                "embed_out_indice", list(taps),
                f"at least 2 strictly increasing block indices in 0..{n - 1}",
            )
        if len(self.channels) != len(taps):
            raise ConfigError("channels", list(self.channels), f"a list of {len(taps)} ints (one per tapped block)")
        for i, (t, c) in enumerate(zip(taps, self.channels)):
            if c != blocks[t].out_channels:
                raise ConfigError(
                    f"channels[{i}]", c, [blocks[t].out_channels],
                    hint=f"must equal the out_channels of tapped block {t}",
                )
        levels = range(len(taps))
        dec = self.decode_out_indices
        if not dec or list(dec) != sorted(set(dec)) or any(not isinstance(d, int) or d not in levels for d in dec):
            raise ConfigError("decode_out_indices", list(dec), f"strictly increasing indices in {list(levels)}")
        if len(self.out_channels) != len(taps):
            raise ConfigError(
                "out_channels", list(self.out_channels),
                f"a list of {len(taps)} entries (null for levels that are not decoded)",
            )
        for i, oc in enumerate(self.out_channels):
            if i in dec:
                check_type(f"out_channels[{i}]", oc, int, "a positive int")
                if oc <= 0:
                    raise ConfigError(f"out_channels[{i}]", oc, "a positive int")
                # SimpleHead fuses by element-wise SUM, so every decoded level has the head's width.
                if oc != self.head_channels:
                    raise ConfigError(
                        f"out_channels[{i}]", oc, [self.head_channels],
                        hint="SimpleHead sums the decoded levels: they must all equal head_channels",
                    )
            elif oc is not None:
                raise ConfigError(f"out_channels[{i}]", oc, [None], hint=f"level {i} is not in decode_out_indices")

        for name, lo in (("depths", 1), ("num_heads", 1), ("key_dim", 1), ("c2t_stride", 1),
                         ("head_channels", 1), ("num_classes", 1), ("stem_channels", 1)):
            v = getattr(self, name)
            check_type(name, v, int, f"an int >= {lo}")
            if v < lo:
                raise ConfigError(name, v, f"an int >= {lo}")
        for name in ("attn_ratio", "mlp_ratio"):
            v = check_type(name, getattr(self, name), (int, float), "a number > 0")
            if v <= 0:
                raise ConfigError(name, v, "a number > 0")
        if int(self.attn_ratio * self.key_dim) < 1:
            raise ConfigError("attn_ratio", self.attn_ratio, f">= {1 / self.key_dim} (value dim per head >= 1)")
        for name in ("drop_path_rate", "dropout_ratio"):
            v = check_type(name, getattr(self, name), (int, float), "a number in [0, 1)")
            if not 0 <= v < 1:
                raise ConfigError(name, v, "a number in [0, 1)")
        check_choice("injection_type", self.injection_type, INJECTION_TYPES)
        check_choice("norm", self.norm, NORM_TYPES)
        check_type("head_is_dw", self.head_is_dw, bool, "true or false")
        if self.num_heads * self.key_dim > self.embed_dim:
            fit = [h for h in range(1, self.embed_dim // self.key_dim + 1)]
            raise ConfigError(
                "num_heads", self.num_heads, f"{fit[0]}..{fit[-1]}",
                hint=f"num_heads * key_dim ({self.num_heads}*{self.key_dim}) must fit in the "
                     f"embedding dim sum(channels)={self.embed_dim}",
            )

    # ------------------------------------------------------------------ derived values
    @property
    def embed_dim(self) -> int:
        return sum(self.channels)

    def stride_of(self, block_index: int) -> int:
        """Output stride of a TPM block (stem has stride 2)."""
        return 2 * math.prod(b.stride for b in self.blocks[: block_index + 1])

    @property
    def level_strides(self) -> tuple[int, ...]:
        return tuple(self.stride_of(t) for t in self.embed_out_indice)

    def feature_size(self, size: int, stride: int) -> int:
        """Spatial size after `stride` of k x k convs with padding k//2 (= ceil(size / stride))."""
        out = size
        s = 1
        while s < stride:
            out = (out - 1) // 2 + 1
            s *= 2
        return out

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """Token map size of the pyramid-pool aggregation: ((h-1)//c2t_stride + 1, same for w)."""
        last = self.level_strides[-1]
        h, w = self.feature_size(height, last), self.feature_size(width, last)
        return (h - 1) // self.c2t_stride + 1, (w - 1) // self.c2t_stride + 1

    @property
    def output_stride(self) -> int:
        return self.level_strides[self.decode_out_indices[0]]

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blocks"] = [b.as_list() for b in self.blocks]
        for k in ("embed_out_indice", "channels", "out_channels", "decode_out_indices"):
            d[k] = list(d[k])
        for k in ("attn_ratio", "mlp_ratio", "drop_path_rate", "dropout_ratio"):
            v = d[k]
            d[k] = int(v) if isinstance(v, float) and v.is_integer() and k in ("attn_ratio", "mlp_ratio") else v
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "") -> "TopFormerConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(prefix or "model", data, "a mapping of TopFormer config fields")
        names = [f.name for f in dataclasses.fields(cls)]
        check_keys(prefix, data.keys(), names)
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [r for r in required if r not in data]
        if missing:
            raise ConfigError(_join(prefix, missing[0]), "<missing>", "a value is required")
        try:
            return cls(**dict(data))
        except ConfigError as exc:
            if prefix:
                raise ConfigError(_join(prefix, exc.field), exc.value, exc.allowed) from None
            raise

    def replace(self, **changes: Any) -> "TopFormerConfig":
        return dataclasses.replace(self, **changes)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _as_seq(name: str, value: Any) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(name, value, "a list")
    return value


# ---------------------------------------------------------------------- official presets
# local_configs/topformer/topformer_{tiny,small,base}.py of hustvl/TopFormer.
_T_BLOCKS = [
    [3, 1, 16, 1], [3, 4, 16, 2], [3, 3, 16, 1], [5, 3, 32, 2], [5, 3, 32, 1],
    [3, 3, 64, 2], [3, 3, 64, 1], [5, 6, 96, 2], [5, 6, 96, 1],
]
_S_BLOCKS = [
    [3, 1, 16, 1], [3, 4, 24, 2], [3, 3, 24, 1], [5, 3, 48, 2], [5, 3, 48, 1],
    [3, 3, 96, 2], [3, 3, 96, 1], [5, 6, 128, 2], [5, 6, 128, 1], [3, 6, 128, 1],
]
_B_BLOCKS = [
    [3, 1, 16, 1], [3, 4, 32, 2], [3, 3, 32, 1], [5, 3, 64, 2], [5, 3, 64, 1],
    [3, 3, 128, 2], [3, 3, 128, 1], [5, 6, 160, 2], [5, 6, 160, 1], [3, 6, 160, 1],
]

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        blocks=_T_BLOCKS, embed_out_indice=[2, 4, 6, 8], channels=[16, 32, 64, 96],
        out_channels=[None, 128, 128, 128], num_heads=4, head_channels=128, head_is_dw=True,
    ),
    "small": dict(
        blocks=_S_BLOCKS, embed_out_indice=[2, 4, 6, 9], channels=[24, 48, 96, 128],
        out_channels=[None, 192, 192, 192], num_heads=6, head_channels=192, head_is_dw=False,
    ),
    "base": dict(
        blocks=_B_BLOCKS, embed_out_indice=[2, 4, 6, 9], channels=[32, 64, 128, 160],
        out_channels=[None, 256, 256, 256], num_heads=8, head_channels=256, head_is_dw=False,
    ),
}


def preset_config(name: str, **overrides: Any) -> TopFormerConfig:
    """The official config of preset `name` ("tiny", "small", "base"), with optional overrides."""
    check_choice("preset", name, PRESETS)
    return TopFormerConfig.from_dict({**PRESETS[name], **overrides})
