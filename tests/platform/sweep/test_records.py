"""The sweep's own trial record, the status rule, and the front computed from it."""
from __future__ import annotations

import json
import math

import pytest

from topnas.errors import ConfigError
from topnas.platform import pareto as P
from topnas.platform.sweep import Ledger, TrialRecord, load_front, load_trials, trial_status
from topnas.platform.objectives import OBJECTIVES
from topnas.platform.sweep.layout import SweepState, resolve_sweep_dir
from topnas.platform.sweep.ledger import frame


@pytest.mark.parametrize("result, error, expected", [
    ({"val_mIoU": 0.3, "iteration": 20}, False, "completed"),
    ({"val_mIoU": 0.3, "iteration": 25}, False, "completed"),
    ({"val_mIoU": 0.2, "iteration": 10}, False, "early_stopped"),
    ({"val_mIoU": float("nan"), "iteration": 20}, False, "failed"),
    ({"iteration": 20}, False, "failed"),
    (None, False, "failed"),
    ({"val_mIoU": 0.3, "iteration": 20}, True, "failed"),
])
def test_trial_status(result, error, expected):
    status, reason = trial_status(result, error, 20, "boom" if error else "")
    assert status == expected
    assert (reason == "") == (expected == "completed")
    if error:
        assert reason == "boom"


def _rec(tid, status, miou, lat, **kw):
    return TrialRecord(trial_id=tid, variant_id=f"v-{tid}", status=status, val_mIoU=miou, latency_ms=lat,
                       latency_lo=lat * 0.9 if lat else None, latency_hi=lat * 1.1 if lat else None,
                       params=1000, macs=2000, run_id=f"run-{tid}", **kw)


def test_ledger_writes_one_line_per_trial_and_skips_torn_lines(tmp_path):
    ledger = Ledger(tmp_path)
    assert ledger.append(_rec("a", "completed", float("nan"), 10.0))  # NaN is written as null
    assert ledger.append(_rec("b", "completed", 0.3, 20.0))
    assert not ledger.append(_rec("a", "failed", None, 10.0))  # re-run after a resume: not appended
    with open(ledger.path, "a") as f:
        f.write('{"trial_id": "c", "status": "comp')  # a kill mid-write
    recs = ledger.records()
    assert [r.trial_id for r in recs] == ["a", "b"]
    assert recs[0].status == "completed" and recs[0].val_mIoU is None
    lines = ledger.path.read_text().splitlines()
    assert [json.loads(line)["trial_id"] for line in lines[:2]] == ["a", "b"] and len(lines) == 3
    assert ledger.append(_rec("d", "completed", 0.1, 5.0))  # after the torn line: still one line per trial
    assert [r.trial_id for r in ledger.records()] == ["a", "b", "d"]


def test_older_ledger_with_two_lines_keeps_the_first(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.path.write_text(_rec("a", "completed", 0.3, 10.0).to_json() + "\n"
                           + _rec("a", "failed", None, 10.0).to_json() + "\n")
    (rec,) = ledger.records()
    assert rec.status == "completed" and rec.val_mIoU == 0.3


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"name": "x"}'])
def test_corrupt_state_json_is_one_line_naming_the_file(tmp_path, content):
    (tmp_path / "state.json").write_text(content)
    with pytest.raises(ConfigError) as info:
        SweepState.load(tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "state.json") in msg and "start the sweep again" in msg
    assert ("empty" in msg) == (content == "")


def test_frame_front_agrees_with_pareto_module(tmp_path):
    recs = [
        _rec("fast", "completed", 0.20, 10.0),
        _rec("mid", "completed", 0.30, 20.0),
        _rec("dup", "completed", 0.30, 20.0),      # exact duplicate: both stay on the front
        _rec("slow", "completed", 0.25, 30.0),     # dominated by mid
        _rec("stopped", "early_stopped", 0.90, 5.0),   # under-trained: never on the front
        _rec("infeasible-3", "infeasible", None, 4.0, optuna_trial=3),
        _rec("broken", "failed", None, 6.0),
        _rec("nan", "completed", math.nan, 7.0),
    ]
    df = frame(recs)
    flags = P.pareto_flags(P.points_from_records(df.to_dict("records"), OBJECTIVES), OBJECTIVES)
    assert list(df["pareto"]) == [f.pareto for f in flags]
    assert set(df[df["pareto"]]["trial_id"]) == {"fast", "mid", "dup"}


def test_load_front_and_sweep_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("TOPNAS_HOME", str(tmp_path))
    folder = tmp_path / "sweeps" / "s1"
    ledger = Ledger(folder)
    for r in (_rec("a", "completed", 0.2, 10.0), _rec("b", "completed", 0.1, 20.0)):
        ledger.append(r)
    SweepState("s1", "p", "1", "sqlite:///x.db", {"val_mIoU": 0.0, "latency_ms": 40.0}, "pid").save(folder)
    assert resolve_sweep_dir("s1") == folder
    assert resolve_sweep_dir(str(folder)) == folder.absolute()
    assert list(load_front("s1")["trial_id"]) == ["a"]
    assert len(load_trials(folder)) == 2
    with pytest.raises(ConfigError) as info:
        resolve_sweep_dir("nope")
    assert info.value.allowed == ["s1"]
