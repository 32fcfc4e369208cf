"""Sweep test helpers: a fixed latency predictor and a tiny sweep YAML on the fixture dataset."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

# Small space: 4 stages x (2 widths x 2 depths) except the first, 2 x 2 transformer, 2 head widths.
SPACE: dict[str, Any] = {
    "name": "test-small",
    "num_classes": 5,
    "input_size": [[512, 512]],
    "stem_block": [3, 1, 16, 1],
    "stages": [
        {"channels": [16], "depth": [1, 2], "kernels": [3, 3], "expand_ratios": [4, 3]},
        {"channels": [24, 32], "depth": [1, 2], "kernels": [5, 5], "expand_ratios": [3, 3]},
        {"channels": [48, 64], "depth": [1, 2], "kernels": [3, 3], "expand_ratios": [3, 3]},
        {"channels": [64, 96], "depth": [1, 2], "kernels": [5, 5], "expand_ratios": [6, 6]},
    ],
    "transformer": {"depths": [1, 2], "num_heads": [2, 4], "key_dim": [16], "attn_ratio": [2], "mlp_ratio": [2],
                    "c2t_stride": [2]},
    "head": {"channels": [64, 128], "is_dw": [True], "injection_type": ["muli_sum"]},
}


def write_predictor(path: Path) -> Path:
    """A predictor with fixed coefficients (the tests do not depend on calibration data)."""
    from topnas.platform.latency.predictor import DEFAULT_GROUPS, SCHEMA, TERMS, LatencyPredictor

    per_unit = {"macs": 0.02, "bytes": 0.5, "count": 0.01}
    coefficients: dict[str, Any] = {"intercept_ms": 2.0}
    coefficients.update({g.name: {t: per_unit[t] for t in TERMS} for g in DEFAULT_GROUPS})
    data = {
        "schema": SCHEMA, "created": "test", "device": {"name": "test-device"}, "calibration": {},
        "features": {"groups": [g.to_dict() for g in DEFAULT_GROUPS], "terms": list(TERMS)},
        "coefficients": coefficients, "interval": {"level": 0.9, "log_lo": -0.1, "log_hi": 0.12},
        "feature_range": {}, "fit": {}, "transfer": None,
    }
    LatencyPredictor.from_dict(data)  # validates
    path.write_text(json.dumps(data))
    return path


def sweep_dict(root: Path, predictor: Path, **changes: Any) -> dict[str, Any]:
    """A tiny sweep: fixture dataset, 20 iterations of 64x64 crops, 1 evaluation, 1 worker per trial."""
    data: dict[str, Any] = {
        "name": "t_sweep",
        "search_space": copy.deepcopy(SPACE),
        "seed": 0,
        "sampler": {"name": "nsga2", "options": {"population_size": 4}},
        "num_samples": 6,
        "max_concurrent": 2,
        "latency": {"predictor": str(predictor), "budget_ms": None},
        "proxy": {
            "dataset": str(root / "data" / "fixture_c5"),
            "fixture": {"classes": 5, "train": 8, "val": 2, "size": [128, 160], "seed": 0},
            "iterations": 12, "crop_size": [64, 64], "eval_interval": None, "samples_per_gpu": 2,
            "val_max_samples": 2, "workers_per_trial": 1, "cpus_per_worker": 1, "use_gpu": False,
            "train": {"data": {"img_scale": [160, 128], "test_img_scale": [160, 128], "workers_per_gpu": 0,
                               "photometric": False},
                      "optimizer": {"lr": 0.001}, "runtime": {"log_interval": 12}},
        },
        "storage": str(root / "sweeps"),
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "test-sweeps"},
    }
    for key, value in changes.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


def write_sweep_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def test_predictor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_predictor(tmp_path_factory.mktemp("predictor") / "test_predictor.json")


# ----------------------------------------------------------------------------- replay (no training)
REPLAY_ITERATIONS, REPLAY_EVAL = 40, 10  # 4 evaluations: rungs at 10, 20 (eta 2) below the budget 40


def replay_sweep_dict(root: Path, predictor: Path, table: Path, **changes: Any) -> dict[str, Any]:
    """A sweep that replays ``table`` (no dataset, no training) with MO-ASHA on, 8 trials 2 at a time."""
    data = sweep_dict(root, predictor, **{"replay": {"table": str(table)}, "num_samples": 8,
                                          "scheduler": {"name": "moasha", "reduction_factor": 2},
                                          "proxy": {"iterations": REPLAY_ITERATIONS, "eval_interval": REPLAY_EVAL}})
    for key, value in changes.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


@pytest.fixture(scope="session")
def replay_table(tmp_path_factory: pytest.TempPathFactory, test_predictor: Path) -> Path:
    """A synthetic 24-variant table of the test space (evaluations every 10 iterations up to 40, 2 seeds)."""
    from topnas.platform.sweep import estimates
    from topnas.platform.sweep.replay import write_synthetic_table
    from topnas.search_spaces import SearchSpace

    return write_synthetic_table(tmp_path_factory.mktemp("replay") / "curves.csv", SearchSpace.from_dict(SPACE),
                                 estimates.load_predictor(test_predictor), 24, REPLAY_ITERATIONS, REPLAY_EVAL,
                                 seeds=(0, 1))
