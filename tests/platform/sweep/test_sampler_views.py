"""What NSGA-II and GP receive for over-budget and failed proposals (issue: no placeholder mIoU as data).

The searcher runs without Ray; the samplers' own entry points are wrapped to capture the frozen
trials they are handed.
"""
from __future__ import annotations

import copy
import random
import statistics

import optuna
import pytest
from optuna.trial import TrialState

from topnas.platform.sweep import SweepConfig, estimates
from topnas.platform.sweep.searcher import LATENCY_CONSTRAINT, META_KEY, SweepSearch, open_study

from .conftest import sweep_dict


class FakeTracker:
    def create_child(self, run_key, run_name, tags, params, metrics):
        return "run", False

    def finish_child(self, run_id, status, reason, mlflow_status):
        pass


@pytest.fixture()
def no_macs(monkeypatch):
    monkeypatch.setattr(estimates, "complexity_of", lambda variant: {"params": 1, "macs": 2})


def _run(tmp_path, predictor, sampler, options, n_launch):
    """Launch ``n_launch`` trials under a median latency budget; the first one fails, the rest complete."""
    probe = SweepConfig.from_dict(sweep_dict(tmp_path / "probe", predictor))
    pred = estimates.load_predictor(predictor)
    rng = random.Random(0)
    budget = statistics.median(pred.predict(probe.space.sample(rng)).ms for _ in range(64))
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, predictor, num_samples=n_launch,
                                           **{"latency.budget_ms": budget,
                                              "sampler": {"name": sampler, "options": options}}))
    s = SweepSearch(cfg, FakeTracker(), "pred")
    for i in range(n_launch):
        config = s.suggest(f"t{i}")
        if i == 0:
            s.on_trial_complete("t0", None, error=True)
        else:
            s.on_trial_complete(f"t{i}", {"val_mIoU": 0.1 + 0.01 * i, "iteration": 12})
        assert config[META_KEY]["latency_ms"] <= budget
    return cfg, {t.number: t for t in open_study(cfg).get_trials()}


def test_nsga2_ranks_violators_by_violation_only(tmp_path, test_predictor, no_macs, monkeypatch):
    from optuna.samplers.nsgaii._elite_population_selection_strategy import NSGAIIElitePopulationSelectionStrategy

    seen: list[list] = []
    original = NSGAIIElitePopulationSelectionStrategy.__call__

    def spy(self, study, population):
        seen.append(list(population))
        return original(self, study, population)

    monkeypatch.setattr(NSGAIIElitePopulationSelectionStrategy, "__call__", spy)
    cfg, trials = _run(tmp_path, test_predictor, "nsga2", {"population_size": 4}, 9)
    infeasible = [t for t in trials.values() if t.user_attrs.get("topnas.status") == "infeasible"]
    assert infeasible and all(t.state == TrialState.COMPLETE and t.constraints[LATENCY_CONSTRAINT] > 0
                              for t in infeasible)
    failed = [t for t in trials.values() if t.user_attrs.get("topnas.status") == "failed"]
    assert len(failed) == 1 and failed[0].state == TrialState.FAIL and failed[0].values is None
    assert seen, "NSGA-II selected an elite population at least once"
    population = seen[-1]
    assert all(t.state == TrialState.COMPLETE for t in population)  # the failed trial never enters it
    assert failed[0].number not in {t.number for t in population}
    # The val_mIoU slot of a violator is never read: the best possible mIoU there changes nothing.
    strategy = NSGAIIElitePopulationSelectionStrategy(population_size=4)
    study = open_study(cfg)
    doctored = []
    for t in population:
        t = copy.deepcopy(t)
        if t.constraints[LATENCY_CONSTRAINT] > 0:
            t.values = [1.0, t.values[1]]
        doctored.append(t)
    assert [t.number for t in strategy(study, doctored)] == [t.number for t in strategy(study, population)]
    from optuna.samplers.nsgaii._elite_population_selection_strategy import _rank_population

    fronts = _rank_population(doctored, study.directions, is_constrained=True)
    level = {t.number: i for i, front in enumerate(fronts) for t in front}
    feasible = [level[t.number] for t in doctored if t.constraints[LATENCY_CONSTRAINT] <= 0]
    violators = [level[t.number] for t in doctored if t.constraints[LATENCY_CONSTRAINT] > 0]
    if feasible and violators:
        assert max(feasible) < min(violators)


def test_gp_never_models_a_variant_it_was_not_given_a_measurement_for(tmp_path, test_predictor, no_macs,
                                                                       monkeypatch):
    seen: list[list] = []
    original = optuna.samplers.GPSampler._sample_relative_impl

    def spy(self, study, completed_trials, running_trials, search_space):
        seen.append(list(completed_trials))
        return original(self, study, completed_trials, running_trials, search_space)

    monkeypatch.setattr(optuna.samplers.GPSampler, "_sample_relative_impl", spy)
    _, trials = _run(tmp_path, test_predictor, "gp", {"n_startup_trials": 3}, 6)
    infeasible = [t for t in trials.values() if t.user_attrs.get("topnas.status") == "infeasible"]
    assert infeasible, "a median budget rejects some proposals"
    for t in infeasible:  # closed FAIL, the violation kept on the trial for dashboards
        assert t.state == TrialState.FAIL and t.values is None and t.constraints[LATENCY_CONSTRAINT] > 0
    assert seen, "GP modelled the completed trials at least once"
    for completed in seen:
        assert all(t.user_attrs["topnas.status"] == "completed" for t in completed)
        assert all(t.values[0] >= 0.1 for t in completed)  # only measured mIoU (0.11, 0.12, ...)
