"""Public NAS spaces with real ARM-phone latency data, as kernel lists (and torch modules).

A space module exposes ``NAME``, ``DEFAULT_INPUT`` (the input side of the phone data), ``HAS_DEAD_CODE``,
``parse(arch) -> tuple`` (raises :class:`ValueError` naming what is wrong) and
``kernels(arch, input_hw) -> tuple[Kernel, ...]``: the same generic kernels the latency predictor
takes from any traced or exported graph, so a predictor fitted on these phones prices TopFormer
variants, and the other way round.
"""
from __future__ import annotations

from types import ModuleType

from topnas.errors import ConfigError
from topnas.platform.latency.spaces import fbnet, nb201

__all__ = ["SPACES", "get_space"]

SPACES: dict[str, ModuleType] = {"nb201": nb201, "fbnet": fbnet}


def get_space(name: str) -> ModuleType:
    """The space module called `name` (``nb201`` or ``fbnet``)."""
    if name not in SPACES:
        raise ConfigError("space", name, sorted(SPACES))
    return SPACES[name]
