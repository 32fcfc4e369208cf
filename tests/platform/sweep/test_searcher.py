"""SweepSearch without Ray running: objectives, latency budget, statuses told to Optuna, resume."""
from __future__ import annotations

import statistics

import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from topnas.platform.sweep import Ledger, SweepConfig
from topnas.platform.sweep import estimates
from topnas.platform.sweep.searcher import INFEASIBLE_MIOU, LATENCY_CONSTRAINT, META_KEY, SweepSearch, open_study

from .conftest import sweep_dict


class FakeTracker:
    """Stands in for MLflow: records the child runs the searcher makes."""

    def __init__(self) -> None:
        self.created: list[tuple[str, dict]] = []
        self.finished: list[tuple[str, str]] = []

    def create_child(self, run_key, run_name, tags, params, metrics):
        self.created.append((run_key, dict(tags)))
        return f"run-{len(self.created)}", False

    def finish_child(self, run_id, status, reason, mlflow_status):
        self.finished.append((run_id, status))


@pytest.fixture()
def no_macs(monkeypatch):
    monkeypatch.setattr(estimates, "complexity_of", lambda variant: {"params": 1, "macs": 2})


def _searcher(tmp_path, predictor, **changes):
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, predictor, **changes))
    return cfg, SweepSearch(cfg, FakeTracker(), "pred-id")


def _states(cfg):
    return {t.number: t for t in open_study(cfg).get_trials()}


def test_objectives_and_statuses(tmp_path, test_predictor, no_macs):
    cfg, s = _searcher(tmp_path, test_predictor)
    assert s.metric == ["val_mIoU", "latency_ms"] and s.mode == ["max", "min"]
    configs = {t: s.suggest(t) for t in ("done", "stopped", "broken")}
    for c in configs.values():
        assert set(cfg.space.parameters()) <= set(c)
        meta = c[META_KEY]
        assert meta["variant_id"] == cfg.space.build({k: c[k] for k in cfg.space.parameters()}).id
        assert meta["latency_lo"] <= meta["latency_ms"] <= meta["latency_hi"]
    s.on_trial_complete("done", {"val_mIoU": 0.3, "iteration": 12})
    s.on_trial_complete("stopped", {"val_mIoU": 0.9, "iteration": 6})   # ASHA: under-trained
    s.on_trial_complete("broken", None, error=True)
    s.on_trial_complete("done", {"val_mIoU": 0.5, "iteration": 12})     # told once only
    trials = _states(cfg)
    done = trials[configs["done"][META_KEY]["optuna_trial"]]
    assert done.state == TrialState.COMPLETE
    assert done.values == pytest.approx([0.3, configs["done"][META_KEY]["latency_ms"]])
    stopped = trials[configs["stopped"][META_KEY]["optuna_trial"]]
    assert stopped.state == TrialState.PRUNED and stopped.values is None
    assert stopped.user_attrs["topnas.status"] == "early_stopped"
    assert stopped.user_attrs["topnas.partial_val_mIoU"] == 0.9
    assert trials[configs["broken"][META_KEY]["optuna_trial"]].state == TrialState.FAIL
    assert [t.number for t in open_study(cfg).best_trials] == [done.number]


def test_over_budget_proposals_are_recorded_never_launched(tmp_path, test_predictor, no_macs):
    import random

    probe = SweepConfig.from_dict(sweep_dict(tmp_path / "probe", test_predictor))
    pred = estimates.load_predictor(test_predictor)
    rng = random.Random(0)
    budget = statistics.median(pred.predict(probe.space.sample(rng)).ms for _ in range(64))
    cfg, s = _searcher(tmp_path, test_predictor, **{"latency.budget_ms": budget})
    launched = [s.suggest(f"t{i}") for i in range(6)]
    assert all(c[META_KEY]["latency_ms"] <= budget for c in launched)
    trials = _states(cfg)
    infeasible = [t for t in trials.values() if t.user_attrs.get("topnas.status") == "infeasible"]
    assert infeasible, "the median budget should reject some of the first proposals"
    for t in infeasible:
        assert t.state == TrialState.COMPLETE and t.values[0] == INFEASIBLE_MIOU
        assert t.constraints[LATENCY_CONSTRAINT] > 0
    for c in launched:
        assert trials[c[META_KEY]["optuna_trial"]].constraints[LATENCY_CONSTRAINT] <= 0
    recs = Ledger(cfg.sweep_dir).records()
    assert sorted(r.optuna_trial for r in recs) == sorted(t.number for t in infeasible)
    assert all(r.status == "infeasible" and r.trial_id == f"infeasible-{r.optuna_trial}" for r in recs)
    assert len(s._tracker.created) == len(infeasible)
    assert all(tags["topnas.status"] == "infeasible" for _, tags in s._tracker.created)


def test_restore_closes_stale_trials_and_keeps_live_ones(tmp_path, test_predictor, no_macs):
    cfg, s = _searcher(tmp_path, test_predictor)
    live = s.suggest("live")
    finished_late = s.suggest("late")
    snapshot = tmp_path / "searcher.pkl"
    s.save(str(snapshot))                       # Tune's periodic snapshot
    stale = s.suggest("stale")                  # asked after the snapshot, then the driver dies
    s.on_trial_complete("late", {"val_mIoU": 0.2, "iteration": 12})  # finished after the snapshot

    restored = SweepSearch(cfg, FakeTracker(), "pred-id")
    restored.restore(str(snapshot))
    trials = _states(cfg)
    assert trials[stale[META_KEY]["optuna_trial"]].state == TrialState.FAIL
    assert trials[stale[META_KEY]["optuna_trial"]].user_attrs["topnas.status"] == "failed"  # not "running"
    assert trials[stale[META_KEY]["optuna_trial"]].user_attrs["topnas.status_reason"].startswith("abandoned")
    assert trials[live[META_KEY]["optuna_trial"]].state == TrialState.RUNNING
    restored.on_trial_complete("late", {"val_mIoU": 0.2, "iteration": 12})   # replayed: not told twice
    restored.on_trial_complete("live", {"val_mIoU": 0.4, "iteration": 12})
    trials = _states(cfg)
    assert trials[live[META_KEY]["optuna_trial"]].state == TrialState.COMPLETE
    assert trials[finished_late[META_KEY]["optuna_trial"]].values[0] == pytest.approx(0.2)
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]


def _two_point_space():
    import copy

    from .conftest import SPACE

    space = copy.deepcopy(SPACE)
    for stage in space["stages"]:
        stage["channels"], stage["depth"] = stage["channels"][:1], [1]
    space["transformer"].update(depths=[1], num_heads=[2])
    space["head"]["channels"] = [64, 128]  # the only free dimension: 2 variants
    return space


def test_a_variant_is_never_launched_twice(tmp_path, test_predictor, no_macs):
    from topnas.platform.sweep.ledger import TrialRecord

    cfg, s = _searcher(tmp_path, test_predictor, search_space=_two_point_space(),
                       **{"sampler.name": "tpe", "sampler.options": {}, "latency.max_rejections": 30})
    first = s.suggest("t1")
    second = s.suggest("t2")
    ids = {first[META_KEY]["variant_id"], second[META_KEY]["variant_id"]}
    assert len(ids) == 2  # the second launch is the other variant, whatever the sampler proposed
    # t1 finishes (the driver's callback writes the record), t2 is still running: nothing is left to try.
    s.on_trial_complete("t1", {"val_mIoU": 0.42, "iteration": 12})
    meta = first[META_KEY]
    Ledger(cfg.sweep_dir).append(TrialRecord(
        trial_id="t1", variant_id=meta["variant_id"], status="completed", optuna_trial=meta["optuna_trial"],
        val_mIoU=0.42, iteration=12, latency_ms=meta["latency_ms"]))
    assert s.suggest("t3") == Searcher.FINISHED
    trials = _states(cfg)
    dups = [t for t in trials.values() if t.user_attrs.get("topnas.duplicate_of")]
    assert dups, "repeated proposals are answered, not launched"
    for t in dups:  # never a COMPLETE copy: the study's own front lists each variant once
        assert t.state == TrialState.FAIL and t.user_attrs["topnas.status"] == "duplicate"
        if t.user_attrs["topnas.duplicate_of"] == "t1":  # finished: its values kept as an attribute
            assert t.user_attrs["topnas.duplicate_values"] == pytest.approx([0.42, meta["latency_ms"]])
        else:  # t2 has no result yet
            assert t.user_attrs["topnas.duplicate_of"] == "t2" and "topnas.duplicate_values" not in t.user_attrs
    assert [t.number for t in open_study(cfg).best_trials] == [meta["optuna_trial"]]
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING and t.number not in
                (first[META_KEY]["optuna_trial"], second[META_KEY]["optuna_trial"])]


def test_a_trial_finished_after_the_snapshot_counts_towards_num_samples(tmp_path, test_predictor, no_macs):
    """Tune's restored run does not know a trial that finished after its last snapshot; the ledger does.
    The searcher stops at num_samples counting both, so a resumed sweep never trains one trial too many."""
    from topnas.platform.sweep.ledger import TrialRecord

    cfg, s = _searcher(tmp_path, test_predictor, num_samples=3)
    s.suggest("a")
    snapshot = tmp_path / "searcher.pkl"
    s.save(str(snapshot))                      # Tune's periodic snapshot knows trial a only
    late = s.suggest("b")[META_KEY]            # launched after it, finished and recorded, then the kill
    Ledger(cfg.sweep_dir).append(TrialRecord(
        trial_id="b", variant_id=late["variant_id"], status="completed", optuna_trial=late["optuna_trial"],
        val_mIoU=0.3, iteration=12, latency_ms=late["latency_ms"]))

    restored = SweepSearch(cfg, FakeTracker(), "pred-id")
    restored.restore(str(snapshot))
    third = restored.suggest("c")
    assert isinstance(third, dict) and META_KEY in third      # a, b and c: three trials
    assert restored.suggest("d") == Searcher.FINISHED
