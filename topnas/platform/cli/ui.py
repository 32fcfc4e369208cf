"""`topnas ui SWEEP`: the MLflow UI on a sweep's tracking store and optuna-dashboard on its study.

Both are ordinary servers started as child processes, each in its own process group so that their
worker processes (uvicorn's, bottle's) stop with them: Ctrl-C (SIGINT, even when inherited as
ignored, or SIGTERM/SIGHUP) here terminates both groups. Their own logs go to files under
``<runs>/logs/ui/``; the console shows the URLs, and the log's last line when a server fails to start.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from topnas.errors import ConfigError

EPILOG = """examples:
  topnas ui demo_fixture                       # MLflow UI on :5000, optuna-dashboard on :8080
  topnas ui demo_fixture --port 5001 --dashboard-port 8081
  topnas ui runs/sweeps/demo_fixture --host 0.0.0.0   # reachable from other machines

A sweep tracked on an MLflow server (http://...) is not served again: its URL is printed.
optuna-dashboard is started when it is installed (`pip install optuna-dashboard`).
"""
START_TIMEOUT_S = 120.0  # a cold `mlflow ui` on a busy 2-core host takes ~10-30 s


@dataclass
class Server:
    """One started server: its process (a process-group leader), URL and log file."""

    name: str
    proc: subprocess.Popen
    url: str
    probe: str
    log: Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="MLflow UI and optuna-dashboard on a sweep",
                       description="Start the MLflow UI on a sweep's tracking store and, when installed, "
                                   "optuna-dashboard on its Optuna study; print both URLs. Ctrl-C stops both.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (under <runs>/sweeps) or sweep folder")
    p.add_argument("--port", type=int, default=5000, help="MLflow UI port (default 5000; 0: any free port)")
    p.add_argument("--dashboard-port", type=int, default=8080,
                   help="optuna-dashboard port (default 8080; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--storage", help="sweeps folder (default <runs>/sweeps)")
    p.set_defaults(func=_ui)


def _ui(args: argparse.Namespace) -> int:
    from topnas.platform.paths import runs_root
    from topnas.platform.sweep.layout import OPTUNA_FILE, SweepState, resolve_sweep_dir
    from topnas.platform.tracking import UI_MODE_QUERY  # opens in model-training mode, not GenAI

    sweep_dir = resolve_sweep_dir(args.sweep, storage=args.storage)
    state = SweepState.load(sweep_dir)
    uri = state.tracking_uri
    served = not uri.startswith(("http://", "https://", "databricks"))
    optuna_db = sweep_dir / OPTUNA_FILE
    dashboard = importlib.util.find_spec("optuna_dashboard") is not None and optuna_db.is_file()
    ports = {}
    if served:
        ports["--port"] = _free_port("--port", args.host, args.port)
    if dashboard:
        ports["--dashboard-port"] = _free_port("--dashboard-port", args.host, args.dashboard_port)
        if served and ports["--dashboard-port"] == ports["--port"]:
            raise ConfigError("--dashboard-port", args.dashboard_port, f"a port other than --port {args.port}")

    logs = runs_root() / "logs" / "ui"
    if served or dashboard:
        logs.mkdir(parents=True, exist_ok=True)
    servers: list[Server] = []
    # SIGINT too: a process started in the background by a non-interactive shell inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler: Ctrl-C / kill -INT would do nothing.
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        if served:
            servers.append(_start_mlflow(uri, args.host, ports["--port"], logs / f"{state.name}-mlflow.log"))
        if dashboard:
            servers.append(_start_dashboard(optuna_db, args.host, ports["--dashboard-port"],
                                            logs / f"{state.name}-optuna-dashboard.log"))
        for s in servers:
            _wait_ready(s)
        mlflow_url = servers[0].url if served else uri.rstrip("/")
        print(f"sweep {state.name} ({sweep_dir})")
        print(f"  MLflow UI:        {mlflow_url}/#/experiments/{state.experiment_id}?{UI_MODE_QUERY}"
              + ("" if served else "  (the sweep's tracking server; not started here)"))
        if dashboard:
            print(f"  optuna-dashboard: {servers[-1].url}/dashboard  (study {state.name}, with its Pareto-front plot)")
        elif not optuna_db.is_file():
            print(f"  optuna-dashboard: not started (no Optuna storage at {optuna_db})")
        else:
            print("  optuna-dashboard: not installed (`pip install optuna-dashboard` to see the study)")
        if servers:
            print(f"  server logs: {logs}/  (Ctrl-C stops the servers)", flush=True)
            return _supervise(servers)
        return 0
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0
    finally:
        for s in servers:
            _stop(s.proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _free_port(option: str, host: str, port: int) -> int:
    """``port`` if it can be bound on ``host`` now (0: one the OS picks); else a one-line error."""
    if not 0 <= port <= 65535:
        raise ConfigError(option, port, "a TCP port, 0-65535 (0: any free port)")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves do
            s.bind((host, port))
            return s.getsockname()[1]
    except socket.gaierror as exc:
        raise ConfigError("--host", host, "an address of this machine (127.0.0.1, 0.0.0.0, ...)",
                          hint=str(exc)) from None
    except OSError as exc:
        raise ConfigError(option, port, "a free port", hint=f"{exc.strerror or exc} on {host}; pick another "
                                                            f"or 0 for any free one") from None


def _url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def _spawn(name: str, cmd: list[str], env: dict[str, str], log: Path, url: str, probe: str) -> Server:
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return Server(name, proc, url, url + probe, log)


def _start_mlflow(uri: str, host: str, port: int, log: Path) -> Server:
    from topnas.platform.tracking import absolute_sqlite_uri

    uri = absolute_sqlite_uri(uri)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
           "--port", str(port), "--workers", "1"]
    if uri.startswith("sqlite:///"):  # new artifacts next to the store, not in the working directory
        cmd += ["--artifacts-destination", str(Path(uri[len("sqlite:///"):]).parent / "mlartifacts")]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no job runner: ~7x less memory
    env.pop("MLFLOW_TRACKING_URI", None)
    return _spawn("mlflow ui", cmd, env, log, _url(host, port), "/health")


def _start_dashboard(db: Path, host: str, port: int, log: Path) -> Server:
    code = "import sys; from optuna_dashboard._cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, f"sqlite:///{db.absolute()}", "--host", host, "--port", str(port)]
    return _spawn("optuna-dashboard", cmd, dict(os.environ), log, _url(host, port), "/api/studies")


def _wait_ready(server: Server, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ConfigError(server.name, server.url, "a server that starts",
                              hint=f"it exited with {server.proc.returncode}: {_last_line(server.log)} "
                                   f"(log {server.log})")
        try:
            with urllib.request.urlopen(server.probe, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise ConfigError(server.name, server.url, "a server that answers", hint=(
        f"no answer within {timeout_s:g} s (log {server.log})"))


def _supervise(servers: list[Server]) -> int:
    """Wait until Ctrl-C; a server that dies on its own ends the command (the other is stopped)."""
    while True:
        for s in servers:
            if s.proc.poll() is not None:
                print(f"topnas ui: {s.name} exited with {s.proc.returncode}: {_last_line(s.log)} (log {s.log})",
                      file=sys.stderr)
                return 1
        time.sleep(0.5)


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Terminate the process group led by ``proc``, then kill what is left of it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; its workers may not be
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)


def _last_line(log: Path) -> str:
    from topnas.fileio import last_line

    try:
        return last_line(log.read_text(errors="replace"), empty="(empty log)")
    except OSError:
        return "(no log)"
