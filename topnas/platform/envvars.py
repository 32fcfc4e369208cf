"""Scoped environment defaults (Ray reads some knobs only from the environment of the driver)."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

__all__ = ["env_default"]


@contextlib.contextmanager
def env_default(name: str, value: str) -> Iterator[None]:
    """Set ``name`` for the duration unless the user set it; Ray propagates it to its controller."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
