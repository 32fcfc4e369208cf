"""``python -m topnas.platform.latency.native OUT_DIR``: build ort_bench, print binary and library."""
from __future__ import annotations

import sys

from topnas.platform.latency.native import build_ort_bench

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m topnas.platform.latency.native OUT_DIR")
    built = build_ort_bench(sys.argv[1])
    print(f"benchmark_binary: {built.binary}\nlibraries: [{built.library}]\nruntime_version: '{built.version}'")
