"""A variant: one TopFormer config at one input resolution, with a stable short id.

The id is a hash of the canonical (sorted-key JSON) config, so the same architecture sampled twice,
written to YAML and read back, or built from a preset gets the same id everywhere: in Optuna, in
MLflow run names, in calibration files and in promoted experiment files.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from topnas.errors import ConfigError, check_keys, check_type
from topnas.topformer.arch_config import PRESETS, TopFormerConfig, preset_config

__all__ = ["Variant", "MIN_TOKEN_SIDE", "MIN_INPUT_SIDE", "preset_variant"]

MIN_TOKEN_SIDE = 2  # attention over a single token is a no-op: the token stride is then too large
MIN_INPUT_SIDE = 32
_ID_EXCLUDED = ("norm",)  # BN vs SyncBN is how a model is trained, not which graph it is
_KEYS = ("model", "input_size", "preset", "name")


@dataclass(frozen=True)
class Variant:
    """A TopFormer architecture at a fixed input size (latency depends on both)."""

    model: TopFormerConfig
    input_size: tuple[int, int] = (512, 512)
    name: str | None = None  # a preset name or a human label; not part of the id

    def __post_init__(self) -> None:
        size = self.input_size
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise ConfigError("input_size", self.input_size, "[height, width] of positive ints")
        for i, s in enumerate(size):
            check_type(f"input_size[{i}]", s, int, f"an int >= {MIN_INPUT_SIDE}")
            if s < MIN_INPUT_SIDE:
                raise ConfigError(f"input_size[{i}]", s, f"an int >= {MIN_INPUT_SIDE}")
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        grid = self.model.token_grid(*self.input_size)
        if min(grid) < MIN_TOKEN_SIDE:
            ok = [s for s in (1, 2, 4, 8, 16) if min(self.model.replace(c2t_stride=s).token_grid(*self.input_size))
                  >= MIN_TOKEN_SIDE]
            raise ConfigError(
                "c2t_stride", self.model.c2t_stride, ok,
                hint=f"token grid {grid[0]}x{grid[1]} at input {self.input_size[0]}x{self.input_size[1]} "
                     f"is below {MIN_TOKEN_SIDE}x{MIN_TOKEN_SIDE}",
            )

    # ----------------------------------------------------------------- identity
    def canonical(self) -> dict[str, Any]:
        model = {k: v for k, v in self.model.to_dict().items() if k not in _ID_EXCLUDED}
        return {"input_size": list(self.input_size), "model": model}

    @property
    def id(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), default=float)
        return "tf-" + hashlib.sha1(blob.encode()).hexdigest()[:10]

    @property
    def preset(self) -> str | None:
        """The official preset this variant equals (at any input size), if any."""
        for name in PRESETS:
            ref = preset_config(name, num_classes=self.model.num_classes)
            if _arch(ref) == _arch(self.model):
                return name
        return None

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "input_size": list(self.input_size), "model": self.model.to_dict()}
        if self.name:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], field: str = "variant") -> "Variant":
        if not isinstance(data, Mapping):
            raise ConfigError(field, data, "a mapping with keys " + ", ".join(_KEYS))
        data = dict(data)
        claimed_id = data.pop("id", None)
        check_keys(field, data, _KEYS)
        model = data.get("model") or {}
        if not isinstance(model, Mapping):
            raise ConfigError(f"{field}.model", model, "a mapping of TopFormer config fields")
        if data.get("preset") is not None:
            if data["preset"] not in PRESETS:
                raise ConfigError(f"{field}.preset", data["preset"], sorted(PRESETS))
            model = {**PRESETS[data["preset"]], **model}
        elif not model:
            raise ConfigError(f"{field}.model", "<missing>", "a TopFormer config, or give `preset`")
        cfg = TopFormerConfig.from_dict(model, prefix=f"{field}.model")
        variant = cls(cfg, data.get("input_size", (512, 512)), name=data.get("name") or data.get("preset"))
        if claimed_id is not None and claimed_id != variant.id:
            raise ConfigError(f"{field}.id", claimed_id, [variant.id],
                              hint="the id does not match the config; delete the id line to recompute it")
        return variant

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Variant":
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump({"variant": self.to_dict()}, sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text: str) -> "Variant":
        data = yaml.safe_load(text)
        if isinstance(data, Mapping) and "variant" in data:
            data = data["variant"]
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        from topnas.fileio import atomic_write_text

        path = Path(path)
        return atomic_write_text(path, self.to_json() if path.suffix == ".json" else self.to_yaml())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Variant":
        path = Path(path)
        if not path.is_file():
            raise ConfigError("variant file", str(path), "an existing .yaml/.yml/.json file")
        text = path.read_text()
        return cls.from_json(text) if path.suffix == ".json" else cls.from_yaml(text)

    def build(self, **overrides: Any):
        """Instantiate the model (overrides e.g. ``norm="BN"`` for CPU training)."""
        from topnas.topformer.model import TopFormer

        return TopFormer(self.model.replace(**overrides) if overrides else self.model)


def _arch(cfg: TopFormerConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    for k in _ID_EXCLUDED:
        d.pop(k)
    return d


def preset_variant(name: str, input_size: tuple[int, int] = (512, 512), num_classes: int = 150) -> Variant:
    return Variant(preset_config(name, num_classes=num_classes), input_size, name=name)
