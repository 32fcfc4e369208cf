"""Child processes in their own session, for the tests that start, kill and resume ``topnas`` drivers.

A driver that starts a local Ray (or is SIGKILLed) leaves processes behind in its session; killing
the whole process group afterwards is what keeps one test's Ray from leaking into the next.
"""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["kill_session", "run_to_end", "start_in_session", "tail"]


def tail(path: Path, n: int = 4000) -> str:
    """The end of a log for an assertion message (``<no log>`` when it cannot be read)."""
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "<no log>"


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


def run_to_end(argv: Sequence[str], log: Path, env: Mapping[str, str], timeout_s: float,
               diagnose: Callable[[], str] | None = None) -> int:
    """Run ``argv`` (e.g. ``topnas sweep --resume``) to its end; then kill what its session left.

    Returns the exit code. After ``timeout_s`` the test fails with the end of ``log`` and whatever
    ``diagnose()`` says (say, the cluster's actors and the sweep's own log), gathered while the hung
    process is still alive: a bare TimeoutExpired tells nothing about where it hung.
    """
    proc = start_in_session(argv, log, env)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        extra = ""
        if diagnose is not None:
            try:
                extra = diagnose()
            except Exception as exc:  # noqa: BLE001 - the timeout is the failure to report
                extra = f"<diagnose failed: {exc!r}>"
        pytest.fail(f"{' '.join(argv[-4:])} still running after {timeout_s:.0f} s\n--- its log:\n{tail(log)}"
                    f"\n{extra}", pytrace=False)
    finally:
        kill_session(proc.pid)
