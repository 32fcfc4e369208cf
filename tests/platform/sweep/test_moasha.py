"""MO-ASHA / ASHA rung decisions, their record in rungs.jsonl, resume, and the scheduler section of the YAML."""
from __future__ import annotations

import pytest
from ray.tune.schedulers import TrialScheduler

from topnas.errors import ConfigError
from topnas.platform.sweep import SweepConfig
from topnas.platform.objectives import OBJECTIVES
from topnas.platform.sweep.moasha import (RungLog, RungScheduler, rank_rung, rung_decision,
                                          rung_front, stop_info)

from .conftest import sweep_dict

REF = {"val_mIoU": 0.0, "latency_ms": 100.0}
# A constructed rung: three slow trials with good mIoU, then a fast one with poor mIoU.
RUNG = [("slow_a", 0.40, 50.0), ("slow_b", 0.38, 48.0), ("slow_c", 0.36, 46.0), ("fast", 0.10, 10.0)]


class T:
    def __init__(self, tid: str) -> None:
        self.trial_id = tid


def _scheduler(tmp_path, objectives=OBJECTIVES) -> RungScheduler:
    return RungScheduler(tmp_path, rungs=[10, 20], final_iteration=40, reduction_factor=2, reference_point=REF,
                         objectives=objectives)


def _feed(sched: RungScheduler, rung: int = 10) -> dict[str, str]:
    return {tid: sched.on_trial_result(None, T(tid), {"iteration": rung, "val_mIoU": m, "latency_ms": ms})
            for tid, m, ms in RUNG}


def test_moasha_keeps_the_fast_low_miou_trial_that_asha_stops(tmp_path):
    asha = _feed(_scheduler(tmp_path / "asha", {"val_mIoU": "max"}))
    moasha = _feed(_scheduler(tmp_path / "moasha"))
    assert asha["fast"] == TrialScheduler.STOP  # mIoU alone: the worst of 4 at the rung
    assert moasha["fast"] == TrialScheduler.CONTINUE  # non-dominated at its rung: never stopped
    # Each slow trial was on the front when it arrived (slower, better), so MO-ASHA kept all; ASHA keeps
    # the top ceil(n/2) by mIoU: only the first one (as Ray's ASHA: below the rung's median -> stop).
    assert [asha[t] for t, *_ in RUNG[:3]] == [TrialScheduler.CONTINUE] + [TrialScheduler.STOP] * 2
    assert all(moasha[t] == TrialScheduler.CONTINUE for t, *_ in RUNG)
    entries = RungLog(tmp_path / "moasha").entries()
    assert [(e.trial_id, e.rung, e.decision) for e in entries] == [(t, 10, "continue") for t, *_ in RUNG]
    assert {e.trial_id for e in rung_front(entries, 10)} == {"slow_a", "slow_b", "slow_c", "fast"}
    assert stop_info(tmp_path / "asha", "fast") == (10, ["slow_a", "slow_b", "slow_c", "fast"])
    assert stop_info(tmp_path / "asha", "slow_a") == (None, [])


def test_dominated_trials_compete_by_rank_then_hypervolume_contribution(tmp_path):
    rows = [{"trial_id": t, "val_mIoU": m, "latency_ms": ms} for t, m, ms in RUNG]
    rows.append({"trial_id": "bad", "val_mIoU": 0.30, "latency_ms": 60.0})  # dominated by all slow ones
    order, ranks = rank_rung(rows, REF)
    assert ranks == [0, 0, 0, 0, 1] and order[-1] == 4
    # Within the front the fast trial adds the most volume (its box reaches to 10 ms).
    assert order[0] == 3
    assert rung_decision(rows, 2, REF) == "stop"  # 5th of 5, ceil(5/2) = 3 continue
    assert rung_decision(rows[:1], 2, REF) == "continue"  # the first trial at a rung always continues


def test_final_evaluation_and_off_rung_results_are_never_stop_decisions(tmp_path):
    sched = _scheduler(tmp_path, {"val_mIoU": "max"})
    sched.on_trial_result(None, T("good"), {"iteration": 10, "val_mIoU": 0.5, "latency_ms": 1.0})
    assert sched.on_trial_result(None, T("bad"), {"iteration": 10, "val_mIoU": 0.1, "latency_ms": 1.0}) == "STOP"
    for it in (30, 40):  # 30 is not a rung, 40 is the full budget
        assert sched.on_trial_result(None, T("late"), {"iteration": it, "val_mIoU": 0.0,
                                                      "latency_ms": 1.0}) == TrialScheduler.CONTINUE
    assert not [e for e in RungLog(tmp_path).entries() if e.trial_id == "late"]


def test_rungs_survive_a_driver_kill(tmp_path):
    import pickle

    first = _scheduler(tmp_path)
    pickled = pickle.dumps(first)  # what Tune keeps in tuner.pkl: made before any decision
    for tid, m, ms in RUNG[:3]:
        first.on_trial_result(None, T(tid), {"iteration": 10, "val_mIoU": m, "latency_ms": ms})
    restored = pickle.loads(pickled)
    # A trial re-reporting a rung after the resume gets its recorded decision; a new one is compared
    # with the trials recorded before the kill (dominated by slow_b: 4th of 4 -> stopped).
    assert restored.on_trial_result(None, T("slow_a"), {"iteration": 10, "val_mIoU": 0.0,
                                                       "latency_ms": 99.0}) == TrialScheduler.CONTINUE
    assert restored.on_trial_result(None, T("late"), {"iteration": 10, "val_mIoU": 0.2,
                                                     "latency_ms": 60.0}) == TrialScheduler.STOP
    assert len(RungLog(tmp_path).entries()) == 4


def test_scheduler_section(tmp_path, test_predictor):
    every = {"proxy.iterations": 40, "proxy.eval_interval": 10}
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, scheduler={"name": "moasha"}, **every))
    assert cfg.scheduler.rungs == (10, 20) and cfg.scheduler.grace_period == 10
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, scheduler={"name": "asha", "rungs": [20, 30]},
                                           **every))
    assert cfg.scheduler.rungs == (20, 30) and cfg.to_dict()["scheduler"]["rungs"] == [20, 30]
    legacy = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, asha={"enabled": True, "grace_period": 10,
                                                                               "reduction_factor": 3}, **every))
    assert (legacy.scheduler.name, legacy.scheduler.rungs) == ("asha", (10, 30))
    assert SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor)).scheduler.name == "fifo"


@pytest.mark.parametrize("change, field", [
    ({"scheduler": {"name": "hyperband"}}, "scheduler.name"),
    ({"scheduler": {"name": "moasha", "rungs": [15]}}, "scheduler.rungs[0]"),  # not an evaluation
    ({"scheduler": {"name": "moasha", "rungs": [10, 40]}}, "scheduler.rungs[1]"),  # the budget itself
    ({"scheduler": {"name": "moasha", "grace_period": 50}}, "scheduler.grace_period"),  # beyond the budget
    ({"scheduler": {"name": "moasha", "grace_period": 15}}, "scheduler.grace_period"),
    ({"scheduler": {"name": "moasha", "reduction_factor": 1.5}}, "scheduler.reduction_factor"),  # rung 15
    ({"scheduler": {"name": "asha"}, "proxy.eval_interval": None}, "scheduler.name"),  # one evaluation
    ({"scheduler": {"name": "asha"}, "asha": {"enabled": True}}, "asha"),
])
def test_bad_scheduler_sections_name_the_field(tmp_path, test_predictor, change, field):
    data = sweep_dict(tmp_path, test_predictor, **{"proxy.iterations": 40, "proxy.eval_interval": 10, **change})
    with pytest.raises(ConfigError) as info:
        SweepConfig.from_dict(data)
    assert info.value.field == field, str(info.value)
    if field == "scheduler.name" and "hyperband" in str(info.value):
        assert all(name in str(info.value) for name in ("fifo", "asha", "moasha"))


def test_pareto_show_rung(tmp_path, capsys):
    from topnas.platform.cli import main
    from topnas.platform.sweep import Ledger, TrialRecord
    from topnas.platform.sweep.layout import SweepState

    sched = _scheduler(tmp_path, {"val_mIoU": "max"})  # ASHA stops 'fast' although it is on the rung's front
    for tid, m, ms in RUNG:
        sched.on_trial_result(None, T(tid), {"iteration": 10, "val_mIoU": m, "latency_ms": ms,
                                             "variant_id": f"tf-{tid}"})
    Ledger(tmp_path).append(TrialRecord(trial_id="fast", variant_id="tf-fast", status="early_stopped",
                                        val_mIoU=0.10, iteration=10, latency_ms=10.0, rung=10,
                                        rung_front=["slow_a", "slow_b", "slow_c", "fast"]))
    SweepState("s", "parent", "1", "sqlite:///x", REF, "p").save(tmp_path)
    assert main(["pareto", "show", str(tmp_path), "--rung", "10", "--all"]) == 0
    out = capsys.readouterr().out
    assert "rung 10: 4 trials reached it, 4 on its front" in out and "1 continued, 3 stopped" in out
    assert "stop/early_stopped" in out and out.index("tf-fast") < out.index("tf-slow_a")  # fastest first
    assert main(["pareto", "show", str(tmp_path), "--rung", "20"]) == 2
    assert "--rung: got 20; allowed: [10]" in capsys.readouterr().err


@pytest.mark.parametrize("changes, reuse", [
    ({}, True),                                                                   # fifo: trials end by returning
    ({"scheduler.name": "moasha", "proxy.eval_interval": 6}, False),              # a stopped training never returns
    ({"scheduler.name": "asha", "proxy.eval_interval": 6}, False),
    ({"scheduler.name": "moasha", "proxy.eval_interval": 6, "replay": {"table": "x.csv"}}, True),  # replay returns
])
def test_trial_actors_are_reused_unless_a_rung_scheduler_stops_trainings(tmp_path, test_predictor, changes, reuse):
    from types import SimpleNamespace

    from topnas.platform.sweep.runner import _reuse_actors

    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{k: v for k, v in changes.items()
                                                                         if k != "replay"}))
    if "replay" in changes:  # the replay section itself needs a real table; only its presence matters here
        cfg = SimpleNamespace(replay=object(), scheduler=cfg.scheduler)
    assert _reuse_actors(cfg) is reuse
