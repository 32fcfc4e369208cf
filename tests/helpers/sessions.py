"""Child processes in their own session, for the tests that start, kill and resume ``topnas`` drivers.

A driver that starts a local Ray (or is SIGKILLed) leaves processes behind in its session; killing
the whole process group afterwards is what keeps one test's Ray from leaking into the next.
"""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["kill_session", "run_to_end", "start_in_session", "tail"]


def tail(path: Path, n: int = 4000) -> str:
    """The end of a log for an assertion message."""
    return path.read_text(errors="replace")[-n:] if path.exists() else "<no log>"


def kill_session(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a session started here); gone already is fine."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_in_session(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen:
    """Start ``argv`` from the repository root in a new session, stdout and stderr to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(list(argv), cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def run_to_end(argv: Sequence[str], log: Path, env: Mapping[str, str], timeout_s: float) -> int:
    """Run ``argv`` (e.g. ``topnas sweep --resume``) to its end; then kill what its session left.

    Returns the exit code; raises :class:`subprocess.TimeoutExpired` after ``timeout_s``.
    """
    proc = start_in_session(argv, log, env)
    try:
        return proc.wait(timeout=timeout_s)
    finally:
        kill_session(proc.pid)
