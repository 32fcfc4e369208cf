"""A real, lean ``mlflow server`` for integration tests.

Usage::

    with mlflow_server(tmp_path) as uri:      # "http://127.0.0.1:<free port>"
        client = MlflowClient(tracking_uri=uri)

The server gets a SQLite backend and an ``--artifacts-destination`` under the given folder, one
uvicorn worker and no job runner (the defaults, 4 workers and a job runner, take several times the
memory and start time). It runs in its own process group, which is terminated (then killed) on
exit, so no worker is left behind. Its output goes to ``<folder>/server.log``; a failed start
raises with the log's tail.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from tests.helpers.sessions import tail

__all__ = ["mlflow_server", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(
    folder: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout_s: float = 90.0,
    attempts: int = 3,
) -> Iterator[str]:
    """Start ``mlflow server`` with its state under ``folder``; yield its ``http://`` URI.

    Retries on a new port if the picked one was taken meanwhile (up to ``attempts``).
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(attempts):
        chosen = port or free_port(host)
        proc, log_path = _start(folder, host, chosen, attempt)
        try:
            _wait_healthy(proc, f"http://{host}:{chosen}/health", timeout_s, log_path)
        except _AddressInUse as exc:
            _stop(proc)
            last_error = exc
            if port:
                break
            continue
        except BaseException:
            _stop(proc)
            raise
        try:
            yield f"http://{host}:{chosen}"
        finally:
            _stop(proc)
        return
    raise RuntimeError(f"mlflow server could not bind a port after {attempts} attempts") from last_error


class _AddressInUse(RuntimeError):
    pass


def _mlflow_command() -> list[str]:
    script = Path(sys.executable).with_name("mlflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]


def _start(folder: Path, host: str, port: int, attempt: int) -> tuple[subprocess.Popen, Path]:
    artifacts = folder / "mlartifacts"
    artifacts.mkdir(exist_ok=True)
    log_path = folder / ("server.log" if attempt == 0 else f"server.{attempt}.log")
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    cmd = _mlflow_command() + [
        "server",
        "--host", host,
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(artifacts),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, log_path


def _wait_healthy(proc: subprocess.Popen, url: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            end = tail(log_path)
            if "address already in use" in end.lower():
                raise _AddressInUse(end)
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{end}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"mlflow server not healthy at {url} after {timeout_s:.0f} s:\n{tail(log_path)}")


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    if pgid is not None:
        # Workers may outlive the parent: make sure the whole group is gone.
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
