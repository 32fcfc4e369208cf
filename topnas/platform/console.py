"""The terminal of `topnas sweep`, `train` and `demo`: our lines on screen, Ray's and MLflow's in a file.

Ray (its workers, raylet, the core worker written in C++), Tune (config boxes, "Trial status"
tables) and MLflow (database migrations) print hundreds of lines a person does not need to follow
a run. :func:`session` sends everything written to file descriptors 1 and 2 to one log file under
the run folder - which catches C++ writers and child processes too, not only Python loggers - and
hands the command a :class:`Console` that writes to the real terminal: the compact live view
(:mod:`topnas.platform.liveview`), one line per finished trial, warnings and errors of topnas
itself. With ``verbose=True`` nothing is redirected (today's full output).

A bad input (a :class:`~topnas.errors.TopnasError` raised before the run got under way) leaves nothing
behind: the log file and the folders the session made for it are removed. Any other failure keeps
the log and names it on stderr after the terminal is restored, so the traceback and the error's
own line still reach the console in full.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from topnas.errors import TopnasError

__all__ = ["LOG_DIR", "Console", "session"]

LOG_DIR = "logs"
_CLEAR_LINE_DOWN = "\x1b[2K\x1b[1B"  # blank this line, cursor one line down (never scrolls)


class Console:
    """Where a command's own lines go; on a terminal, a block of lines that is redrawn in place.

    :meth:`line` prints a permanent line (above the live block); :meth:`block` replaces the live
    block. When the stream is not a terminal (CI logs, files) there is no cursor control: lines are
    printed as they come and a block only when it differs from the last one printed.
    """

    def __init__(self, stream: IO[str], *, tty: bool | None = None, log_path: Path | None = None) -> None:
        self.stream = stream
        self.tty = _isatty(stream) if tty is None else tty
        self.log_path = log_path
        self.started = False  # set by a live view once the run is under way (Ray started, trials ran)
        self._announced = False
        self.lines_written = 0  # permanent lines so far (a plain-text view prints its block after new ones)
        self._block: list[str] = []
        self._lock = threading.Lock()

    def echo(self, text: str = "") -> None:
        """A permanent line (the signature of ``print`` for one string, for ``run_demo(echo=...)``)."""
        self.line(text)

    def announce_log(self) -> None:
        """Name the log file (and Ray's own log folder, when a Ray runs here) once per session."""
        if self.log_path is None or self._announced:
            return
        self._announced = True
        ray_logs = _ray_logs_dir()
        self.line(f"logs of Ray, Tune and MLflow: {self.log_path}" + (f" (Ray's per-process logs: {ray_logs})"
                                                                       if ray_logs else "") + "; -v shows them here")

    def line(self, text: str) -> None:
        with self._lock:
            self._erase()
            self.stream.write(text + "\n")
            self.lines_written += 1
            self._draw()

    def block(self, lines: list[str]) -> None:
        with self._lock:
            if not self.tty and lines == self._block:
                return
            self._erase()
            self._block = list(lines)
            if self.tty:  # taller than the terminal, the lines scrolled off could not be redrawn
                self._block = self._block[:max(1, _size(self.stream).lines - 1)]
                self._draw()
            else:
                self.stream.write("".join(f"{x}\n" for x in lines))
                self.stream.flush()

    def close_block(self) -> None:
        """Leave the current block on screen as plain lines; the next :meth:`block` starts below it."""
        with self._lock:
            self._block = []

    def clear_block(self) -> None:
        """Remove the live block from the screen (on a terminal; printed lines cannot be taken back)."""
        with self._lock:
            self._erase()
            self._block = []
            _flush(self.stream)

    def _erase(self) -> None:
        """Blank the block's lines one by one and return to its first line.

        Not "clear to the end of the screen": tmux (``scroll-on-clear``) treats that, from the
        top-left corner, as clearing the screen and pushes the block into the scrollback each time.
        """
        if self.tty and self._block:
            n = len(self._block)
            self.stream.write(f"\r\x1b[{n}A" + _CLEAR_LINE_DOWN * n + f"\x1b[{n}A")

    def _draw(self) -> None:
        if self.tty and self._block:
            width = _size(self.stream).columns  # a wrapped line would break the count of lines to move up
            self.stream.write("".join(f"{x[:width - 1]}\n" for x in self._block))
        self.stream.flush()


@contextlib.contextmanager
def session(command: str, log_dir: str | os.PathLike[str], verbose: bool = False) -> Iterator[Console]:
    """Run a command's body with Ray's, Tune's and MLflow's output in ``<log_dir>/<command>-<time>.log``.

    Yields the :class:`Console` for the command's own lines. ``verbose`` keeps everything on the
    terminal (the console then prints plain lines, since foreign lines would break a redrawn block).
    """
    if verbose:
        yield Console(sys.stdout, tty=False)
        return
    log_dir = Path(log_dir)
    made = _missing_parents(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log = open(path, "ab", buffering=0)
    for fd in (1, 2):
        os.dup2(log.fileno(), fd)
    out = _terminal(sys.stdout, saved[1])
    err = _terminal(sys.stderr, saved[2])
    console = Console(out, log_path=path)
    # topnas's own warnings and errors stay on screen (through the console on a terminal, above its block)
    handler = _ConsoleHandler(console) if console.tty else logging.StreamHandler(err)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    ours = logging.getLogger("topnas")
    ours.addHandler(handler)
    failed: BaseException | None = None
    try:
        yield console
    except BaseException as exc:
        failed = exc
        raise
    finally:
        ours.removeHandler(handler)
        for stream in (sys.stdout, sys.stderr, out, err):
            _flush(stream)
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        log.close()
        for stream in {out, err} - {sys.stdout, sys.stderr}:
            stream.close()
        if isinstance(failed, TopnasError) and not console.started:  # bad input: nothing written
            path.unlink(missing_ok=True)
            for folder in made:  # innermost first
                with contextlib.suppress(OSError):
                    folder.rmdir()
        elif failed is not None and not isinstance(failed, KeyboardInterrupt):
            print(f"the full log of Ray, Tune and MLflow: {path}", file=sys.stderr, flush=True)


class _ConsoleHandler(logging.Handler):
    """Log records as permanent console lines, so a redrawn block is not torn by them."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.line(self.format(record))
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def _terminal(stream: IO[str], saved_fd: int) -> IO[str]:
    """The terminal behind ``stream`` once fd 1/2 point at the log (``stream`` itself when it is no fd,
    e.g. a test's StringIO)."""
    try:
        real = stream.fileno() in (1, 2)
    except (AttributeError, OSError, io.UnsupportedOperation):
        real = False
    if not real:
        return stream
    return open(os.dup(saved_fd), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8",
                errors="replace")


def _missing_parents(folder: Path) -> list[Path]:
    out = []
    while not folder.exists():
        out.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    return out


def _flush(stream: IO[str]) -> None:
    with contextlib.suppress(Exception):
        stream.flush()


def _ray_logs_dir() -> str:
    ray = sys.modules.get("ray")
    try:
        return str(ray._private.worker._global_node.get_logs_dir_path()) if ray and ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - a private API; the name is only a hint
        return ""


def _size(stream: IO[str]) -> os.terminal_size:
    try:
        return os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return os.terminal_size((200, 50))


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
