"""The training loop's MLflow logger on its own thread: same record as the plain logger, sources may vanish."""
from __future__ import annotations

import tempfile
from pathlib import Path

from topnas.platform.train.mlflow_logger import BackgroundLogger


def test_queued_calls_reach_the_run_in_order_and_artifacts_survive_their_folder(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("bg", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(exp).info.run_id

    logger = BackgroundLogger(uri, run_id)
    logger.tags({"topnas.norm": "BN"})
    for step in (1, 2, 3):
        logger.metrics({"loss": 1.0 / step, "lr": None}, step=step)  # None: not logged, as RankZeroLogger
    logger.metrics({"loss": 9.0}, step=2)  # a replayed step keeps its first value
    with tempfile.TemporaryDirectory() as tmp:  # removed before the thread sends it
        path = Path(tmp) / "per_class.json"
        path.write_text("{}\n")
        logger.artifact(path, "eval")
    logger.tags({"topnas.norm": "SyncBN"})  # the later value wins
    logger.wait()  # everything so far handed over (as before a checkpoint)
    assert client.get_run(run_id).data.tags["topnas.norm"] == "SyncBN"
    assert logger.close() is True and logger.dropped == 0
    assert logger.close() is True  # idempotent

    run = client.get_run(run_id)
    assert run.data.tags["topnas.norm"] == "SyncBN" and "lr" not in run.data.metrics
    assert [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)] == \
        [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    assert [f.path for f in client.list_artifacts(run_id, "eval")] == ["eval/per_class.json"]
