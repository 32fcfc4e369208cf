"""A replayed sweep with MO-ASHA through real Ray Tune: SIGKILLed mid-way, resumed, then read back.

Trials read the synthetic table (no training; 0.5 s per evaluation so the kill lands mid-sweep).
Checked: the ledger, rungs.jsonl, MLflow child statuses and rung tags on a real ``mlflow server``
(each run opened once by its trial and closed once by the driver, early-stopped or not: the case where
the trial, ``run_training`` and the driver all used to close it), the Optuna states, and
`topnas pareto show --rung`. Starts Ray twice (marked integration).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from tests.helpers.sessions import kill_session, run_to_end, start_in_session, tail
from tests.helpers.sweep_checks import (
    check_runs_across_a_kill,
    read_mlflow_calls,
    record_mlflow_calls,
)
from topnas.platform.sweep import Ledger, SweepConfig
from topnas.platform.sweep.moasha import RUNG_FILE, RungLog

from .conftest import replay_sweep_dict, write_sweep_yaml

pytestmark = pytest.mark.integration

NUM_SAMPLES = 8
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, test_predictor, replay_table, mlflow_server_uri):
    root = tmp_path_factory.mktemp("replay_it")
    data = replay_sweep_dict(root, test_predictor, replay_table, name="replay_kill", num_samples=NUM_SAMPLES,
                             **{"replay.delay_s": 0.5, "tracking.uri": mlflow_server_uri,
                                "tracking.experiment": "replay-kill"})
    cfg = SweepConfig.from_dict(data)
    yaml_path = write_sweep_yaml(root / "replay_kill.yaml", data)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["TOPNAS_HOME"] = str(root / "home")
    cmd = [sys.executable, "-m", "topnas", "sweep"]
    logs = root / "first.log", root / "resume.log"
    calls = root / "first_calls.jsonl", root / "resume_calls.jsonl"
    proc = start_in_session([*cmd, str(yaml_path), "--num-cpus", "2"], logs[0], record_mlflow_calls(env, calls[0]))
    ledger = Ledger(cfg.sweep_dir)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None and len(ledger.records()) < 2:
            time.sleep(0.3)
        assert proc.poll() is None, f"the sweep ended before it could be killed:\n{tail(logs[0])}"
        assert len(ledger.records()) >= 2, tail(logs[0])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_session(proc.pid)  # the local Ray the driver started
    before = {r.trial_id: r for r in ledger.records()}
    rungs_before = len(RungLog(cfg.sweep_dir).entries())
    rc = run_to_end([*cmd, "--resume", str(cfg.sweep_dir), "--num-cpus", "2"], logs[1],
                    record_mlflow_calls(env, calls[1]), TIMEOUT_S)
    assert rc == 0, tail(logs[1])
    return cfg, before, rungs_before, logs, calls


def test_ledger_and_rungs_after_kill_and_resume(replayed):
    cfg, before, rungs_before, *_ = replayed
    records = Ledger(cfg.sweep_dir).records()
    trained = [r for r in records if r.status in ("completed", "early_stopped")]
    assert len(trained) == NUM_SAMPLES and len({r.trial_id for r in records}) == len(records)
    assert all(r.status != "failed" or r.reason.startswith("abandoned") for r in records)
    for tid, rec in before.items():  # finished before the kill: kept as recorded
        assert next(r for r in records if r.trial_id == tid).status == rec.status
    entries = RungLog(cfg.sweep_dir).entries()
    assert len(entries) > rungs_before  # the resumed driver kept deciding on the same rungs
    raw = [json.loads(line) for line in (cfg.sweep_dir / RUNG_FILE).read_text().splitlines() if line.strip()]
    decided: dict = {}
    for e in raw:  # a rung re-reported after the resume never changes its decision
        assert decided.setdefault((e["trial_id"], e["rung"]), e["decision"]) == e["decision"]
    stops = [e for e in entries if e.decision == "stop"]
    for e in stops:  # MO-ASHA never stops a trial on its rung's front
        assert e.trial_id not in e.front and e.rung in cfg.scheduler.rungs
    for r in records:
        if r.status == "early_stopped":
            stop = next(e for e in stops if e.trial_id == r.trial_id)
            assert (r.rung, r.rung_front, r.iteration) == (stop.rung, stop.front, stop.rung)
        elif r.status == "completed":
            assert r.iteration == cfg.proxy.iterations and r.rung is None
    assert any(r.status == "early_stopped" for r in records), "eta 2 on 8 trials stops some"


def test_mlflow_children_carry_status_and_rung(replayed):
    from topnas.platform.sweep.layout import SweepState
    from topnas.platform.sweep.mlflow_runs import SweepTracker

    cfg, *_ = replayed
    state = SweepState.load(cfg.sweep_dir)
    tracker = SweepTracker(state.tracking_uri, state.experiment_id, state.parent_run_id, cfg.name)
    children = {run.data.tags["topnas.trial_id"]: run for run in tracker.children()}
    records = Ledger(cfg.sweep_dir).records()
    assert set(children) == {r.trial_id for r in records}  # one child run per trial, none duplicated
    for r in records:
        run = children[r.trial_id]
        assert run.data.tags["topnas.status"] == r.status and run.data.tags.get("topnas.replay") == "true"
        assert run.info.status == {"completed": "FINISHED", "early_stopped": "KILLED", "failed": "KILLED"}[r.status]
        if r.status == "failed":  # started just before the kill, unknown to Tune's last snapshot
            assert r.reason.startswith("abandoned")
            continue
        steps = sorted({int(m.step) for m in tracker.client.get_metric_history(run.info.run_id, "val_mIoU")})
        assert steps[-1] == r.iteration
        if r.status == "early_stopped":
            assert run.data.tags["topnas.rung"] == str(r.rung)
            assert run.data.tags["topnas.rung_front"].split(",") == r.rung_front
    parent = tracker.client.get_run(state.parent_run_id)
    assert parent.data.tags["topnas.scheduler"] == "moasha" and parent.data.tags["topnas.status"] == "finished"


def test_optuna_states_and_rung_front_cli(replayed, capsys):
    from optuna.trial import TrialState

    from topnas.platform.cli import main
    from topnas.platform.sweep.searcher import open_study

    cfg, *_ = replayed
    by_number = {t.number: t for t in open_study(cfg).get_trials()}
    assert not [t for t in by_number.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for r in Ledger(cfg.sweep_dir).records():
        t = by_number[r.optuna_trial]
        if r.status == "completed":
            assert t.state == TrialState.COMPLETE and t.values == pytest.approx([r.val_mIoU, r.latency_ms])
        elif r.status == "failed":  # abandoned at the kill
            assert t.state == TrialState.FAIL
        else:  # NSGA-II never sees an under-trained mIoU as a measurement
            assert t.state == TrialState.PRUNED and t.values is None
            assert t.user_attrs["topnas.rung"] == r.rung and t.user_attrs["topnas.partial_val_mIoU"] == r.val_mIoU
    assert main(["pareto", "show", str(cfg.sweep_dir), "--rung", str(cfg.scheduler.rungs[0]), "--all"]) == 0
    out = capsys.readouterr().out
    assert f"rung {cfg.scheduler.rungs[0]}:" in out and "stop/early_stopped" in out


def test_predictor_provenance_on_runs_table_and_plot(replayed, capsys):
    """The predictor that priced latency_ms is named on the parent run, every child, the front table and plot."""
    from topnas.platform.cli import main
    from topnas.platform.sweep import estimates
    from topnas.platform.sweep.layout import SweepState
    from topnas.platform.sweep.mlflow_runs import SweepTracker

    cfg, *_ = replayed
    info = estimates.predictor_info(cfg.latency.predictor)
    state = SweepState.load(cfg.sweep_dir)
    assert state.predictor_label == info["label"] and info["id"] in state.predictor_label
    assert state.predictor_provenance == info["provenance"] != ""
    tracker = SweepTracker(state.tracking_uri, state.experiment_id, state.parent_run_id, cfg.name)
    parent = tracker.client.get_run(state.parent_run_id)
    assert parent.data.params["predictor.provenance"] == info["provenance"]
    for run in tracker.children():
        assert run.data.params["latency.predictor_id"] == info["id"]
        assert run.data.params["latency.predictor_provenance"] == info["provenance"]
    assert main(["pareto", "show", str(cfg.sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert f"latency_ms priced by {info['label']}" in out and info["provenance"] in out
    html = (cfg.sweep_dir / "pareto" / "pareto_front.html").read_text()
    assert f"predicted latency (ms; {info['label']})" in html


def test_each_replayed_trial_opens_and_closes_its_run_once(replayed):
    """Early-stopped or not, per trial one driver ran from start to end (see test_sweep_integration)."""
    from topnas.platform.sweep.layout import SweepState

    cfg, before, _, _, calls = replayed
    uri = SweepState.load(cfg.sweep_dir).tracking_uri
    records = {r.trial_id: r for r in Ledger(cfg.sweep_dir).records()}
    _, fresh = check_runs_across_a_kill(before, records, tuple(read_mlflow_calls(p) for p in calls), uri,
                                        ("completed", "early_stopped"))
    checked = [*before.values(), *fresh.values()]
    assert len(checked) >= NUM_SAMPLES - 2  # at most max_concurrent trials span the kill
    assert {r.status for r in checked} >= {"completed"}
