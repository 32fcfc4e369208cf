"""Replay mode without Ray: the table's checks, and the searcher snapping proposals onto the table."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from topnas.errors import ConfigError
from topnas.platform.sweep import SweepConfig, estimates
from topnas.platform.sweep.replay import load_replay, variants_path, write_synthetic_table
from topnas.platform.sweep.searcher import META_KEY, SweepSearch, open_study
from topnas.search_spaces import SearchSpace

from .conftest import REPLAY_EVAL, REPLAY_ITERATIONS, SPACE, replay_sweep_dict


class NoTracker:
    def create_child(self, *args, **kwargs):
        raise AssertionError("no proposal of these tests is over a latency budget")


def _copy_table(src, dst_dir):
    dst_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst_dir / src.name)
    shutil.copy(variants_path(src), variants_path(dst_dir / src.name))
    return dst_dir / src.name


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_table_loads_one_curve_per_variant(tmp_path, test_predictor, replay_table):
    cfg = SweepConfig.from_dict(replay_sweep_dict(tmp_path, test_predictor, replay_table))
    table = load_replay(cfg)
    assert len(table.curves) == 24
    assert all(list(c) == [10, 20, 30, 40] for c in table.curves.values())
    assert cfg.proxy.dataset == "" and cfg.replay.table == str(replay_table)
    seed1 = load_replay(SweepConfig.from_dict(replay_sweep_dict(tmp_path, test_predictor, replay_table,
                                                                **{"replay.seed": 1})))
    assert seed1.curves != table.curves  # the other seed's curves
    for vid, point in table.points.items():
        assert cfg.space.build(point).id == vid


def _broken(tmp_path, replay_table, what):
    path = _copy_table(replay_table, tmp_path / "t")
    rows = _rows(path)
    first = rows[0]["variant_id"]
    if what == "missing_rung":
        _write_rows(path, [r for r in rows if not (r["variant_id"] == first and r["iteration"] == "20")])
    elif what == "undefined_variant":
        data = json.loads(variants_path(path).read_text())
        del data["variants"][first]
        variants_path(path).write_text(json.dumps(data))
    elif what == "no_companion":
        variants_path(path).unlink()
    elif what == "bad_columns":
        _write_rows(path, [{k if k != "val_mIoU" else "miou": v for k, v in r.items()} for r in rows])
    elif what == "other_space":  # one variant at an input size the sweep's space does not offer
        from topnas.search_spaces import Variant

        data = json.loads(variants_path(path).read_text())
        data["variants"][first]["input_size"] = [256, 256]
        data["variants"][first].pop("id")
        new_id = Variant.from_dict(data["variants"][first]).id
        data["variants"][new_id] = data["variants"].pop(first)
        variants_path(path).write_text(json.dumps(data))
        _write_rows(path, [{**r, "variant_id": new_id if r["variant_id"] == first else r["variant_id"]} for r in rows])
    elif what == "missing_file":
        path = tmp_path / "nope.csv"
    return path


@pytest.mark.parametrize("what, field, words", [
    ("missing_rung", "replay.table", "misses iteration(s) [20]"),
    ("undefined_variant", "replay.table", "undefined"),
    ("no_companion", "replay.table", "variants.json"),
    ("bad_columns", "replay.table", "missing val_mIoU"),
    ("other_space", "replay.table", "is not in it"),
    ("missing_file", "replay.table", "an existing CSV"),
])
def test_bad_tables_fail_before_ray_with_one_error(tmp_path, test_predictor, replay_table, what, field, words):
    path = _broken(tmp_path, replay_table, what)
    with pytest.raises(ConfigError) as info:
        SweepConfig.from_dict(replay_sweep_dict(tmp_path, test_predictor, path))
    assert info.value.field == field and words in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_a_seed_the_table_lacks_and_a_budget_beyond_it(tmp_path, test_predictor, replay_table):
    with pytest.raises(ConfigError) as info:
        SweepConfig.from_dict(replay_sweep_dict(tmp_path, test_predictor, replay_table, **{"replay.seed": 7}))
    assert info.value.field == "replay.seed"
    with pytest.raises(ConfigError) as info:  # the table stops at 40 iterations
        SweepConfig.from_dict(replay_sweep_dict(tmp_path, test_predictor, replay_table,
                                                **{"proxy.iterations": 60}))
    assert info.value.field == "replay.table" and "[50, 60]" in str(info.value)


def test_proposals_snap_to_unevaluated_table_variants_until_none_is_left(tmp_path, test_predictor):
    table_path = write_synthetic_table(tmp_path / "small.csv", SearchSpace.from_dict(SPACE),
                                       estimates.load_predictor(test_predictor), 5, REPLAY_ITERATIONS, REPLAY_EVAL)
    cfg = SweepConfig.from_dict(replay_sweep_dict(tmp_path, test_predictor, table_path,
                                                  **{"sampler.options": {"population_size": 2}}))
    table = load_replay(cfg)
    s = SweepSearch(cfg, NoTracker(), "pred")
    launched = []
    for i in range(5):
        config = s.suggest(f"t{i}")
        meta = config[META_KEY]
        assert meta["variant_id"] in table.curves and meta["variant_id"] not in launched
        launched.append(meta["variant_id"])
        s.on_trial_complete(f"t{i}", {"val_mIoU": table.curves[meta["variant_id"]][40], "iteration": 40})
    assert s.suggest("t5") == Searcher.FINISHED
    trials = open_study(cfg).get_trials()
    snapped = [t for t in trials if t.user_attrs.get("topnas.status") == "snapped"]
    assert snapped, "a space of 1024 variants proposes outside a 5-variant table"
    assert all(t.state == TrialState.FAIL for t in snapped)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["topnas.variant_id"] for t in complete) == sorted(launched)
    for t in complete:  # the sampler holds each table variant's own parameters and measured mIoU
        assert cfg.space.build(t.params).id == t.user_attrs["topnas.variant_id"]
        assert t.values[0] == table.curves[t.user_attrs["topnas.variant_id"]][40]
    # Enqueued trials still count for NSGA-II's generations (population 2: 5 trials reach generation 2).
    generations = [t.system_attrs.get("NSGAIISampler:generation") for t in complete]
    assert None not in generations and max(generations) == 2
