"""Build ``ort_bench``, a compiled ONNX Runtime benchmark, against the library in the onnxruntime wheel.

Why: the adb harness should be tested with a real benchmark executable whose output it has never
seen, and a user without an Android build of ``onnxruntime_perf_test`` can still dry-run the whole
phone workflow on a Linux host (or an ARM Linux board). ``ort_bench`` speaks the subset of
``onnxruntime_perf_test``'s command line that :mod:`topnas.platform.latency.adb` sends and prints
the same summary format (see ``ort_bench.c``).

The wheel ships ``libonnxruntime.so.<version>`` but no headers; ``ort_c_api_min.h`` declares the
few C API entries used. :func:`build_ort_bench` compiles with the host C compiler and puts a copy
of the library under its SONAME (``libonnxruntime.so.1``) next to the binary, so both can be
pushed to a device and found through ``LD_LIBRARY_PATH``::

    python -m topnas.platform.latency.native build/ort_bench      # prints the two paths
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from topnas.errors import ConfigError, TopnasError

__all__ = ["OrtBench", "build_ort_bench", "ort_library", "SOURCE"]

SOURCE = Path(__file__).with_name("ort_bench.c")


@dataclass(frozen=True)
class OrtBench:
    binary: Path
    library: Path  # named by its SONAME, to be pushed next to the binary
    version: str  # the onnxruntime version the library belongs to


def ort_library() -> tuple[Path, str]:
    """The ONNX Runtime shared library of the installed wheel and its version."""
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise TopnasError("onnxruntime is not installed; it provides libonnxruntime.so") from exc
    capi = Path(onnxruntime.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime.so.*"))
    if not libs:
        raise TopnasError(f"no libonnxruntime.so.* in {capi}; this onnxruntime build has no C library")
    return libs[0], onnxruntime.__version__


def build_ort_bench(out_dir: str | os.PathLike[str], cc: str | None = None) -> OrtBench:
    """Compile ``ort_bench`` into `out_dir` (with ``libonnxruntime.so.<major>`` beside it)."""
    compiler = cc or os.environ.get("CC") or "gcc"
    if shutil.which(compiler) is None:
        raise ConfigError("cc", compiler, "a C compiler on PATH (gcc or clang)")
    lib, version = ort_library()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    soname = out / f"libonnxruntime.so.{version.split('.')[0]}"
    if not soname.exists() or soname.stat().st_size != lib.stat().st_size:
        shutil.copyfile(lib, soname)
    binary = out / "ort_bench"
    cmd = [compiler, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(SOURCE.parent), "-o", str(binary),
           str(SOURCE), str(soname)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
        raise TopnasError(f"building ort_bench failed (rc {proc.returncode}): {' '.join(cmd)}: {first}")
    return OrtBench(binary, soname, version)
