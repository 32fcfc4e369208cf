"""Scoped environment variables: set for a block, then restored exactly as they were.

Ray reads some knobs only from the driver's environment and MLflow's HTTP client reads its retry
settings per request from ``os.environ``, so these have to be process environment, not arguments.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

__all__ = ["env_default", "scoped_environ"]


@contextlib.contextmanager
def scoped_environ(**values: str) -> Iterator[None]:
    """Set ``values`` for the duration; afterwards every name has its earlier value (or is unset again)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def env_default(name: str, value: str) -> Iterator[None]:
    """Set ``name`` for the duration unless the user set it; Ray propagates it to its controller."""
    if name in os.environ:
        yield
        return
    with scoped_environ(**{name: value}):
        yield
