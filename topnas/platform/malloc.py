"""glibc malloc settings that make eager PyTorch on CPU faster, applied to the CLI and Ray workers.

With glibc's defaults every large activation is an ``mmap``/``munmap`` pair and freed memory is
trimmed back to the kernel, so each forward pass page-faults its buffers in again. A higher mmap
threshold, no trimming and a large top pad keep the memory in the heap (``benchmarks/malloc_speed.py``
measures the effect on this machine). glibc reads these variables once, when the process starts:
setting ``os.environ`` later does nothing for the running process. So:

* the ``topnas`` command re-executes itself once with them (:func:`reexec_with_malloc_env`);
* Ray Train workers get them through ``runtime_env`` env vars (:func:`malloc_env`), and a local Ray
  started by the CLI inherits them.

A variable the user set is never overridden; ``TOPNAS_MALLOC_DEFAULTS=0`` turns all of this off.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping

__all__ = ["MALLOC_ENV", "OPT_OUT", "malloc_env", "reexec_with_malloc_env", "worker_malloc_env"]

MALLOC_ENV: Mapping[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",  # 32 MiB: activations stay in the heap
    "MALLOC_TRIM_THRESHOLD_": "4000000000",  # never hand freed heap back to the kernel mid-run
    "MALLOC_TOP_PAD_": "536870912",  # grow the heap in 512 MiB steps
}
OPT_OUT = "TOPNAS_MALLOC_DEFAULTS"


def _enabled(environ: Mapping[str, str]) -> bool:
    return sys.platform.startswith("linux") and environ.get(OPT_OUT, "1").strip().lower() not in ("0", "false", "no")


def malloc_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings ``environ`` (default ``os.environ``) lacks; empty when opted out or not on Linux."""
    env = os.environ if environ is None else environ
    if not _enabled(env):
        return {}
    return {k: v for k, v in MALLOC_ENV.items() if k not in env}


def worker_malloc_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """All settings for a Ray worker's ``runtime_env`` (the user's own values win; empty when opted out)."""
    env = os.environ if environ is None else environ
    return {k: env.get(k, v) for k, v in MALLOC_ENV.items()} if _enabled(env) else {}


def reexec_with_malloc_env() -> None:
    """Restart this process with :data:`MALLOC_ENV` set, once (a no-op when they are set or opted out)."""
    missing = malloc_env()
    if not missing or not getattr(sys, "orig_argv", None):
        return
    env = {**os.environ, **missing}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
