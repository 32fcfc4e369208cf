"""The driver callback without Ray running: statuses, child runs closed, the front refreshed."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pandas as pd
import pytest

from topnas.platform import pareto as P
from topnas.platform.sweep import Ledger, SweepConfig
from topnas.platform.sweep import estimates
from topnas.platform.sweep.callback import ARTIFACTS, SweepCallback
from topnas.platform.objectives import OBJECTIVES
from topnas.platform.sweep.layout import SweepState
from topnas.platform.sweep.searcher import META_KEY

from .conftest import sweep_dict


class FakeClient:
    def __init__(self, tracker):
        self.tracker = tracker

    def get_metric_history(self, run_id, key):
        return [SimpleNamespace(step=s) for s, _ in self.tracker.metrics.get((run_id, key), [])]


class FakeTracker:
    """The SweepTracker surface the callback uses, in memory."""

    parent_run_id = "parent"

    def __init__(self):
        self.runs: dict[str, SimpleNamespace] = {}
        self.metrics: dict[tuple[str, str], list] = {}
        self.artifacts: list[str] = []
        self.client = FakeClient(self)

    def add_child(self, trial_id, status="RUNNING", tags=None, metrics=None):
        run = SimpleNamespace(info=SimpleNamespace(run_id=f"run-{trial_id}", status=status, run_name=trial_id),
                              data=SimpleNamespace(tags={"topnas.trial_id": trial_id, "topnas.status": "running",
                                                         **(tags or {})},
                                                   metrics={"params": 10.0, "macs": 20.0, **(metrics or {})}))
        self.runs[run.info.run_id] = run
        return run

    def child_of_trial(self, trial_id):
        return next((r for r in self.runs.values() if r.data.tags["topnas.trial_id"] == trial_id), None)

    def children(self):
        return list(self.runs.values())

    def create_child(self, run_key, run_name, tags, params, metrics):
        run = self.add_child(tags["topnas.trial_id"], tags=tags, metrics=metrics)
        return run.info.run_id, False

    def finish_child(self, run_id, status, reason, mlflow_status):
        run = self.runs[run_id]
        run.data.tags.update({"topnas.status": status, "topnas.status_reason": reason})
        run.info.status = mlflow_status

    def set_pareto(self, run_id, on_front):
        self.runs[run_id].data.tags["pareto"] = "true" if on_front else "false"

    def log_metrics(self, run_id, metrics, step):
        for k, v in metrics.items():
            self.metrics.setdefault((run_id, k), []).append((step, v))

    def log_parent_artifact(self, path, artifact_path=None):
        self.artifacts.append(path)


def _trial(cfg, trial_id, point, result, error_text=None):
    variant = cfg.space.build(point)
    est = estimates.predict(estimates.load_predictor(cfg.latency.predictor), variant)
    config = {**point, META_KEY: {"variant_id": variant.id, "optuna_trial": int(trial_id[1:]), **est.to_dict()}}
    return SimpleNamespace(trial_id=trial_id, config=config, last_result=result,
                           get_error=lambda: error_text, error_file=None)


def test_statuses_child_runs_and_front(tmp_path, test_predictor):
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.eval_interval": 6}))
    rng = random.Random(0)
    points = [{k: rng.choice(v) for k, v in cfg.space.parameters().items()} for _ in range(5)]
    tracker = FakeTracker()
    state = SweepState(cfg.name, "parent", "1", "sqlite:///x", {"val_mIoU": 0.0, "latency_ms": 500.0}, "pid")
    cb = SweepCallback(cfg, tracker, state)
    for tid in ("t0", "t1", "t2", "t3"):
        tracker.add_child(tid, status="FINISHED" if tid in ("t0", "t1") else "RUNNING")

    cb.on_trial_complete(0, [], _trial(cfg, "t0", points[0], {"val_mIoU": 0.30, "iteration": 12}))
    cb.on_trial_complete(0, [], _trial(cfg, "t1", points[1], {"val_mIoU": 0.20, "iteration": 12}))
    cb.on_trial_complete(0, [], _trial(cfg, "t2", points[2], {"val_mIoU": 0.90, "iteration": 6}))   # ASHA
    cb.on_trial_error(0, [], _trial(cfg, "t3", points[3], {}, "Traceback\n  ...\nTrainingFailed: oom"))
    cb.on_trial_error(0, [], _trial(cfg, "t4", points[4], {}, "Traceback\nImportError: no module x"))
    cb.on_experiment_end([])

    recs = {r.trial_id: r for r in Ledger(cfg.sweep_dir).records()}
    assert {t: r.status for t, r in recs.items()} == {
        "t0": "completed", "t1": "completed", "t2": "early_stopped", "t3": "failed", "t4": "failed"}
    assert recs["t3"].reason == "TrainingFailed: oom"           # the trial's own error, as Tune reports it
    assert tracker.runs["run-t3"].info.status == "FAILED"       # closed by the driver (the trial never closes it)
    assert recs["t4"].reason == "ImportError: no module x"      # died before its run: the driver made one
    assert recs["t4"].run_id == "run-t4" and tracker.runs["run-t4"].info.status == "FAILED"
    assert tracker.runs["run-t2"].info.status == "KILLED"
    assert recs["t2"].val_mIoU == 0.90 and recs["t0"].params == 10

    df = pd.read_csv(cfg.sweep_dir / "pareto" / "pareto.csv", keep_default_na=False, na_values=[""])
    flags = P.pareto_flags(P.points_from_records(df.to_dict("records"), OBJECTIVES), OBJECTIVES)
    assert list(df["pareto"].astype(bool)) == [f.pareto for f in flags]
    front = set(df[df["pareto"].astype(bool)]["trial_id"])
    assert "t2" not in front and front <= {"t0", "t1"} and "t0" in front
    assert {r.data.tags["topnas.trial_id"] for r in tracker.runs.values() if r.data.tags.get("pareto") == "true"} == front
    hv = tracker.metrics[("parent", "hypervolume")]
    assert [s for s, _ in hv] == [1, 2, 3, 4, 5]
    expected = P.hypervolume(P.points_from_records(df.to_dict("records"), OBJECTIVES), state.reference_point,
                             OBJECTIVES)
    assert hv[-1][1] == pytest.approx(expected)
    assert {p.rsplit("/", 1)[-1] for p in tracker.artifacts} == set(ARTIFACTS)


def test_abandoned_children_are_closed(tmp_path, test_predictor):
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor))
    tracker = FakeTracker()
    tracker.add_child("ghost", tags={"topnas.variant_id": "tf-x", "topnas.optuna_trial": "7"},
                      metrics={"latency_ms": 30.0})
    state = SweepState(cfg.name, "parent", "1", "sqlite:///x", {"val_mIoU": 0.0, "latency_ms": 500.0}, "pid")
    SweepCallback(cfg, tracker, state).on_experiment_end([])
    (rec,) = Ledger(cfg.sweep_dir).records()
    assert rec.trial_id == "ghost" and rec.status == "failed" and rec.reason.startswith("abandoned")
    assert rec.optuna_trial == 7 and tracker.runs["run-ghost"].info.status == "KILLED"


def test_latest_only_runs_the_newest_waiting_job():
    import threading

    from topnas.platform.sweep.callback import LatestOnly

    ran: list[str] = []

    def blocking(name, started, release):
        def job():
            started.set()
            release.wait(10)
            ran.append(name)
        return job

    started, release, done = threading.Event(), threading.Event(), threading.Event()
    drawer = LatestOnly("test")
    drawer.submit(blocking("first", started, release))
    assert started.wait(10)
    for name in ("second", "third"):  # submitted while "first" runs, each superseded by the next
        drawer.submit(lambda name=name: ran.append(name))
    drawer.submit(lambda: (ran.append("fourth"), done.set()))
    release.set()
    assert done.wait(10)
    drawer.close()
    assert ran == ["first", "fourth"]

    started, release = threading.Event(), threading.Event()
    drawer = LatestOnly("test")
    drawer.submit(blocking("fifth", started, release))
    assert started.wait(10)
    drawer.submit(lambda: ran.append("dropped"))  # still waiting when close() is called
    closing = threading.Thread(target=drawer.close)
    closing.start()
    while drawer._waiting is not None:  # noqa: SLF001 - close() has dropped it
        closing.join(0.01)
    release.set()
    closing.join(10)
    assert ran == ["first", "fourth", "fifth"]


def test_the_front_is_drawn_off_tunes_thread_and_final_at_the_end(tmp_path, test_predictor, monkeypatch):
    """on_trial_complete returns while the plots are still being drawn; the files at the end show every trial."""
    import threading

    from topnas.platform import pareto_plots

    drawing, release = threading.Event(), threading.Event()
    real_png = pareto_plots.write_front_png
    titles: list[str] = []

    def slow_png(df, path, **kw):
        drawing.set()
        release.wait(30)
        titles.append(kw["title"])
        return real_png(df, path, **kw)

    monkeypatch.setattr(pareto_plots, "write_front_png", slow_png)
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor))
    rng = random.Random(0)
    points = [{k: rng.choice(v) for k, v in cfg.space.parameters().items()} for _ in range(3)]
    tracker = FakeTracker()
    state = SweepState(cfg.name, "parent", "1", "sqlite:///x", {"val_mIoU": 0.0, "latency_ms": 500.0}, "pid")
    cb = SweepCallback(cfg, tracker, state)
    for i in range(3):
        tracker.add_child(f"t{i}")
        cb.on_trial_complete(0, [], _trial(cfg, f"t{i}", points[i], {"val_mIoU": 0.1 * (i + 1), "iteration": 12}))
        assert drawing.wait(30)  # the first drawing is under way and blocked: Tune's thread went on
    df = pd.read_csv(cfg.sweep_dir / "pareto" / "pareto.csv")
    assert list(df["trial_id"]) == ["t0", "t1", "t2"]  # the CSV, tags and metrics are written at once
    assert [s for s, _ in tracker.metrics[("parent", "hypervolume")]] == [1, 2, 3]
    assert not tracker.artifacts  # nothing uploaded while the first drawing waits
    release.set()
    cb.on_experiment_end([])
    assert "of 1 trials" in titles[0] and "of 3 trials" in titles[-1]  # the last by settle(), in this thread
    assert not any("of 2 trials" in t for t in titles)  # superseded while it waited: never drawn
    assert {p.rsplit("/", 1)[-1] for p in tracker.artifacts} == set(ARTIFACTS)
    assert "of 3 trials" in (cfg.sweep_dir / "pareto" / "pareto_front.html").read_text()
