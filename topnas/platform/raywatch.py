"""A local Ray started by a driver must not outlive it.

``ray.init()`` without an address starts GCS, raylet, dashboard and their agents as children of
the driver. When the driver is SIGKILLed most of them follow it, but the raylet's
``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` stay alive (checked with Ray 2.60: still
running 20 s after the kill, re-parented to init), and after a normal ``ray.shutdown()`` some
linger for seconds. :func:`watch_local_ray` starts a tiny watchdog process right after
``ray.init``: it learns the Ray processes (the driver's children at that moment and, while the
driver lives, their descendants) and holds the read end of a pipe whose write end only the driver
has. When the pipe closes - the driver called :meth:`LocalRayWatch.release` after
``ray.shutdown()``, exited, or was killed - it gives Ray ``GRACE_S`` seconds to stop by itself,
then sends SIGTERM and, ``KILL_AFTER_S`` later, SIGKILL to exactly those processes that are still
alive (matched by pid and start time, so a reused pid is never hit). Linux only (``/proc``);
elsewhere it does nothing.

A worker the raylet forks in the last moment before it dies is re-parented to init before any
scan sees it as a descendant (a CI run left one such ``python`` behind). Every process the raylet
starts carries ``RAY_RAYLET_PID=<raylet pid>`` in its environment, so from the driver's exit on
the watchdog also adopts any process of this user whose environment names one of its root pids,
and it keeps re-scanning until the SIGKILL round finds nothing new.
"""
from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

__all__ = ["GRACE_S", "KILL_AFTER_S", "LocalRayWatch", "descendants", "owned_ray", "ray_orphans", "start_local_ray",
           "watch_local_ray"]

GRACE_S = 2.0
KILL_AFTER_S = 3.0
_POLL_S = 1.0
_SCAN_S = 0.2  # re-scan interval once the driver is gone
_HAS_PROC = Path("/proc/self/stat").exists()


_LIVE: list["LocalRayWatch"] = []  # keeps every watch (and its pipe) open until released or the process ends


class LocalRayWatch:
    """Handle of a running watchdog; :meth:`release` after ``ray.shutdown()`` ends the watch now.

    The handle is also kept in a module list: a handle dropped by its caller must not close the
    pipe (that would tell the watchdog the driver is gone while Ray still serves it).
    """

    def __init__(self, proc: subprocess.Popen | None) -> None:
        self.proc = proc
        if proc is not None:
            _LIVE.append(self)

    def release(self, wait_s: float = GRACE_S + KILL_AFTER_S + 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        if self in _LIVE:
            _LIVE.remove(self)


def start_local_ray(**init_kwargs: object) -> LocalRayWatch:
    """``ray.init(**init_kwargs)`` (a local Ray) plus its watchdog; release it after ``ray.shutdown()``."""
    import ray

    before = set(descendants(os.getpid(), recursive=False)) if _HAS_PROC else set()
    ray.init(**init_kwargs)
    return watch_local_ray(before)


@contextlib.contextmanager
def owned_ray(local: bool, **init_kwargs: object) -> Iterator[None]:
    """Ray for the block: a connected one is left alone; else ``ray.init(**init_kwargs)`` and, at exit, shutdown.

    ``local``: the init starts a Ray of ours, watched by :func:`start_local_ray`. Shut down when the
    block ends, not at process exit: Ray forwards its workers' last log lines until it stops, and
    after a command's console has handed the terminal back they would land below its last line.
    """
    import ray

    if ray.is_initialized():  # a sweep trial, a test, a caller's own Ray: theirs to shut down
        yield
        return
    watch = None
    if local:
        watch = start_local_ray(**init_kwargs)
    else:
        ray.init(**init_kwargs)
    try:
        yield
    finally:
        ray.shutdown()
        if watch is not None:
            watch.release()


def watch_local_ray(before: set[int]) -> LocalRayWatch:
    """Start the watchdog for the children this driver has now and did not have in ``before``."""
    if not _HAS_PROC:
        return LocalRayWatch(None)
    roots = {pid: start for pid, start in descendants(os.getpid(), recursive=False).items() if pid not in before}
    if not roots:
        return LocalRayWatch(None)
    # Run as an isolated file, not `-m topnas...`: the watchdog needs nothing but the standard library.
    proc = subprocess.Popen(
        [sys.executable, "-I", str(Path(__file__).resolve()), *(f"{pid}:{start}" for pid, start in roots.items())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        close_fds=True)
    return LocalRayWatch(proc)


def descendants(pid: int | set[int], recursive: bool = True) -> dict[int, int]:
    """``{pid: start time}`` of the children (and, if recursive, all descendants) of ``pid``, from /proc.

    ``pid`` may be a set: one pass over /proc then serves them all.
    """
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    out: dict[int, int] = {}
    frontier = list(pid) if isinstance(pid, set) else [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, start) in table.items():
            if ppid == parent and child not in out:
                out[child] = start
                if recursive:
                    frontier.append(child)
    return out


def _stat(pid: int) -> tuple[int, int] | None:
    """``(ppid, start time)`` of a live, non-zombie process, else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def _alive(known: dict[int, int]) -> dict[int, int]:
    out = {}
    for pid, start in known.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            out[pid] = start
    return out


def _signal(known: dict[int, int], sig: int) -> None:
    for pid in _alive(known):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def ray_orphans(roots: dict[int, int]) -> dict[int, int]:
    """``{pid: start time}`` of live processes whose environment says a root started them.

    Ray sets ``RAY_RAYLET_PID`` in every worker and agent the raylet spawns; a process started
    before the root itself cannot be its child, which rules out a reused pid.
    """
    wanted = {f"RAY_RAYLET_PID={pid}".encode(): start for pid, start in roots.items()}
    out: dict[int, int] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            env = set(Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"))
        except OSError:  # gone, or another user's
            continue
        hits = [start for key, start in wanted.items() if key in env]
        stat = _stat(int(entry)) if hits else None
        if stat is not None and stat[1] >= min(hits):
            out[int(entry)] = stat[1]
    return out


def _scan(known: dict[int, int], roots: dict[int, int]) -> None:
    """Add the descendants of every live known process and the roots' orphaned Ray processes."""
    alive = set(_alive(known))
    if alive:
        known.update(descendants(alive))
    known.update(ray_orphans(roots))


def _settle(known: dict[int, int], roots: dict[int, int], seconds: float, sig: int | None = None) -> None:
    """For ``seconds``: keep scanning (and send ``sig`` to newcomers); return early once all are gone."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = set(known)
        _scan(known, roots)
        if sig is not None:
            _signal({p: s for p, s in known.items() if p not in before}, sig)
        if not _alive(known):
            return
        time.sleep(_SCAN_S)


def _main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the driver's terminal is the driver's
    known = dict(tuple(int(x) for x in arg.split(":")) for arg in argv)  # type: ignore[misc]
    roots = dict(known)
    fd = sys.stdin.fileno()
    while True:
        alive = set(_alive(roots))
        if alive:
            known.update(descendants(alive))
        ready, _, _ = select.select([fd], [], [], _POLL_S)
        if ready and not os.read(fd, 4096):
            break  # EOF: the driver released us, exited or died
    _settle(known, roots, GRACE_S)
    _scan(known, roots)
    _signal(known, signal.SIGTERM)
    _settle(known, roots, KILL_AFTER_S, signal.SIGTERM)
    for _ in range(3):  # SIGKILL, then catch anything forked meanwhile
        _scan(known, roots)
        if not _alive(known):
            break
        _signal(known, signal.SIGKILL)
        time.sleep(_SCAN_S)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as the watchdog process
    sys.exit(_main(sys.argv[1:]))
