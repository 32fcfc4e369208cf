"""Ray Train on CPU: a 2-worker job on the fixture with MLflow, and recovery from a worker failure.

Each ``fit()`` costs 13-25 s of Ray overhead on the 2-core machine, so both tests share one
uninterrupted run (30 iterations of 96x96 crops, checkpoints every 10, one evaluation at the end).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from topnas.platform.train import TrainConfig, run_training
from topnas.platform.train.mlflow_logger import TRAIN_RUN_TAG

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train_storage")


def _config(train_fixture: Path, storage: Path, name: str, **sections) -> TrainConfig:
    from tests.platform.train.conftest import small_config_dict

    raw = small_config_dict(train_fixture, storage, **sections)
    raw["name"] = name
    return TrainConfig.from_dict(raw)


@pytest.fixture(scope="module")
def baseline(embedded_ray, train_fixture: Path, storage: Path):
    cfg = _config(train_fixture, storage, "baseline")
    return run_training(cfg, resume="never")


def _history(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def test_two_worker_run_lowers_loss_and_logs_to_mlflow(baseline) -> None:
    from mlflow import MlflowClient

    result = baseline
    assert result.iteration == 30 and result.checkpoint is not None and result.checkpoint.is_dir()
    assert {"model.pt", "optimizer.pt", "rng_rank0.pt", "rng_rank1.pt"} <= {p.name for p in result.checkpoint.iterdir()}
    assert 0.0 <= result.metrics["val_mIoU"] <= 1.0

    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "baseline"
    loss = _history(client, run.info.run_id, "loss")
    assert sorted(loss) == [5, 10, 15, 20, 25, 30]
    assert loss[30] < loss[5], loss
    assert set(_history(client, run.info.run_id, "lr")) == set(loss)
    assert set(_history(client, run.info.run_id, "images_per_s")) == set(loss)
    for key in ("val_mIoU", "val_mAcc", "val_aAcc"):
        assert list(_history(client, run.info.run_id, key)) == [30], key
    params = run.data.params
    assert params["optimizer.lr"] == "0.001" and params["model.preset"] == "tiny"
    assert params["scaling.num_workers"] == "2" and params["variant.id"] == result.variant_id
    tags = run.data.tags
    assert tags[TRAIN_RUN_TAG] == "baseline" and tags["topnas.variant_id"] == result.variant_id
    assert tags["topnas.preset"] == "tiny" and tags["topnas.workers"] == "2"
    assert tags["topnas.device"] == "cpu" and tags["topnas.norm"] == "BN"
    assert "mlflow.source.git.commit" in tags
    assert tags["topnas.final_iteration"] == "30"
    artifacts = {a.path for folder in ("config", "checkpoint", "onnx", "eval")
                 for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"config/train_config.yaml", "checkpoint/model.pt", f"onnx/{result.variant_id}.onnx",
            "eval/per_class.json"} <= artifacts


def test_worker_failure_resumes_on_the_same_curve(baseline, train_fixture: Path, storage: Path) -> None:
    from mlflow import MlflowClient

    cfg = _config(train_fixture, storage, "faulty", scaling={"max_failures": 1},
                  fault_injection={"rank": 1, "at_iter": 17},
                  tracking={"export_onnx": False, "log_checkpoint": False})
    result = run_training(cfg, resume="never")
    assert (storage / "faulty" / "fault_injected_rank1_iter17").is_file()  # the fault did fire
    assert result.iteration == 30 and result.resumed

    client = MlflowClient(result.tracking_uri)
    ref = client.get_metric_history(baseline.mlflow_run_id, "lr")
    got = client.get_metric_history(result.mlflow_run_id, "lr")
    # step 15 ran twice (restart from the checkpoint at 10), on the same lr value; it is logged once
    assert sorted({(m.step, m.value) for m in got}) == sorted({(m.step, m.value) for m in ref})
    steps = [m.step for m in got]
    assert len(steps) == len(set(steps)) and 15 in steps
    ref_loss = _history(client, baseline.mlflow_run_id, "loss")
    got_loss = _history(client, result.mlflow_run_id, "loss")
    assert got_loss == pytest.approx(ref_loss, rel=1e-5)  # same data, RNG and weights after resume
    assert result.metrics["val_mIoU"] == pytest.approx(baseline.metrics["val_mIoU"], rel=1e-6)
