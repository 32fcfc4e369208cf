"""glibc malloc defaults: what the CLI re-executes with and what Ray workers get."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from topnas.platform.malloc import MALLOC_ENV, OPT_OUT, malloc_env, worker_malloc_env

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings apply on Linux only")


@linux
def test_missing_settings_only_and_the_users_values_win():
    user = {"MALLOC_TOP_PAD_": "1"}
    assert malloc_env(user) == {k: v for k, v in MALLOC_ENV.items() if k != "MALLOC_TOP_PAD_"}
    assert worker_malloc_env(user) == {**MALLOC_ENV, "MALLOC_TOP_PAD_": "1"}
    assert malloc_env({**MALLOC_ENV}) == {}


@linux
@pytest.mark.parametrize("value", ["0", "false", "No"])
def test_opt_out(value):
    assert malloc_env({OPT_OUT: value}) == {} and worker_malloc_env({OPT_OUT: value}) == {}


@linux
def test_the_cli_process_runs_with_the_settings():
    """`python -m topnas` re-executes itself once: the running interpreter sees the settings."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV and k != OPT_OUT}
    code = ("import os, sys, topnas.platform.cli as c; c.build_parser = lambda: (print({k: os.environ.get(k) "
            "for k in sorted(%r)}), sys.exit(0)); c.main()" % sorted(MALLOC_ENV))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str({k: MALLOC_ENV[k] for k in sorted(MALLOC_ENV)})
    off = subprocess.run([sys.executable, "-c", code], env={**env, OPT_OUT: "0"}, capture_output=True, text=True,
                         timeout=120)
    assert off.stdout.strip() == str({k: None for k in sorted(MALLOC_ENV)})
