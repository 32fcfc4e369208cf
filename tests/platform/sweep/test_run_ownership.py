"""Each trial's MLflow run is opened once (by the trial) and closed once (by the driver), against a real
``mlflow server``: on the training path (Ray Tune + Ray Train on the fixture) and on a replayed sweep
with MO-ASHA (whose early-stopped trials are the case where the trial, ``run_training`` and the driver
all used to close the run).

Every process of the sweep (the driver and each Ray worker) records its ``MlflowClient`` calls
through ``tests/helpers/mlflow_calls/sitecustomize.py``. Starts Ray and a tracking server (marked
integration).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from topnas.platform.objectives import TrialStatus
from topnas.platform.sweep import Ledger, SweepConfig

from .conftest import replay_sweep_dict, sweep_dict, write_sweep_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CALLS_DIR = ROOT / "tests" / "helpers" / "mlflow_calls"
TIMEOUT_S = 600
TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def _run_sweep(root: Path, data: dict) -> tuple[SweepConfig, list[dict]]:
    """Run the sweep ``data`` with `topnas sweep` in a subprocess; its config and the recorded calls."""
    cfg = SweepConfig.from_dict(data)
    yaml_path = write_sweep_yaml(root / f"{cfg.name}.yaml", data)
    calls = root / "mlflow_calls.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(TOPNAS_HOME=str(root / "home"), TOPNAS_TEST_MLFLOW_CALLS=str(calls),
               PYTHONPATH=os.pathsep.join([str(CALLS_DIR), str(ROOT), env.get("PYTHONPATH", "")]))
    log = root / "sweep.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "topnas", "sweep", str(yaml_path), "--num-cpus", "2"], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=TIMEOUT_S)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the local Ray left
            except ProcessLookupError:
                pass
    assert rc == 0, log.read_text(errors="replace")[-4000:]
    return cfg, [json.loads(line) for line in calls.read_text().splitlines()]


def _check_once_per_trial(cfg: SweepConfig, calls: list[dict], uri: str) -> dict[str, str]:
    """Per launched trial: one run created, its status set once, by the driver. Returns trial -> run id."""
    from mlflow import MlflowClient

    records = {r.trial_id: r for r in Ledger(cfg.sweep_dir).records() if r.status != TrialStatus.INFEASIBLE}
    assert records, "no trial was launched"
    created = {c["tags"]["topnas.trial_id"]: c for c in calls
               if c["call"] == "create_run" and "topnas.trial_id" in c.get("tags", {})}
    per_trial = Counter(c["tags"]["topnas.trial_id"] for c in calls
                        if c["call"] == "create_run" and "topnas.trial_id" in c.get("tags", {}))
    client = MlflowClient(tracking_uri=uri)
    for trial_id, rec in records.items():
        assert per_trial[trial_id] == 1, (trial_id, per_trial)
        run_id = created[trial_id]["run_id"]
        assert run_id == rec.run_id
        assert created[trial_id]["ray_worker"], "the trial (a Ray worker) opens its run"
        closes = [c for c in calls if c["run_id"] == run_id and c["call"] in ("set_terminated", "update_run")
                  and c["status"] in TERMINAL]
        reopens = [c for c in calls if c["run_id"] == run_id and c["call"] == "update_run"
                   and c["status"] not in TERMINAL]
        assert len(closes) == 1 and not reopens, (trial_id, rec.status, closes, reopens)
        assert not closes[0]["ray_worker"], "the driver closes the run"
        run = client.get_run(run_id)
        assert run.info.status == closes[0]["status"]
        assert run.data.tags["topnas.status"] == rec.status
    return {t: created[t]["run_id"] for t in records}


def test_training_trials_open_and_close_their_run_once(tmp_path, mlflow_server_uri, test_predictor):
    data = sweep_dict(tmp_path, test_predictor, name="own_train", num_samples=2, max_concurrent=2,
                      **{"tracking.uri": mlflow_server_uri, "tracking.experiment": "own-train"})
    cfg, calls = _run_sweep(tmp_path, data)
    runs = _check_once_per_trial(cfg, calls, mlflow_server_uri)
    assert {r.status for r in Ledger(cfg.sweep_dir).records()} == {TrialStatus.COMPLETED}
    for run_id in runs.values():  # params and config logged once, when the trial opened the run
        configs = [c for c in calls if c["run_id"] == run_id and c["call"] == "log_artifact"
                   and c["file"] == "train_config.yaml"]
        assert len(configs) == 1, configs


def test_replayed_trials_early_stopped_or_not_are_closed_once(tmp_path, mlflow_server_uri, test_predictor,
                                                              replay_table):
    data = replay_sweep_dict(tmp_path, test_predictor, replay_table, name="own_replay", num_samples=6,
                             **{"tracking.uri": mlflow_server_uri, "tracking.experiment": "own-replay"})
    cfg, calls = _run_sweep(tmp_path, data)
    _check_once_per_trial(cfg, calls, mlflow_server_uri)
    statuses = Counter(r.status for r in Ledger(cfg.sweep_dir).records())
    assert statuses[TrialStatus.COMPLETED] >= 1
