"""`topnas ui SWEEP`: real servers on free ports answer over HTTP and stop with Ctrl-C; bad input is one line."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.mlflow_server import free_port
from tests.helpers.sessions import kill_session
from topnas.platform.cli import main
from topnas.platform.raywatch import descendants

ROOT = Path(__file__).resolve().parents[2]
HAS_DASHBOARD = importlib.util.find_spec("optuna_dashboard") is not None


def _sweep(runs: Path, name: str, uri: str | None = None, study: bool = True) -> Path:
    """A sweep folder as `topnas sweep` leaves it: state.json (+ its MLflow experiment) and optuna.db."""
    import optuna

    from topnas.platform import tracking
    from topnas.platform.sweep.layout import OPTUNA_FILE, SweepState

    folder = runs / "sweeps" / name
    folder.mkdir(parents=True)
    if uri is None:
        uri = f"sqlite:///{runs / 'mlflow.db'}"
        exp = tracking.get_or_create_experiment(f"exp-{name}", tracking_uri=uri)
        parent = tracking.get_client(uri).create_run(exp, run_name=name).info.run_id
    else:
        exp, parent = "7", "0" * 32
    SweepState(name, parent, exp, uri, {"val_mIoU": 0.0, "latency_ms": 200.0}, "pid").save(folder)
    if study:
        s = optuna.create_study(study_name=name, storage=f"sqlite:///{folder / OPTUNA_FILE}",
                                directions=["maximize", "minimize"])
        s.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=[0.3, 40.0]))
    return folder


def _run(argv: list[str], runs: Path, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setenv("TOPNAS_HOME", str(runs))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


@pytest.mark.integration
def test_ui_serves_mlflow_and_dashboard_and_ctrl_c_stops_both(tmp_path):
    runs = tmp_path / "runs"
    _sweep(runs, "s_ui")
    port, dport = free_port(), free_port()
    # PYTHONFAULTHANDLER: if Ctrl-C does not end it, SIGABRT makes it print every thread's stack
    env = dict(os.environ, TOPNAS_HOME=str(runs), PYTHONPATH=str(ROOT), PYTHONFAULTHANDLER="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "topnas", "ui", "s_ui", "--port", str(port),
                             "--dashboard-port", str(dport)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # as a non-interactive shell starts a background job (CI): SIGINT ignored, so
                            # Python installs no KeyboardInterrupt handler; `topnas ui` must still stop on it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = []
        for line in proc.stdout:  # the URLs are printed once both servers answer
            lines.append(line)
            if "server logs:" in line:
                break
        text = "".join(lines)
        assert "server logs:" in text, text + proc.stderr.read()
        children = descendants(proc.pid)
        assert children, "no server process was started"

        mlflow_url = re.search(r"MLflow UI:\s+(http://\S+)", text).group(1)
        assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/#/experiments/\d+\?workflowType=machine_learning",
                            mlflow_url), mlflow_url
        status, page = _get(mlflow_url)
        assert status == 200 and "<html" in page.lower()
        exp_id = mlflow_url.rsplit("/", 1)[1].split("?")[0]
        status, body = _get(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/get?experiment_id={exp_id}")
        experiment = json.loads(body)["experiment"]
        assert experiment["name"] == "exp-s_ui"
        assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"]

        if HAS_DASHBOARD:
            dash = re.search(r"optuna-dashboard:\s+(http://\S+)", text).group(1)
            assert dash == f"http://127.0.0.1:{dport}/dashboard"
            status, page = _get(dash)
            assert status == 200 and "Optuna Dashboard" in page
            studies = json.loads(_get(f"http://127.0.0.1:{dport}/api/studies")[1])["study_summaries"]
            assert [(s["study_name"], s["directions"]) for s in studies] == [("s_ui", ["maximize", "minimize"])]
        else:
            assert "optuna-dashboard: not installed" in text

        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            left = {pid: _alive(pid) for pid in children}
            os.kill(proc.pid, signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"`topnas ui` still ran 60 s after Ctrl-C (servers alive: {left}); its stacks:\n{err[-6000:]}")
        assert rc == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in children):
            time.sleep(0.2)
        assert not [pid for pid in children if _alive(pid)], "a server process outlived `topnas ui`"
        for p in (port, dport):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", p)) != 0, f"port {p} still answers"
    finally:
        kill_session(proc.pid)  # and whatever its group left
        proc.wait()
    if not HAS_DASHBOARD:
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[test]'): its half was not checked")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_unknown_sweep_is_one_line(tmp_path, monkeypatch):
    _sweep(tmp_path / "runs", "s_known", study=False)
    rc, out, err = _run(["ui", "nope"], tmp_path / "runs", monkeypatch)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "sweep: got 'nope'" in err and "s_known" in err


def test_port_in_use_is_one_line_and_starts_nothing(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _sweep(runs, "s_busy", study=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        rc, out, err = _run(["ui", "s_busy", "--port", str(busy)], runs, monkeypatch)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and f"--port: got {busy}" in err and "a free port" in err
    assert not (runs / "logs").exists()


def test_bad_port_number_is_one_line(tmp_path, monkeypatch):
    _sweep(tmp_path / "runs", "s_p", study=False)
    rc, _, err = _run(["ui", "s_p", "--port", "70000"], tmp_path / "runs", monkeypatch)
    assert rc == 2 and err.count("\n") == 1 and "--port: got 70000" in err


def test_http_tracking_uri_is_printed_not_served(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _sweep(runs, "s_remote", uri="http://tracking.example:5000", study=False)
    rc, out, err = _run(["ui", "s_remote"], runs, monkeypatch)
    assert rc == 0, err
    assert ("MLflow UI:        http://tracking.example:5000/#/experiments/7?workflowType=machine_learning  "
            "(the sweep's tracking server") in out
    assert "optuna-dashboard: not started (no Optuna storage at" in out
    assert not (runs / "logs").exists()
