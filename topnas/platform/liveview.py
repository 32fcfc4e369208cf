"""The compact live view of a sweep or a training run, drawn from the files the run already writes.

A sweep's view reads its folder only: ``trials.jsonl`` through :func:`topnas.platform.sweep.load_trials`
(finished, early-stopped, failed and infeasible trials, the front) and Tune's per-trial folders
(``tune/<trial id>/``, made when a trial starts: running = started and not in the ledger). A
training run's view reads the ``trainer_state.json`` of its newest checkpoint. Both also read what
the session log gained since the last tick, to say when Ray Train's workers wait for resources
(:class:`StartupWaits`); otherwise such a run only looks slow. Nothing here talks
to Ray or MLflow, so the view cannot slow or break the run; a file read half-written is read again
on the next tick.

:func:`read_sweep` + :func:`render_sweep` (and :func:`read_train` + :func:`render_train`) are pure
enough to test on a folder built by hand; :func:`watch` polls them on a thread and draws on a
:class:`~topnas.platform.console.Console`.
"""
from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topnas.platform.console import Console
from topnas.platform.objectives import ABANDONED_PREFIX, TrialStatus
from topnas.platform.pareto import finite_or_none
from topnas.platform.sweep.layout import SweepFolder

__all__ = ["FRONT_ROWS", "StartupWaits", "SweepSnapshot", "TrainSnapshot", "read_sweep", "read_train",
           "render_sweep", "render_train", "startup_wait_line", "trial_line", "watch", "watch_sweep", "watch_train"]

FRONT_ROWS = 8  # the live front shows at most this many members (fastest first); the final table has all
POLL_S = 1.0
_FINISHED = {TrialStatus.COMPLETED: "finished", TrialStatus.EARLY_STOPPED: "stopped", TrialStatus.FAILED: "failed",
             TrialStatus.INFEASIBLE: "infeasible"}


@dataclass
class SweepSnapshot:
    """What the view shows of a sweep at one moment."""

    name: str
    num_samples: int  # trained trials the sweep runs (infeasible proposals do not count)
    counts: dict[str, int]  # running, finished, stopped, failed, infeasible, abandoned (replaced on resume)
    front: list[tuple[str, float, float]]  # (variant id, val mIoU, latency ms), fastest first
    finished: list[dict[str, Any]] = field(default_factory=list)  # ledger rows, finish order

    @property
    def done(self) -> int:
        return self.counts["finished"] + self.counts["stopped"] + self.counts["failed"]


@dataclass
class TrainSnapshot:
    name: str
    max_iters: int
    iteration: int
    metrics: dict[str, Any]


# ----------------------------------------------------------------------------- sweeps
def read_sweep(sweep_dir: str | Path, name: str, num_samples: int) -> SweepSnapshot:
    """The sweep in ``sweep_dir`` now: counts by status, the front, the finished trials."""
    from topnas.platform.sweep import load_trials

    folder = Path(sweep_dir)
    df = load_trials(folder) if folder.is_dir() else None
    rows = [] if df is None or df.empty else df.to_dict("records")
    counts = {"running": 0, "finished": 0, "stopped": 0, "failed": 0, "infeasible": 0, "abandoned": 0}
    for r in rows:
        kind = _FINISHED.get(str(r["status"]), "failed")
        if kind == "failed" and str(r.get("reason") or "").startswith(ABANDONED_PREFIX):
            kind = "abandoned"
        counts[kind] += 1
    recorded = {str(r["trial_id"]) for r in rows}
    tune = SweepFolder(folder).tune
    if tune.is_dir():
        counts["running"] = sum(1 for p in tune.iterdir() if p.is_dir() and (p / "params.json").is_file()
                                and p.name not in recorded)
    front = sorted(((str(r["variant_id"]), float(r["val_mIoU"]), float(r["latency_ms"])) for r in rows
                    if bool(r["pareto"])), key=lambda t: (t[2], -t[1], t[0]))
    return SweepSnapshot(name, num_samples, counts, front, rows)


def render_sweep(snap: SweepSnapshot, elapsed_s: float, done_at_start: int = 0) -> list[str]:
    """The live block: progress, counts, elapsed/ETA, the front (fastest first, at most FRONT_ROWS)."""
    c = snap.counts
    lines = [
        (f"sweep {snap.name}: {snap.done}/{snap.num_samples} trials   elapsed {_clock(elapsed_s)}   "
         f"ETA {_eta(elapsed_s, snap.done - done_at_start, snap.num_samples - snap.done)}"),
        (f"  running {c['running']}   finished {c['finished']}   stopped {c['stopped']}   "
         f"infeasible {c['infeasible']}   failed {c['failed']}"
         + (f"   abandoned {c['abandoned']} (run again)" if c["abandoned"] else "")),
    ]
    if not snap.front:
        lines.append("  front: no finished trial yet")
        return lines
    width = max(len("variant"), *(len(v) for v, _, _ in snap.front))
    lines.append(f"  front ({len(snap.front)}):  {'variant':<{width}}    mIoU  latency ms")
    pad = " " * len(f"  front ({len(snap.front)}):  ")
    for variant, miou, ms in snap.front[:FRONT_ROWS]:
        lines.append(f"{pad}{variant:<{width}}  {miou:6.4f}  {ms:10.1f}")
    if len(snap.front) > FRONT_ROWS:
        lines.append(f"{pad}... {len(snap.front) - FRONT_ROWS} more")
    return lines


def trial_line(row: dict[str, Any]) -> str:
    """One finished trial, for the lines printed above the live block."""
    status = str(row["status"])
    miou, ms = finite_or_none(row.get("val_mIoU")), finite_or_none(row.get("latency_ms"))
    text = f"  trial {row['trial_id']}  {row['variant_id']}  {status:<13}"
    text += f"  mIoU {miou:.4f}" if miou is not None else "  mIoU    -  "
    text += f"  {ms:6.1f} ms" if ms is not None else "       - ms"
    if bool(row.get("pareto")):
        text += "  front"
    reason = str(row.get("reason") or "")
    if status in (TrialStatus.FAILED, TrialStatus.INFEASIBLE) and reason:
        text += f"  ({reason.splitlines()[0]})"
    return text


# Ray Train's controller, when a trial's workers cannot all be placed within its startup timeout
# (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S, 60 s by default); it retries without limit, so a sweep
# whose trials wait for CPUs that never come looks merely slow unless someone reads the log.
_STARTUP_TIMEOUT = re.compile(rb"worker group startup timed out after ([0-9.]+) seconds waiting for (\d+) workers")
WAIT_NOTE_EVERY_S = 300.0  # while trials keep waiting, say so again at most this often


class StartupWaits:
    """Ray Train's "worker group startup timed out" retries, read from the session log as it grows.

    Only the bytes appended since the last :meth:`poll` are read (a line cut by the read is kept for
    the next one), so a log of any size costs a tick no more than what was written meanwhile.
    :meth:`note` turns them into a console line, at most every ``every_s`` seconds.
    """

    def __init__(self, log_path: str | Path | None, fields: str, every_s: float = WAIT_NOTE_EVERY_S) -> None:
        self.path = Path(log_path) if log_path else None
        self.fields = fields  # the config fields that size a trial's or run's workers
        self.every_s = every_s
        self._offset = 0
        self._partial = b""
        self._waits: list[tuple[float, int]] = []
        self._noted_at: float | None = None

    def poll(self) -> list[tuple[float, int]]:
        """(timeout in s, workers asked for) of each matching log line since the last call (Ray logs
        one retry on several lines)."""
        if self.path is None:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        found = (_STARTUP_TIMEOUT.search(line) for line in lines)
        return [(float(m.group(1)), int(m.group(2))) for m in found if m]

    def note(self, console: Console, elapsed_s: float) -> None:
        """Print :func:`startup_wait_line` when retries were logged and the last note is old enough."""
        self._waits.extend(self.poll())
        if self._waits and (self._noted_at is None or elapsed_s - self._noted_at >= self.every_s):
            console.line(startup_wait_line(self._waits[-1], self.fields))
            self._waits.clear()
            self._noted_at = elapsed_s


def startup_wait_line(wait: tuple[float, int], fields: str) -> str:
    """The console's line for a Ray Train startup retry: what waits, for how long, what to check."""
    timeout_s, workers = wait
    return (f"  waiting for resources: {workers} Ray Train worker(s) could not all start within {timeout_s:g} s "
            f"and Ray keeps retrying. Other work may hold the CPUs/GPUs, or the cluster lacks them: see "
            f"{fields} and the log")


@contextlib.contextmanager
def watch_sweep(console: Console, sweep_dir: str | Path, name: str, num_samples: int) -> Iterator[None]:
    """Show the sweep's live view on ``console`` while the body runs (a resumed sweep too)."""
    folder = Path(sweep_dir)
    first = read_sweep(folder, name, num_samples)
    seen = {str(r["trial_id"]) for r in first.finished}
    done_at_start = first.done
    startup = StartupWaits(console.log_path, "proxy.workers_per_trial, proxy.cpus_per_worker, max_concurrent")

    def tick(elapsed: float) -> list[str]:
        snap = read_sweep(folder, name, num_samples)
        if SweepFolder(folder).tune.is_dir():  # under way: name the log (a bad input prints nothing)
            console.started = True
            console.announce_log()
        for row in snap.finished:
            if str(row["trial_id"]) not in seen:
                seen.add(str(row["trial_id"]))
                console.line(trial_line(row))
        startup.note(console, elapsed)
        return render_sweep(snap, elapsed, done_at_start)

    with watch(console, tick):
        yield


# ----------------------------------------------------------------------------- training runs
def read_train(run_dir: str | Path, name: str, max_iters: int) -> TrainSnapshot:
    """Iteration and metrics of the newest checkpoint under ``run_dir`` (0 and {} before the first)."""
    from topnas.platform.train.training_state import STATE_FILE

    best: tuple[int, dict[str, Any]] = (0, {})
    for path in Path(run_dir).glob(f"checkpoint_*/**/{STATE_FILE}"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written
        it = int(data.get("iteration") or 0)
        if it >= best[0]:
            best = (it, dict(data.get("metrics") or {}))
    return TrainSnapshot(name, max_iters, best[0], best[1])


def render_train(snap: TrainSnapshot, elapsed_s: float, start_iteration: int = 0) -> list[str]:
    pct = 100.0 * snap.iteration / snap.max_iters if snap.max_iters else 0.0
    line = (f"train {snap.name}: iteration {snap.iteration}/{snap.max_iters} ({pct:.0f}%, at the last checkpoint)"
            f"   elapsed {_clock(elapsed_s)}   ETA "
            f"{_eta(elapsed_s, snap.iteration - start_iteration, snap.max_iters - snap.iteration)}")
    miou = finite_or_none(snap.metrics.get("val_mIoU"))
    return [line] + ([f"  val mIoU {miou:.4f}"] if miou is not None else [])


@contextlib.contextmanager
def watch_train(console: Console, run_dir: str | Path, name: str, max_iters: int) -> Iterator[None]:
    start = read_train(run_dir, name, max_iters).iteration
    startup = StartupWaits(console.log_path, "scaling.num_workers, scaling.cpus_per_worker, scaling.use_gpu")

    def tick(elapsed: float) -> list[str]:
        snap = read_train(run_dir, name, max_iters)
        if snap.iteration > start or Path(run_dir).is_dir():
            console.started = True
            console.announce_log()
        startup.note(console, elapsed)
        return render_train(snap, elapsed, start)

    with watch(console, tick):
        yield


# ----------------------------------------------------------------------------- the polling thread
@contextlib.contextmanager
def watch(console: Console, tick: Callable[[float], list[str]], poll_s: float = POLL_S) -> Iterator[None]:
    """Call ``tick(elapsed)`` (it prints new permanent lines, returns the live block) every ``poll_s`` on
    a daemon thread while the body runs, and once at the end.

    On a terminal the block is redrawn every tick. Elsewhere (not a TTY: no cursor control) the
    progress line follows each batch of new permanent lines, progress and counts come every
    ``PLAIN_EVERY_S`` seconds, and the whole block once at the end, so a CI log stays short.
    """
    t0 = time.monotonic()
    stop = threading.Event()
    last_plain = [0.0]

    def safe_tick(final: bool = False) -> None:
        elapsed = time.monotonic() - t0
        written = console.lines_written
        try:
            block = tick(elapsed)
        except Exception:  # noqa: BLE001 - a view must never break the run; the next tick reads again
            return
        if console.tty or final:
            console.block(block)
        elif elapsed - last_plain[0] >= PLAIN_EVERY_S:  # a CI log: progress and counts now and then
            console.block(block[:2])
            last_plain[0] = elapsed
        elif console.lines_written != written:  # ... and the progress line after each finished trial
            console.block(block[:1])

    def loop() -> None:
        while not stop.wait(poll_s):
            safe_tick()

    thread = threading.Thread(target=loop, name="topnas-liveview", daemon=True)
    thread.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        thread.join(timeout=5.0)
        if ok or console.started:
            safe_tick(final=True)
            console.close_block()
        else:  # failed before anything ran: the error alone should be on screen
            console.clear_block()


PLAIN_EVERY_S = 30.0


def _clock(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _eta(elapsed_s: float, done: int, left: int) -> str:
    """Remaining time at the pace of this process so far; '-' before the first unit of work."""
    if left <= 0:
        return "0:00"
    if done <= 0:
        return "-"
    return _clock(elapsed_s / done * left)

