"""A real sweep: Ray Tune + Ray Train trials on the fixture, a real `mlflow server`, a SIGKILLed driver.

One sweep (4 trained trials, 2 at a time, 12 iterations of 64x64 crops each, a latency budget that
rejects some proposals) is started with the CLI in its own process group, SIGKILLed once two trials
have finished, and finished with ``topnas sweep --resume``. The tests then read what it left: the
trial ledger, the Optuna study, the MLflow runs and artifacts on the tracking server, and the
``MlflowClient`` calls every process of each driver made (``tests/helpers/mlflow_calls``).
"""
from __future__ import annotations

import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.sessions import kill_session, run_to_end, start_in_session, tail
from tests.helpers.sweep_checks import (
    check_runs_across_a_kill,
    read_mlflow_calls,
    record_mlflow_calls,
)
from topnas.platform import pareto as P
from topnas.platform.objectives import OBJECTIVES
from topnas.platform.sweep import Ledger, SweepConfig, estimates
from topnas.platform.sweep.layout import SweepState

from .conftest import sweep_dict, write_sweep_yaml

pytestmark = pytest.mark.integration

NUM_SAMPLES = 4
SWEEP_TIMEOUT_S = 900
AGENTS_GONE_S = 20  # raywatch: grace 2 s + SIGTERM, SIGKILL 3 s later


@dataclass
class SweepRun:
    cfg: SweepConfig
    folder: Path
    uri: str
    before_kill: dict  # trial id -> record, finished before the kill
    budget: float
    logs: tuple[Path, Path]
    calls: tuple[Path, Path]  # MlflowClient calls of the first driver's processes, of the resumed driver's
    left_after_kill: list[str]  # processes of the killed driver's session still alive AGENTS_GONE_S later


def _describe(pid: str) -> str:
    """Parent, command line and Ray parent of a live process (for a failure message)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return "(gone)"
    ppid = stat[stat.rindex(")") + 2:].split()[1]
    raylet = [e.decode() for e in env if e.startswith(b"RAY_RAYLET_PID=")]
    return f"ppid {ppid} {raylet} {cmd[:300]}"


def _session_processes(sid: int) -> list[str]:
    """``"<pid> <name>: <details>"`` of live processes in session ``sid`` (the killed driver's own session)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            out.append(f"{entry} {name}: {_describe(entry)}")
    return out


def _wait_session_empty(sid: int, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = _session_processes(sid)
        if not left:
            return []
        time.sleep(0.5)
    return _session_processes(sid)


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, mlflow_server_uri, test_predictor) -> SweepRun:
    root = tmp_path_factory.mktemp("sweep_it")
    probe = SweepConfig.from_dict(sweep_dict(root / "probe", test_predictor))
    pred = estimates.load_predictor(test_predictor)
    rng = random.Random(0)
    latencies = sorted(pred.predict(probe.space.sample(rng)).ms for _ in range(64))
    budget = round(latencies[int(0.6 * len(latencies))], 3)  # ~40% of the space is over budget
    data = sweep_dict(root, test_predictor, name="it_resume", num_samples=NUM_SAMPLES,
                      **{"latency.budget_ms": budget, "tracking.uri": mlflow_server_uri,
                         "tracking.experiment": "it-sweeps"})
    yaml_path = write_sweep_yaml(root / "it_resume.yaml", data)
    cfg = SweepConfig.from_dict(data)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["TOPNAS_HOME"] = str(root / "home")
    cmd = [sys.executable, "-m", "topnas", "sweep"]
    first_log, second_log = root / "first.log", root / "resume.log"
    calls = root / "first_calls.jsonl", root / "resume_calls.jsonl"

    proc = start_in_session([*cmd, str(yaml_path), "--num-cpus", "2"], first_log, record_mlflow_calls(env, calls[0]))
    ledger = Ledger(cfg.sweep_dir)
    try:
        deadline = time.monotonic() + SWEEP_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(r.status == "completed" for r in ledger.records()) >= 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None, f"the sweep ended before it could be killed:\n{tail(first_log)}"
        done = [r for r in ledger.records() if r.status == "completed"]
        assert len(done) >= 2, f"no two trials finished in {SWEEP_TIMEOUT_S} s:\n{tail(first_log)}"
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, as a crash would
        proc.wait(timeout=30)
        left = _wait_session_empty(proc.pid, AGENTS_GONE_S)
    finally:
        kill_session(proc.pid)  # what Ray left of the first driver's local cluster
    before = {r.trial_id: r for r in ledger.records() if r.status != "infeasible"}

    rc = run_to_end([*cmd, "--resume", str(cfg.sweep_dir), "--num-cpus", "2"], second_log,
                    record_mlflow_calls(env, calls[1]), SWEEP_TIMEOUT_S)
    assert rc == 0, f"resume failed ({rc}):\n{tail(second_log)}"
    return SweepRun(cfg, cfg.sweep_dir, mlflow_server_uri, before, budget, (first_log, second_log), calls, left)


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _children(run: SweepRun):
    state = SweepState.load(run.folder)
    client = _client(run.uri)
    children = client.search_runs([state.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{state.parent_run_id}'",
                                  max_results=1000)
    return state, client, children


def test_resume_runs_every_trial_once(sweep_run):
    import optuna
    from optuna.trial import TrialState

    records = Ledger(sweep_run.folder).records()
    trained = [r for r in records if r.status != "infeasible"]
    assert sum(r.status == "completed" for r in trained) == NUM_SAMPLES, [(r.trial_id, r.status, r.reason)
                                                                          for r in records]
    assert all(r.status == "completed" or r.reason.startswith("abandoned") for r in trained)

    state, client, children = _children(sweep_run)
    by_trial: dict[str, list] = {}
    for child in children:
        by_trial.setdefault(child.data.tags["topnas.trial_id"], []).append(child)
    assert all(len(v) == 1 for v in by_trial.values()), "a trial has two child runs"
    assert set(by_trial) == {r.trial_id for r in records}

    for trial_id, old in sweep_run.before_kill.items():  # finished before the kill: never trained again
        child = by_trial[trial_id][0]
        assert child.info.run_id == old.run_id
        assert child.data.tags["topnas.train_attempts"] == "1"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_mIoU")]
        assert len(steps) == len(set(steps)) == 1
    for r in trained:
        if r.status == "completed":
            steps = [m.step for m in client.get_metric_history(r.run_id, "val_mIoU")]
            assert steps and max(steps) == sweep_run.cfg.proxy.iterations

    study = optuna.load_study(study_name="it_resume", storage=f"sqlite:///{sweep_run.folder / 'optuna.db'}")
    trials = {t.number: t for t in study.get_trials()}
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]
    recorded = {r.optuna_trial: r for r in records if r.optuna_trial is not None}
    for number, r in recorded.items():
        t = trials[number]
        if r.status == "completed":
            assert t.state == TrialState.COMPLETE
            assert t.values == pytest.approx([r.val_mIoU, r.latency_ms])
            assert t.constraints["latency_budget"] <= 0
        elif r.status == "infeasible":
            assert t.state == TrialState.COMPLETE and t.constraints["latency_budget"] > 0
        else:
            assert t.state == TrialState.FAIL
    by_trial_id = {r.trial_id: r for r in records}
    for t in trials.values():
        if t.number in recorded:
            continue
        source = t.user_attrs.get("topnas.duplicate_of")
        if source is not None and t.state == TrialState.COMPLETE:  # a repeat answered from the record
            r = by_trial_id[source]
            assert t.user_attrs["topnas.variant_id"] == r.variant_id
            assert t.values[0] == pytest.approx(r.val_mIoU if r.status == "completed" else 0.0)
        else:  # a proposal the killed driver never launched, or a repeat of an unfinished trial
            assert t.state == TrialState.FAIL


def test_mlflow_parent_and_children(sweep_run):
    state, client, children = _children(sweep_run)
    parent = client.get_run(state.parent_run_id)
    tags, params = parent.data.tags, parent.data.params
    assert tags["topnas.sweep"] == "it_resume" and tags["topnas.kind"] == "sweep"
    assert tags["topnas.status"] == "finished" and parent.info.status == "FINISHED"
    assert params["sampler.name"] == "nsga2" and params["seed"] == "0" and params["num_samples"] == str(NUM_SAMPLES)
    assert params["predictor.id"] == state.predictor_id and params["git_commit"]
    assert float(params["latency.budget_ms"]) == sweep_run.budget
    root = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.csv", "pareto_front.png", "pareto_front.html", "hypervolume.png", "config"} <= root
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "config")} >= {
        "config/sweep.yaml", "config/search_space.yaml", "config/test_predictor.json"}
    hv = client.get_metric_history(parent.info.run_id, "hypervolume")
    assert hv and max(m.step for m in hv) == len(Ledger(sweep_run.folder).records())

    for child in children:
        t, m = child.data.tags, child.data.metrics
        assert t["mlflow.parentRunId"] == parent.info.run_id and t["topnas.sweep"] == "it_resume"
        assert t["topnas.variant_id"].startswith("tf-") and t["pareto"] in ("true", "false")
        assert t["topnas.status"] in ("completed", "infeasible", "failed")
        assert {"latency_ms", "latency_lo", "latency_hi", "params", "macs"} <= set(m)
        assert m["latency_lo"] <= m["latency_ms"] <= m["latency_hi"]
        assert child.data.params["variant.id"] == t["topnas.variant_id"]
        assert any(k.startswith("search.") for k in child.data.params)
        if t["topnas.status"] == "completed":
            assert child.info.status == "FINISHED" and 0.0 <= m["val_mIoU"] <= 1.0


def test_pareto_artifacts_agree_with_pareto_module(sweep_run, tmp_path):
    state, client, children = _children(sweep_run)
    local = client.download_artifacts(state.parent_run_id, "pareto.csv", str(tmp_path))
    df = pd.read_csv(local, keep_default_na=False, na_values=[""])
    points = P.points_from_records(df.to_dict("records"), OBJECTIVES)
    flags = P.pareto_flags(points, OBJECTIVES)
    assert list(df["pareto"].astype(bool)) == [f.pareto for f in flags]
    assert df["pareto"].astype(bool).any()
    assert set(df["status"]) <= {"completed", "infeasible", "failed"}

    tag_of = {c.info.run_id: c.data.tags["pareto"] == "true" for c in children}
    assert {rid: bool(flag) for rid, flag in zip(df["run_id"], df["pareto"])} == tag_of

    hv_logged = client.get_metric_history(state.parent_run_id, "hypervolume")
    last = max(hv_logged, key=lambda m: m.step).value
    assert last == pytest.approx(P.hypervolume(points, state.reference_point, OBJECTIVES))
    assert state.reference_point == {"val_mIoU": 0.0, "latency_ms": sweep_run.budget}
    html = Path(client.download_artifacts(state.parent_run_id, "pareto_front.html", str(tmp_path))).read_text()
    front_ids = df[df["pareto"].astype(bool)]["variant_id"]
    assert all(v in html for v in front_ids)
    png = Path(client.download_artifacts(state.parent_run_id, "pareto_front.png", str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_over_budget_variants_never_train(sweep_run):
    records = Ledger(sweep_run.folder).records()
    infeasible = [r for r in records if r.status == "infeasible"]
    assert infeasible, "the budget should have rejected some proposals"
    trained_ids = {r.trial_id for r in records if r.status != "infeasible"}
    train_dirs = [p.name for p in (sweep_run.folder / "train").iterdir()]
    assert all(d.split("-")[0] in trained_ids for d in train_dirs)
    tune_trials = {p.name for p in (sweep_run.folder / "tune").iterdir() if p.is_dir()}
    state, client, children = _children(sweep_run)
    by_run = {c.info.run_id: c for c in children}
    for r in infeasible:
        assert r.latency_ms > sweep_run.budget and r.val_mIoU is None and r.trial_id not in tune_trials
        child = by_run[r.run_id]
        assert child.data.tags["topnas.status"] == "infeasible" and child.data.tags["pareto"] == "false"
        assert "val_mIoU" not in child.data.metrics and "loss" not in child.data.metrics
        assert child.info.status == "FINISHED"
    for r in records:
        if r.status == "completed":
            assert r.latency_ms <= sweep_run.budget


def test_ray_processes_do_not_outlive_the_killed_driver(sweep_run):
    """Without the watchdog, ray::DashboardAgent and ray::RuntimeEnvAgent stay alive (Ray 2.60)."""
    assert sweep_run.left_after_kill == [], sweep_run.left_after_kill



def test_every_store_agrees_after_kill_and_resume(sweep_run):
    from tests.helpers.sweep_checks import check_stores_agree

    counts = check_stores_agree(sweep_run.folder, sweep_run.uri)
    assert counts["steps"] > 0 and counts["front"] >= 1


def test_each_trial_opens_and_closes_its_run_once(sweep_run):
    """The trial (a Ray worker) opens its run, the driver closes it: once each, with the config logged once
    (for every trial one driver ran from start to end: check_runs_across_a_kill)."""
    first, resumed = (read_mlflow_calls(p) for p in sweep_run.calls)
    assert first and resumed, "no MlflowClient call was recorded"
    records = {r.trial_id: r for r in Ledger(sweep_run.folder).records() if r.status != "infeasible"}
    before = {t: records[t] for t in sweep_run.before_kill}
    assert len(before) >= 2
    runs, _ = check_runs_across_a_kill(before, records, (first, resumed), sweep_run.uri, ("completed",))
    for run_id in runs.values():  # params and config logged once, when the trial opened the run
        configs = [c for c in first + resumed if c["run_id"] == run_id and c["call"] == "log_artifact"
                   and c["file"] == "train_config.yaml"]
        assert len(configs) == 1, configs
