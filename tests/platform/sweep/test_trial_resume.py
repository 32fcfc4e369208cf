"""A trial that Tune restarts after its run was already closed (it finished after Tune's last snapshot,
before the driver was killed) is reported from its record: neither replayed nor trained again, its
closed run not reopened. The trial function runs here in-process, with Tune's context and report
replaced by fakes; MLflow is a real SQLite store.
"""
from __future__ import annotations

from types import SimpleNamespace

from .conftest import replay_sweep_dict

TRIAL_ID = "0badcafe"


def test_a_finished_replayed_trial_is_reported_from_its_record(tmp_path, test_predictor, replay_table, monkeypatch):
    from mlflow import MlflowClient
    from ray import tune

    from topnas.platform.sweep import SweepConfig, estimates
    from topnas.platform.sweep.mlflow_runs import SweepTracker
    from topnas.platform.sweep.replay import load_replay
    from topnas.platform.sweep.searcher import META_KEY
    from topnas.platform.sweep.trial import TrialContext, run_trial

    cfg = SweepConfig.from_dict(replay_sweep_dict(tmp_path, test_predictor, replay_table,
                                                  **{"replay.delay_s": 0.0}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("resume")
    parent = client.create_run(experiment, run_name="sweep").info.run_id
    table = load_replay(cfg)
    variant_id = min(table.curves)
    variant, curve = table.variants[variant_id], table.curves[variant_id]
    estimate = estimates.predict(estimates.load_predictor(test_predictor), variant)
    config = {**table.points[variant_id],
              META_KEY: {"variant_id": variant_id, "variant": variant.to_dict(), "optuna_trial": 0,
                         **estimate.to_dict()}}
    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda metrics, **_: reports.append(dict(metrics)))
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: TRIAL_ID))
    ctx = TrialContext(cfg, uri, experiment, parent, "test-predictor")

    run_trial(config, ctx)  # the first attempt replays the whole curve
    assert [(r["iteration"], r["val_mIoU"]) for r in reports] == list(curve.items())
    tracker = SweepTracker(uri, experiment, parent, cfg.name)
    run_id = tracker.child_of_trial(TRIAL_ID).info.run_id
    tracker.finish_child(run_id, "completed", "", "FINISHED")  # what the driver's callback does
    closed_at = client.get_run(run_id).info.end_time

    reports.clear()
    run_trial(config, ctx)  # restarted by a resumed Tune that never saw it finish
    last = max(curve)
    assert len(reports) == 1, reports
    assert reports[0]["iteration"] == last and reports[0]["val_mIoU"] == curve[last]
    assert reports[0]["latency_ms"] == estimate.latency_ms and reports[0]["variant_id"] == variant_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.end_time == closed_at  # never set back to RUNNING
    steps = [m.step for m in client.get_metric_history(run_id, "val_mIoU")]
    assert sorted(steps) == sorted(curve)  # each evaluation logged once
