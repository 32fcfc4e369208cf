"""``proxy.seeds`` > 1: a trial trains its variant once per seed (real Ray Train runs, one after the
other) and reports their mean; each seed is a run of its own nested under the trial's run, and a
trial restarted after it finished is reported from its record. The trial function runs here
in-process with Tune's context and report replaced by fakes; Ray and MLflow (SQLite) are real.
"""
from __future__ import annotations

import statistics
from types import SimpleNamespace

import pytest

from .conftest import sweep_dict

pytestmark = pytest.mark.integration

TRIAL_ID = "5eed5eed"


def _history(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def test_a_trial_of_two_seeds_reports_their_mean(tmp_path, test_predictor, embedded_ray, monkeypatch):
    import random

    from mlflow import MlflowClient
    from ray import tune

    from topnas.platform.sweep import SweepConfig, estimates
    from topnas.platform.sweep.mlflow_runs import SweepTracker
    from topnas.platform.sweep.searcher import META_KEY
    from topnas.platform.sweep.tags import FINAL_ITERATION_TAG
    from topnas.platform.sweep.trial import SEED_RUN_KIND, TrialContext, run_name_of, run_trial, seed_run_name
    from topnas.platform import tracking

    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.seeds": 2, "seed": 3,
                                                                         "proxy.eval_interval": 6}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("seeds")
    parent = client.create_run(experiment, run_name="sweep").info.run_id
    variant = cfg.space.sample(random.Random(0))
    point = cfg.space.point_of(variant)
    estimate = estimates.predict(estimates.load_predictor(test_predictor), variant)
    config = {**point, META_KEY: {"variant_id": variant.id, "variant": variant.to_dict(), "optuna_trial": 0,
                                          **estimate.to_dict()}}
    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda metrics, **_: reports.append(dict(metrics)))
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: TRIAL_ID))
    ctx = TrialContext(cfg, uri, experiment, parent, "test-predictor")

    run_trial(config, ctx)
    tracker = SweepTracker(uri, experiment, parent, cfg.name)
    trial_run = tracker.child_of_trial(TRIAL_ID)
    assert trial_run is not None  # the trial's run, not one of its seeds'
    seeds = client.search_runs([experiment], filter_string=f"tags.`{tracking.PARENT_RUN_TAG}` = "
                                                           f"'{trial_run.info.run_id}'")
    by_seed = {int(r.data.tags["topnas.seed"]): r for r in seeds}
    assert sorted(by_seed) == [3, 4]
    for seed, run in by_seed.items():
        assert run.data.tags["topnas.kind"] == SEED_RUN_KIND and run.info.status == "FINISHED"
        assert run.info.run_name == seed_run_name(run_name_of(TRIAL_ID, variant.id), seed)
        assert (cfg.sweep_dir / "train" / run.info.run_name).is_dir()  # its own checkpoints
        assert run.data.params["runtime.seed"] == str(seed)
    curves = {s: _history(client, r.info.run_id, "val_mIoU") for s, r in by_seed.items()}
    assert sorted(curves[3]) == sorted(curves[4]) == [6, 12]
    losses = {s: _history(client, r.info.run_id, "loss") for s, r in by_seed.items()}
    assert losses[3] and losses[3] != losses[4]  # two trainings, not one reported twice

    mean = _history(client, trial_run.info.run_id, "val_mIoU")
    assert mean == pytest.approx({s: (curves[3][s] + curves[4][s]) / 2 for s in (6, 12)})
    std = statistics.stdev([curves[3][12], curves[4][12]])
    assert _history(client, trial_run.info.run_id, "val_mIoU_seed_std") == pytest.approx({12: std})
    assert client.get_run(trial_run.info.run_id).data.tags[FINAL_ITERATION_TAG] == "12"
    assert len(reports) == 1  # Tune sees the mean once, at the budget
    assert reports[0]["iteration"] == 12 and reports[0]["val_mIoU"] == pytest.approx(mean[12])
    assert reports[0]["val_mIoU_seed_std"] == pytest.approx(std)
    assert reports[0]["latency_ms"] == estimate.latency_ms and reports[0]["variant_id"] == variant.id

    # Tune restarts the trial after its run was closed (the driver was killed): reported from the record
    tracker.finish_child(trial_run.info.run_id, "completed", "", "FINISHED")
    reports.clear()
    run_trial(config, ctx)
    assert len(reports) == 1 and reports[0]["val_mIoU"] == pytest.approx(mean[12]) and reports[0]["replayed"]
    again = client.search_runs([experiment], filter_string=f"tags.`{tracking.PARENT_RUN_TAG}` = "
                                                           f"'{trial_run.info.run_id}'")
    assert len(again) == 2 and len(client.get_metric_history(trial_run.info.run_id, "val_mIoU")) == 2
