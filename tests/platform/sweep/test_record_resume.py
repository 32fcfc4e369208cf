"""A finished trial whose record fails is never lost: written ahead, recorded again, or a loud stop.

Against a real ``mlflow server``: the callback first talks to a tracking URI where nothing listens
(the server "is down"), then the resume path records the same trial on the real server. MLflow,
the ledger and the pending file must agree at every step.
"""
from __future__ import annotations

import contextlib
import io
import random

import pytest

from tests.helpers.mlflow_server import free_port
from topnas.platform import tracking
from topnas.platform.cli import main
from topnas.platform.sweep import Ledger, SweepConfig
from topnas.platform.sweep.callback import RecordError, SweepCallback, settle
from topnas.platform.sweep.layout import SweepState
from topnas.platform.sweep.ledger import PendingTrials
from topnas.platform.sweep.mlflow_runs import SweepTracker

from .conftest import sweep_dict
from .test_callback import _trial

pytestmark = pytest.mark.integration


@pytest.fixture
def no_retries(monkeypatch):
    """MLflow's client retries a refused connection for minutes by default."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")


def test_unrecorded_trial_is_recorded_on_resume(tmp_path, test_predictor, mlflow_server_uri, no_retries):
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, name="rec_resume"))
    client = tracking.get_client(mlflow_server_uri)
    exp = tracking.get_or_create_experiment("rec-resume", client=client)
    parent = client.create_run(exp, run_name="rec_resume").info.run_id
    child = client.create_run(exp, run_name="t0", tags={
        tracking.PARENT_RUN_TAG: parent, "topnas.trial_id": "t0", "topnas.status": "running"}).info.run_id
    client.log_metric(child, "params", 1000.0)
    state = SweepState(cfg.name, parent, exp, mlflow_server_uri, {"val_mIoU": 0.0, "latency_ms": 500.0}, "pid")
    rng = random.Random(0)
    point = {k: rng.choice(v) for k, v in cfg.space.parameters().items()}
    trial = _trial(cfg, "t0", point, {"val_mIoU": 0.4, "iteration": cfg.proxy.iterations})

    down = SweepTracker(f"http://127.0.0.1:{free_port()}", exp, parent, cfg.name)
    SweepCallback(cfg, down, state).on_trial_complete(0, [], trial)  # must not raise: the sweep goes on
    assert Ledger(cfg.sweep_dir).records() == []
    assert [e["trial_id"] for e in PendingTrials(cfg.sweep_dir).entries()] == ["t0"]
    assert client.get_run(child).info.status == "RUNNING"
    state.save(cfg.sweep_dir)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["pareto", "show", str(cfg.sweep_dir)]) == 0
    assert "1 finished trial(s) not recorded yet (t0;" in out.getvalue()
    assert "topnas sweep --resume rec_resume" in out.getvalue()

    with pytest.raises(RecordError) as info:  # the end of the sweep while the server is still down
        settle(cfg, state, down)
    msg = str(info.value)
    assert "\n" not in msg and "topnas sweep --resume rec_resume" in msg and "pending.jsonl" in msg
    assert Ledger(cfg.sweep_dir).records() == []

    up = SweepTracker(mlflow_server_uri, exp, parent, cfg.name)
    settle(cfg, state, up, close_abandoned=False)  # what `topnas sweep --resume` does before Ray
    (rec,) = Ledger(cfg.sweep_dir).records()
    assert (rec.trial_id, rec.status, rec.run_id, rec.val_mIoU, rec.params) == ("t0", "completed", child, 0.4, 1000)
    assert PendingTrials(cfg.sweep_dir).entries() == []
    run = client.get_run(child)
    assert run.info.status == "FINISHED" and run.data.tags["topnas.status"] == "completed"
    assert run.data.tags["pareto"] == "true"
    hv = client.get_metric_history(parent, "hypervolume")
    assert [m.step for m in hv] == [1]

    # Tune re-runs the trial after the resume and reports it again: nothing is recorded twice, and a
    # run someone re-opened is set back to the ledger's verdict.
    client.update_run(child, status="RUNNING")
    cb = SweepCallback(cfg, up, state)
    cb.on_trial_error(0, [], _trial(cfg, "t0", point, {}, "RuntimeError: replayed"))
    assert len(Ledger(cfg.sweep_dir).path.read_text().splitlines()) == 1
    assert Ledger(cfg.sweep_dir).records()[0].status == "completed"
    assert client.get_run(child).info.status == "FINISHED"
    settle(cfg, state, up)
    assert [m.step for m in client.get_metric_history(parent, "hypervolume")] == [1]  # no step logged twice
