"""A tiny fixture dataset and a small-config factory shared by the training tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from topnas.platform.data.fixture import write_fixture
from topnas.platform.train.train_config import TrainConfig

NUM_CLASSES = 5


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Any:
    """Workers run with OMP_NUM_THREADS=1; in-process tests do the same (the machine is shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def train_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding ADEChallengeData2016: 5 classes, 16 train / 4 val images of 96x128."""
    out = tmp_path_factory.mktemp("train_fixture")
    write_fixture(out, num_classes=NUM_CLASSES, train=16, val=4, size=(96, 128), seed=3)
    return out


def small_config_dict(root: Path, storage: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A TopFormer-T job sized for CPU tests: 96x96 crops, 30 iterations, 1 eval at the end."""
    cfg: dict[str, Any] = {
        "name": "test-run",
        "model": {"preset": "tiny", "num_classes": NUM_CLASSES},
        "data": {"root": str(root), "crop_size": [96, 96], "img_scale": [512, 128], "test_img_scale": [512, 128],
                 "samples_per_gpu": 2, "workers_per_gpu": 0},
        "optimizer": {"lr": 1e-3},
        "schedule": {"max_iters": 30, "warmup_iters": 5},
        "runtime": {"log_interval": 5, "eval_interval": 30, "checkpoint_interval": 10},
        "scaling": {"num_workers": 2, "use_gpu": False, "cpus_per_worker": 1, "max_failures": 0,
                    "storage_path": str(storage), "report_poll_s": 0.2},
        "tracking": {"uri": f"sqlite:///{storage / 'mlflow.db'}", "experiment": "test-train"},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(cfg.get(section), dict):
            cfg[section] = {**cfg[section], **values}
        else:
            cfg[section] = values
    return cfg


@pytest.fixture
def make_config(train_fixture: Path, tmp_path: Path) -> Callable[..., TrainConfig]:
    def make(**sections: dict[str, Any]) -> TrainConfig:
        return TrainConfig.from_dict(small_config_dict(train_fixture, tmp_path / "runs", **sections))

    return make
