"""YAML files + ``--set`` overrides -> validated, frozen dataclasses (the training and the sweep config).

One job: a user's config file becomes typed values, or one :class:`~topnas.errors.ConfigError` naming
the dotted field, the value and the allowed values. Validation is driven by the dataclass fields and
their type hints, so a field added to a config is checked (and unknown keys are rejected) without any
extra code; ``__post_init__`` holds only the rules a type cannot say (ranges, cross-field checks).

- **Composition**: a ``_base_`` entry (a file name or a list, relative to the YAML file) merges those
  files first, in order, then the file itself. Mappings merge key by key; lists and scalars replace.
- **Overrides**: ``--set a.b=c`` sets one dotted key after composition; the value is parsed as YAML
  (``3`` is an int, ``1.5`` a float, ``true`` a bool, ``[64, 64]`` a list, ``{x: 1}`` a mapping).
- **Types**: :class:`Section` coerces each field by its annotation (``int``, ``float``, ``bool``,
  ``str``, ``Literal``, ``X | None``, ``tuple``, ``dict``, nested sections); lists become tuples.
- **Paths**: :func:`resolve_path` expands ``~``, ``$VARS`` and a leading ``{runs}`` (the project's run
  folder) and makes the path absolute, against the working directory or a given folder (the YAML's).

mmengine's ``Config`` also composes ``_base_`` files, but it does not type or range-check anything,
reports a base-file cycle as a ``RecursionError`` and a YAML syntax error as ``"<file>"``; this module
keeps the errors users act on (file, dotted field, allowed values).

Example::

    raw = load_yaml("experiments/demo_tiny_fixture.yaml", ["runtime.seed=1"])
    cfg = TrainConfig.from_dict(raw)          # TrainConfig is a frozen dataclass and a Section
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from topnas.errors import ConfigError, check_keys
from topnas.yamlio import read_yaml_mapping

__all__ = [
    "BASE_KEY",
    "RUNS_TOKEN",
    "Section",
    "apply_overrides",
    "coerce",
    "compose_yaml",
    "describe",
    "load_yaml",
    "parse_override",
    "plain",
    "require_positive",
    "resolve_path",
    "set_dotted",
]

BASE_KEY = "_base_"
RUNS_TOKEN = "{runs}"

Overrides = Sequence[str] | Mapping[str, Any]  # ["a.b=1"] or {"a.b": 1}


# ----------------------------------------------------------------------------- typed sections
class Section:
    """Mixin for frozen config dataclasses: ``from_dict`` rejects unknown keys and coerces by annotation.

    A field without a default is required. ``_expand`` may turn a shorthand value (e.g. a bare path)
    into the mapping before validation. A ConfigError raised by ``__post_init__`` with a field name
    relative to the section is reported under the section's dotted prefix.
    """

    @classmethod
    def _expand(cls, data: Any) -> Any:
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, prefix: str = "") -> Any:
        fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        names = [f.name for f in fields]
        data = cls._expand(data)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(prefix or "config", data, f"a mapping with keys {names}")
        check_keys(prefix, data.keys(), names)
        hints = _hints(cls)
        for f in fields:
            if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(_join(prefix, f.name), "<missing>", describe(hints[f.name]))
        kwargs = {name: coerce(_join(prefix, name), data[name], hints[name]) for name in names if name in data}
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            if prefix and not exc.field.startswith(prefix + "."):
                raise ConfigError(_join(prefix, exc.field), exc.value, exc.allowed, hint=exc.hint) from None
            raise

    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, scalars) that :meth:`from_dict` reads back to an equal section."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def plain(value: Any) -> Any:
    """Sections -> dicts, tuples -> lists (so ``yaml.safe_dump`` and MLflow params accept them)."""
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against a type annotation: lists -> tuples, ints and numeric strings -> floats
    where a float is expected (PyYAML reads ``1e-6`` as a string), a nested section -> its dataclass.
    ``bool`` is not accepted as a number (a YAML ``true`` where a count is expected is a mistake)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return copy.deepcopy(value)  # a frozen config does not share mutable values with its input
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors: list[ConfigError] = []
        for option in options:
            try:
                return coerce(name, value, option)
            except ConfigError as exc:
                errors.append(exc)
        if len(options) == 1:
            raise errors[0]
        raise ConfigError(name, value, " or ".join(describe(o) for o in args))
    if origin is Literal:
        if value not in args:
            raise ConfigError(name, value, list(args))
        return value
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.from_dict(value, name)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, value, "an integer")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(name, value, "a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, value, "a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(name, value, "a string")
        return value
    if origin is tuple:
        fixed = not (len(args) == 2 and args[1] is Ellipsis)
        if not isinstance(value, (list, tuple)) or (fixed and len(value) != len(args)):
            raise ConfigError(name, value, describe(hint))
        item_hints = args if fixed else [args[0]] * len(value)
        return tuple(coerce(f"{name}[{i}]", v, h) for i, (v, h) in enumerate(zip(value, item_hints)))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(name, value, "a mapping")
        key_hint, value_hint = args or (str, Any)
        return {coerce(name, k, key_hint): coerce(f"{name}.{k}", v, value_hint) for k, v in value.items()}
    raise TypeError(f"unsupported annotation {hint!r} for {name}")  # a bug in the config's dataclass


def describe(hint: Any) -> str:
    """A type annotation in words users read (``[int, int]``, ``'a' | 'b'``, ``number``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe(args[0])}"
        return "[" + ", ".join(describe(a) for a in args) + "]"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (dict, Mapping):
        return "a mapping"
    if isinstance(hint, type) and issubclass(hint, Section):
        return "a mapping with keys " + str([f.name for f in dataclasses.fields(hint)])  # type: ignore[arg-type]
    return {int: "int", float: "number", str: "string", bool: "bool"}.get(hint, getattr(hint, "__name__", str(hint)))


def require_positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    """``value`` > 0 (or >= 0); None passes (an optional field left out)."""
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, value, "a number >= 0" if allow_zero else "a number > 0")


# ----------------------------------------------------------------------------- paths
def resolve_path(value: str | None, relative_to: str | os.PathLike[str] | None = None) -> str | None:
    """``~``, ``$VARS`` and a leading ``{runs}`` expanded; a relative path made absolute.

    Relative to the working directory (workers run elsewhere, so configs hold absolute paths), or,
    with ``relative_to``, to that folder (a file shipped beside the YAML), then normalised.
    """
    if value is None:
        return None
    text = os.path.expandvars(os.path.expanduser(value))
    if text.startswith(RUNS_TOKEN):
        from topnas.platform.paths import runs_root

        text = str(runs_root()) + text[len(RUNS_TOKEN):]
    if relative_to is not None:
        return str((Path(relative_to) / text).resolve())
    return str(Path(text).absolute())


# ----------------------------------------------------------------------------- composition
def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def compose_yaml(path: str | os.PathLike[str], what: str = "config",
                 _stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's mapping with its ``_base_`` files merged underneath (recursively, relative to it)."""
    path = Path(path).absolute()
    if path in _stack:
        chain = " -> ".join(p.name for p in (*_stack, path))
        raise ConfigError(BASE_KEY, str(path), "an acyclic chain of base files", hint=f"cycle {chain}")
    data = read_yaml_mapping(path, what)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path.name}:{BASE_KEY}", bases, "a file name or a list of file names")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _merge(merged, compose_yaml(path.parent / base, what, (*_stack, path)))
    return _merge(merged, data)


# ----------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=c"`` -> ``("a.b", yaml.safe_load("c"))``; an empty value is null, unparsable YAML a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError("--set", text, "KEY=VALUE with a dotted KEY, e.g. optimizer.lr=1.2e-4")
    try:
        return key, yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        return key, value


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw[a][b] = value`` for ``key="a.b"``, creating mappings on the way."""
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[: i + 1]), child, "a mapping", hint=f"cannot set {key}")
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """``raw`` with ``{"a.b": value}`` or ``["a.b=value"]`` overrides set in place (and returned)."""
    items = overrides.items() if isinstance(overrides, Mapping) else [parse_override(o) for o in overrides]
    for key, value in items:
        set_dotted(raw, key, value)
    return raw


def load_yaml(path: str | os.PathLike[str], overrides: Overrides = (), what: str = "config") -> dict[str, Any]:
    """A config file composed with its ``_base_`` files, then the overrides applied (not yet validated)."""
    return apply_overrides(compose_yaml(path, what), overrides)
