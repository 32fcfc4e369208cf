"""Tables of end-to-end latencies of a public NAS space on one device (``arch,latency_ms`` CSV).

This is the format of the public ARM-phone data (one architecture a row, one latency in ms, batch
1). Reading validates everything before any fitting, so a bad file fails with one line that names
the file, the row and what is allowed: the header, finite positive latencies, architectures of the
declared space (an architecture of the other space is named as such), no duplicates.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topnas.errors import ConfigError
from topnas.platform.latency.spaces import SPACES, get_space

__all__ = ["HEADER", "ArchTable", "read_arch_table", "device_name"]

HEADER = ["arch", "latency_ms"]


@dataclass(frozen=True)
class ArchTable:
    """One device's measurements of `space` architectures."""

    space: str
    device: str
    path: str
    archs: tuple[str, ...]
    latency_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.archs)


def device_name(path: str | Path, space: str) -> str:
    """``nb201_pixel3.csv`` -> ``pixel3`` (the file stem without the space prefix)."""
    stem = Path(path).stem
    return stem[len(space) + 1:] if stem.startswith(space + "_") else stem


def read_arch_table(path: str | Path, space: str, device: str | None = None) -> ArchTable:
    """Read and validate `path` as latencies of `space` architectures."""
    mod = get_space(space)
    p = Path(path)
    if not p.is_file():
        raise ConfigError("table", str(p), "an existing CSV file with header arch,latency_ms")
    archs: list[str] = []
    lat: list[float] = []
    first_row: dict[str, int] = {}
    with p.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != HEADER:
            raise ConfigError(f"{p}: header", ",".join(header or []), ",".join(HEADER))
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise ConfigError(f"{p}:{line}", ",".join(row), "two fields: arch,latency_ms")
            arch, value = row[0].strip(), row[1].strip()
            try:
                ms = float(value)
            except ValueError:
                raise ConfigError(f"{p}:{line}: latency_ms", value, "a number > 0") from None
            if not math.isfinite(ms) or ms <= 0:
                raise ConfigError(f"{p}:{line}: latency_ms", value, "a finite number > 0")
            try:
                mod.parse(arch)
            except ValueError as exc:
                others = [n for n, m in SPACES.items() if n != space and _parses(m, arch)]
                hint = f"this is a {others[0]} architecture: pass --space {others[0]}" if others else str(exc)
                raise ConfigError(f"{p}:{line}: arch", arch[:80], f"a {space} architecture", hint=hint) from None
            if arch in first_row:
                raise ConfigError(f"{p}:{line}: arch", arch[:80], "each architecture once",
                                  hint=f"duplicate of row {first_row[arch]}")
            first_row[arch] = line
            archs.append(arch)
            lat.append(ms)
    if not archs:
        raise ConfigError(f"{p}", "no rows", "at least one arch,latency_ms row")
    return ArchTable(space, device or device_name(p, space), str(p), tuple(archs), np.asarray(lat, dtype=float))


def _parses(mod, arch: str) -> bool:
    try:
        mod.parse(arch)
        return True
    except ValueError:
        return False
