"""Writes that a kill cannot tear: the old file or the new one, never half of one.

Checkpoints, sweep state, predictors and exported models are all written through here, so the
rule "nothing already computed is lost by a crash" has one implementation.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "last_line"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".partial") -> Iterator[Path]:
    """Yield a sibling temporary path; on success it replaces ``path`` in one rename, on error it is removed.

    For writers that want a file name (``torch.save``, ``torch.onnx.export``, csv writers).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (fsync'd first unless ``fsync=False``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def last_line(text: str, limit: int = 300, empty: str = "") -> str:
    """The last non-empty line of ``text`` (shortened to ``limit``): the line of a traceback or a
    tool's output that says what went wrong, for one-line error messages and run tags."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    if not lines:
        return empty
    ln = lines[-1]
    return ln if len(ln) <= limit else ln[: limit - 3] + "..."
