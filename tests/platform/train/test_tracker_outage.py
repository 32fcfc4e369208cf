"""The rank-0 MLflow logger across a real ``mlflow server`` that is stopped and restarted mid-run.

One server (SQLite backend in a folder of this test) is started, stopped and started again on the
same port and the same store, as a tracking server restarted by its operator. The logger must keep
what it could not send, deliver it once the server is back, never log a step twice (also when a
new logger replays steps, as a restarted worker does), and tag the run when it had to drop values.
"""
from __future__ import annotations

import pytest

from tests.helpers.mlflow_server import free_port, mlflow_server
from topnas.platform.train.mlflow_logger import LOST_TAG, RankZeroLogger

pytestmark = pytest.mark.integration

KEYS = ("loss", "lr")


def _log(logger: RankZeroLogger, steps) -> None:
    for step in steps:
        logger.metrics({"loss": 1.0 / step, "lr": 1e-3 * step}, step=step)


def _steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_logger_survives_a_server_restart(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    port, store = free_port(), tmp_path / "server"
    with mlflow_server(store, port=port) as uri:
        client = MlflowClient(uri)
        exp = client.create_experiment("outage")
        run_id = client.create_run(exp, run_name="train").info.run_id
        small_id = client.create_run(exp, run_name="small-buffer").info.run_id
        lost_id = client.create_run(exp, run_name="closed-while-down").info.run_id
        logger = RankZeroLogger(uri, run_id, backoff_s=0.0, request_timeout_s=5)
        small = RankZeroLogger(uri, small_id, backoff_s=0.0, max_pending=6, request_timeout_s=5)
        _log(logger, range(1, 6))
        _log(small, range(1, 3))
        lost = RankZeroLogger(uri, lost_id, backoff_s=0.0, request_timeout_s=5)
        _log(lost, [1])
        assert logger.pending == 0 and _steps(client, run_id, "loss") == [1, 2, 3, 4, 5]

    # ---- server down: training goes on, everything is queued
    _log(logger, range(6, 11))
    artifact = tmp_path / "tmp_export" / "model.onnx"
    artifact.parent.mkdir()
    artifact.write_bytes(b"onnx bytes")
    logger.artifact(artifact, "onnx")
    artifact.unlink()  # the caller's temporary folder is gone; the logger kept a copy
    logger.tags({"topnas.device": "cpu"})
    _log(small, range(3, 11))  # 16 values into a 6-value buffer: the 10 oldest are dropped
    assert logger.pending == 5 * 2 + 1 + 1 and small.pending == 6
    # a job that ends while the server is down: what is queued is counted lost, the tag waits for the server
    _log(lost, [2, 3])
    assert not lost.close(timeout_s=1.0)
    assert lost.dropped == 4 and lost.pending == 0

    # ---- the same server comes back (same port, same store)
    with mlflow_server(store, port=port) as uri2:
        assert uri2 == uri
        _log(logger, range(11, 16))
        assert logger.pending == 0
        for key in KEYS:
            assert _steps(client, run_id, key) == list(range(1, 16))  # every step exactly once

        # a restarted worker replays steps 11..15 and goes on: nothing logged twice
        replay = RankZeroLogger(uri, run_id, backoff_s=0.0, request_timeout_s=5)
        _log(replay, range(11, 18))
        assert replay.close(timeout_s=30) and replay.skipped_replayed == 5 * len(KEYS)
        assert logger.close(timeout_s=30)
        for key in KEYS:
            assert _steps(client, run_id, key) == list(range(1, 18))
        run = client.get_run(run_id)
        assert run.data.tags["topnas.device"] == "cpu" and LOST_TAG not in run.data.tags
        assert [f.path for f in client.list_artifacts(run_id, "onnx")] == ["onnx/model.onnx"]
        # the loss value of a step is the first one logged
        assert {m.step: m.value for m in client.get_metric_history(run_id, "loss")}[12] == pytest.approx(1 / 12)

        assert not small.close(timeout_s=30)
        tags = client.get_run(small_id).data.tags
        assert tags[LOST_TAG] == "10" and "dropped by the 6-value buffer" in tags[LOST_TAG + "_detail"]
        # the newest values survived, once each
        assert _steps(client, small_id, "loss") == [1, 2, 8, 9, 10]

        assert lost.flush()  # only the loss tag was left to send
        tags = client.get_run(lost_id).data.tags
        assert tags[LOST_TAG] == "4" and "metric loss@2" in tags[LOST_TAG + "_detail"]
        assert _steps(client, lost_id, "loss") == [1]


def test_a_training_run_keeps_every_step_across_a_server_restart(make_config, tmp_path, monkeypatch):
    """The real loop (in-process) logs to a real server that is stopped at iteration 4 and back at 8."""
    import contextlib

    from mlflow import MlflowClient

    from topnas.platform.train import loop

    iters = 12
    cfg = make_config(schedule={"max_iters": iters, "warmup_iters": 2},
                      runtime={"log_interval": 1, "eval_interval": iters, "checkpoint_interval": iters},
                      scaling={"num_workers": 1}, tracking={"export_onnx": False, "log_checkpoint": False})
    port, store = free_port(), tmp_path / "server"
    server = contextlib.ExitStack()
    uri = server.enter_context(mlflow_server(store, port=port))
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("outage-train")).info.run_id
    events = []

    def operator(cfg_, job, rank, iteration):  # runs at the top of every iteration
        if iteration == 4:
            server.close()
            events.append("stopped")
        elif iteration == 8:
            server.enter_context(mlflow_server(store, port=port))
            events.append("restarted")

    monkeypatch.setattr(loop, "_maybe_inject_fault", operator)
    try:
        summary = loop.run_loop(cfg, loop.TrainJob(cfg.name, str(tmp_path / "run"), run_id, uri),
                                loop.LocalSession(tmp_path / "run"))
        assert events == ["stopped", "restarted"] and summary["iteration"] == iters
        assert "tracking_lost" not in summary
        for key in ("loss", "lr", "images_per_s"):
            assert _steps(client, run_id, key) == list(range(1, iters + 1)), key
        assert _steps(client, run_id, "val_mIoU") == [iters]
        tags = client.get_run(run_id).data.tags
        assert LOST_TAG not in tags and tags["topnas.norm"] == "BN"
        assert [f.path for f in client.list_artifacts(run_id, "eval")] == ["eval/per_class.json"]
    finally:
        server.close()
