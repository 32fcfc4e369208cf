"""Errors a user can act on.

Every bad input raises :class:`ConfigError` early, naming the field, the value received and the
allowed values, so a typo in an experiment YAML fails before Ray or a model is started.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["ConfigError", "TopnasError", "check_choice", "check_keys", "check_type", "error_line"]


class TopnasError(Exception):
    """Base class for errors raised by topnas itself."""


class ConfigError(TopnasError, ValueError):
    """A config / CLI / file value is invalid. The message names field, value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: Any, hint: str = "") -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.hint = hint
        msg = f"{field}: got {value!r}; allowed: {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> Any:
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(field, value, allowed)
    return value


def check_type(field: str, value: Any, types: type | tuple[type, ...], allowed: str | None = None) -> Any:
    # bool is an int subclass; a YAML `true` where a number is expected is a mistake.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(field, value, allowed or _type_names(types))
    if not isinstance(value, types):
        raise ConfigError(field, value, allowed or _type_names(types))
    return value


def check_keys(field: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Reject unknown keys (Ray silently drops them; we do not)."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        name = f"{field}.{unknown[0]}" if field else unknown[0]
        raise ConfigError(name, "<unknown key>", known, hint=f"unknown key(s) {unknown}")


def _type_names(types: type | tuple[type, ...]) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    return "a value of type " + " or ".join(t.__name__ for t in ts)


def error_line(exc: BaseException, limit: int = 300) -> str:
    """The line of an exception worth showing a user: the last non-empty line of its message
    (a wrapped traceback ends with the original error), else the exception's type name."""
    from topnas.fileio import last_line

    return last_line(str(exc), limit=limit, empty=type(exc).__name__)
