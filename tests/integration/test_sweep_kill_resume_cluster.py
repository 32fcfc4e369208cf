"""Kill the sweep driver while trials train on the worker node of a `ray start` cluster, then resume.

The cluster is the repo's ``cluster/local/start_local_cluster.sh``: a head with 0 CPUs and one
worker node with 2 CPUs, so every Ray Train worker (1 CPU) runs on the worker node. The driver
(``topnas sweep --address``) runs here against a real ``mlflow server``; it is SIGKILLed once one
trial has finished and others train on the worker node (checked with Ray's state API), its
``topnas sweep --resume --address`` is SIGKILLed again while the resumed trials train, and a second
resume finishes the sweep. Then every store must agree
(:func:`tests.helpers.sweep_checks.check_stores_agree`): one ledger line per trial, no metric step
logged twice, the trial running at the kill closed the same way in MLflow, the ledger and Optuna,
and ``study.best_trials`` equal to ``topnas pareto show``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.sweep_checks import check_stores_agree
from tests.platform.sweep.conftest import sweep_dict, write_predictor, write_sweep_yaml
from topnas.platform.sweep import Ledger, SweepConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "cluster" / "local" / "start_local_cluster.sh"
STOP = ROOT / "cluster" / "local" / "stop_local_cluster.sh"
NUM_SAMPLES = 4
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("ray-kill")
    env = {**os.environ, "TOPNAS_PYTHON": sys.executable, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run(["bash", str(START), "--state", str(state), "--workers", "1", "--head-cpus", "0",
                          "--worker-cpus", "2", "--memory", str(1536 * 1024 ** 2),
                          "--object-store-memory", str(128 * 1024 ** 2)],
                         env=env, capture_output=True, text=True, timeout=400)
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        info = json.loads((state / "cluster.json").read_text())
        assert info["nodes"] == 2
        yield info
    finally:
        subprocess.run(["bash", str(STOP), "--state", str(state), "--grace", "5"], env=env, capture_output=True,
                       text=True, timeout=200)
        ray_tmp = state / "ray_tmp"
        if ray_tmp.is_file():
            shutil.rmtree(ray_tmp.read_text().strip(), ignore_errors=True)


def _env(cluster: dict, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update({"TOPNAS_HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": cluster["auth_mode"]})
    if cluster.get("auth_token_path"):
        env["RAY_AUTH_TOKEN_PATH"] = cluster["auth_token_path"]
    return env


def _state_api(cluster: dict, path: str) -> list[dict]:
    """One page of the dashboard's state API (``/api/v0/...``), with the cluster's token when it has one."""
    req = urllib.request.Request(cluster["dashboard_url"] + path)
    if cluster.get("auth_token_path"):
        req.add_header("Authorization", "Bearer " + Path(cluster["auth_token_path"]).read_text().strip())
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["data"]["result"]["result"]


def _actors(cluster: dict) -> list[tuple[str, bool]]:
    """(class name, on the head node) of every live actor of the cluster.

    Over HTTP from this process: the test polls it every second while trials train on 2 cores, and a
    Python process importing Ray for each poll took a core's worth of seconds from them.
    """
    heads = {n["node_id"] for n in _state_api(cluster, "/api/v0/nodes?limit=100") if n["is_head_node"]}
    alive = _state_api(cluster, "/api/v0/actors?limit=1000&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE")
    return [(a["class_name"], a["node_id"] in heads) for a in alive]


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "<no log>"


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_driver_killed_while_trials_train_on_the_worker_node(cluster, mlflow_server_uri, tmp_path):
    from mlflow import MlflowClient

    predictor = write_predictor(tmp_path / "predictor.json")
    data = sweep_dict(tmp_path, predictor, name="it_kill_cluster", num_samples=NUM_SAMPLES,
                      **{"tracking.uri": mlflow_server_uri, "tracking.experiment": "it-kill-cluster"})
    data["proxy"]["iterations"] = 30  # a training window wide enough to kill the driver in
    data["proxy"]["train"]["runtime"]["log_interval"] = 5
    yaml_path = write_sweep_yaml(tmp_path / "sweep.yaml", data)
    cfg = SweepConfig.from_dict(data)
    env = _env(cluster, tmp_path / "home")
    cmd = [sys.executable, "-m", "topnas", "sweep"]
    client = MlflowClient(tracking_uri=mlflow_server_uri)
    ledger = Ledger(cfg.sweep_dir)

    first = [*cmd, str(yaml_path), "--address", cluster["address"]]
    resume = [*cmd, "--resume", str(cfg.sweep_dir), "--address", cluster["address"]]
    # 1. the sweep, killed once a trial has finished and others train on the worker node
    workers = _kill_while_training(first, tmp_path / "first.log", env, cluster, ledger, after_completed=1)
    assert not any(on_head for _, on_head in workers), workers  # the head has no CPU: all on the worker node
    training = _running_children(client, cfg.sweep_dir, [r for r in ledger.records() if r.status == "completed"])
    assert training, "no child run was training at the kill"
    before = {r.trial_id: r for r in ledger.records()}
    # 2. its resume, killed again while the resumed trials train
    _kill_while_training(resume, tmp_path / "resume1.log", env, cluster, ledger, after_completed=0)
    # 3. the second resume finishes the sweep
    resume_log = tmp_path / "resume2.log"
    with open(resume_log, "wb") as log:
        resumed = subprocess.Popen(resume, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            rc = resumed.wait(timeout=TIMEOUT_S)
        finally:
            _kill_session(resumed.pid)
    assert rc == 0, f"resume failed ({rc}):\n{_tail(resume_log)}"

    counts = check_stores_agree(cfg.sweep_dir, mlflow_server_uri)
    records = {r.trial_id: r for r in ledger.records()}
    assert sum(r.status == "completed" for r in records.values()) == NUM_SAMPLES, _tail(resume_log)
    assert all(r.status == "completed" or r.reason.startswith("abandoned") for r in records.values())
    for trial_id in training:  # the trials training at the kill ended, the same way everywhere (checked above)
        assert trial_id in records
    for trial_id, old in before.items():  # finished before the kill: never trained again, one record
        run = client.get_run(old.run_id)
        assert records[trial_id].run_id == old.run_id and run.data.tags["topnas.train_attempts"] == "1"
    assert counts["steps"] > 0


def _kill_while_training(argv: list[str], log_path: Path, env: dict[str, str], cluster: dict, ledger: Ledger,
                         after_completed: int) -> list[tuple[str, bool]]:
    """Start a driver, SIGKILL it once >= ``after_completed`` trials finished and Train workers run.

    Waits first until no Train worker of an earlier driver is alive (the cluster ends a dead driver's
    actors), so the workers seen are this driver's. Returns them as (class name, on the head node).
    """
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any("TrainWorker" in n for n, _ in _actors(cluster)):
        time.sleep(2)
    with open(log_path, "wb") as log:
        driver = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    workers: list[tuple[str, bool]] = []
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and driver.poll() is None:
            if sum(r.status == "completed" for r in ledger.records()) >= after_completed:
                workers = [(n, head) for n, head in _actors(cluster) if "TrainWorker" in n]
                if workers:
                    break
            time.sleep(1)
        assert driver.poll() is None, f"the driver ended before it could be killed:\n{_tail(log_path)}"
        assert workers, f"no trial trained within {TIMEOUT_S} s:\n{_tail(log_path)}"
        os.kill(driver.pid, signal.SIGKILL)  # while Ray Train workers of its trials run
        driver.wait(timeout=30)
    finally:
        _kill_session(driver.pid)
    return workers


def _running_children(client, sweep_dir: Path, done) -> list[str]:
    """Trial ids whose child run is still ``running`` (not finished before the kill)."""
    from topnas.platform.sweep.layout import SweepState

    try:
        state = SweepState.load(sweep_dir)
    except Exception:  # noqa: BLE001 - not written yet
        return []
    runs = client.search_runs([state.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{state.parent_run_id}' and "
                                            "tags.`topnas.status` = 'running'")
    finished = {r.trial_id for r in done}
    return [r.data.tags["topnas.trial_id"] for r in runs if r.data.tags.get("topnas.trial_id") not in finished]
