"""benchmarks/search_quality.py: compute accounting of the in-process replay driver and the JSON it prints."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REF = {"val_mIoU": 0.0, "latency_ms": 1000.0}


def _script():
    spec = importlib.util.spec_from_file_location("search_quality", ROOT / "benchmarks" / "search_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_quality"] = module  # spawned workers import it by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    from topnas.platform.sweep import estimates
    from topnas.platform.sweep.replay import write_synthetic_table
    from topnas.search_spaces import SearchSpace
    from topnas.yamlio import read_yaml_mapping

    demo = read_yaml_mapping(ROOT / "experiments" / "sweep_demo_fixture.yaml", "demo sweep")
    return write_synthetic_table(tmp_path_factory.mktemp("sq") / "t.csv", SearchSpace.from_dict(demo["search_space"]),
                                 estimates.load_predictor(None), 12, 40, 10)


def _cfg(sq, table, method, tmp_path):
    space, iterations, every = sq._table_layout(table)
    assert (iterations, every) == (40, 10)
    return sq.sweep_config(table, space, method, 0, tmp_path, iterations, every, None, 4, 2.0)


def test_random_search_spends_exactly_its_full_trainings(table, tmp_path):
    sq = _script()
    run = sq.simulate(_cfg(sq, table, "random", tmp_path), REF, compute_cap=3 * 40, workers=1)
    assert run.started == 3 and [c for c, _ in run.events] == [40, 80, 120] and run.consumed == 120
    assert [hv for _, hv in run.events] == sorted(hv for _, hv in run.events) and not run.stopped


def test_moasha_runs_count_stopped_iterations_and_record_rungs(table, tmp_path):
    from topnas.platform.sweep import Ledger
    from topnas.platform.sweep.moasha import RungLog

    sq = _script()
    cfg = _cfg(sq, table, "nsga2_moasha", tmp_path)
    run = sq.simulate(cfg, REF, compute_cap=6 * 40, workers=2)
    records = Ledger(cfg.sweep_dir).records()
    stopped = [r for r in records if r.status == "early_stopped"]
    assert {r.variant_id for r in stopped} == run.stopped and stopped, "eta 2 stops some of 12 variants"
    assert all(r.iteration in cfg.scheduler.rungs for r in stopped)
    assert sum(r.iteration for r in records) <= run.consumed <= 6 * 40
    assert {e.trial_id for e in RungLog(cfg.sweep_dir).entries()} <= {r.trial_id for r in records} | {
        f"t{i:04d}" for i in range(run.started)}


def test_json_holds_one_entry_per_method(table, capsys):
    sq = _script()
    sq.main(["--table", str(table), "--seeds", "2", "--methods", "nsga2_moasha", "--json", "--jobs", "1",
             "--budget-trials", "3"])
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"random", "nsga2_moasha"}
    for values in out.values():
        assert values["compute_to_random_final"] > 0 and values["true_front_dropped"] >= 0
    assert out["random"]["true_front_dropped"] == 0  # random search stops nothing


def test_oracle_rungs_show_the_scheduler_final_mIoU_only(table, tmp_path):
    """--diagnose: the rung scheduler sees each variant's full-budget mIoU; the front keeps replayed values."""
    from topnas.platform.sweep import Ledger
    from topnas.platform.sweep.moasha import RungLog
    from topnas.platform.sweep.replay import load_replay

    sq = _script()
    cfg = _cfg(sq, table, "nsga2_moasha", tmp_path)
    curves = load_replay(cfg).curves
    run = sq.simulate(cfg, REF, compute_cap=6 * 40, workers=2, oracle=True)
    entries = RungLog(cfg.sweep_dir).entries()
    assert entries and run.started
    for e in entries:
        assert e.val_mIoU == curves[e.variant_id][40] and e.rung in cfg.scheduler.rungs
    for r in Ledger(cfg.sweep_dir).records():
        assert r.val_mIoU == curves[r.variant_id][r.iteration]


def test_rung_spearman_is_one_for_curves_that_keep_their_order():
    sq = _script()
    curves = {"a": {10: 0.1, 20: 0.2, 30: 0.3}, "b": {10: 0.2, 20: 0.1, 30: 0.5}, "c": {10: 0.3, 20: 0.0, 30: 0.6}}
    assert sq.rung_spearman(curves, 30) == {10: 1.0, 20: -1.0}


def test_diagnose_runs_each_part_in_a_sweep_of_its_own(table, capsys):
    sq = _script()
    sq.main(["--table", str(table), "--seeds", "1", "--methods", "nsga2_moasha", "--diagnose", "--json", "--jobs",
             "1", "--budget-trials", "3"])
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"random", "nsga2_moasha", "random_moasha", "nsga2_moasha_oracle_rungs",
                        "random_moasha_oracle_rungs"}
    assert all(values["trials_started"] > 0 for values in out.values())  # no run reads another's ledger


def test_default_table_is_the_demo_spaces_long_budget_table_with_many_rungs():
    import yaml

    from topnas.platform.sweep.replay import read_table
    from topnas.search_spaces import SearchSpace

    demo = ROOT / "experiments" / "sweep_demo_fixture.yaml"
    spec = yaml.safe_load(demo.read_text())
    table = _script()._default_table()
    assert table == ROOT / "benchmarks" / "data" / "replay_4class" / "replay_fixture-small.csv"
    curves, variants = read_table(table)  # longer than the demo's proxy budget, at many rungs
    assert max(max(c) for c in curves.values()) > spec["proxy"]["iterations"]
    assert min(len(c) for c in curves.values()) >= 8
    assert len(curves) >= 48
    space = SearchSpace.from_dict(spec["search_space"])
    assert all(space.contains(v) for v in variants.values())