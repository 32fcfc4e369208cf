"""``model.init: imagenet_nearest`` in a training job: a searched variant starts from sliced ImageNet weights."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from topnas.errors import ConfigError


def _variant_dict():
    from topnas.search_spaces import default_space

    v = default_space().sample(random.Random(0))
    return {k: val for k, val in v.to_dict().items() if k not in ("id", "name")}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """modelzoos/classification with the three official file names (random weights, official format)."""
    from topnas.search_spaces import preset_variant
    from topnas.topformer.inherit import OFFICIAL_IMAGENET_FILES

    folder = tmp_path_factory.mktemp("modelzoos") / "classification"
    folder.mkdir()
    for preset, name in OFFICIAL_IMAGENET_FILES.items():
        torch.manual_seed(len(name))
        sd = {k: v for k, v in preset_variant(preset).build(norm="BN").backbone.state_dict().items()
              if not k.startswith("SIM.")}
        torch.save({"state_dict_ema": sd}, folder / name)
    return folder


def test_a_searched_variant_trains_from_the_nearest_imagenet_checkpoint(make_config, zoo, tmp_path):
    from mlflow import MlflowClient

    from topnas.platform.train.loop import LocalSession, TrainJob, run_loop

    cfg = make_config(model={"preset": None, "variant": _variant_dict(), "init": "imagenet_nearest",
                             "pretrained": str(zoo), "norm": "BN"},
                      schedule={"max_iters": 2, "warmup_iters": 1},
                      runtime={"log_interval": 1, "eval_interval": 2, "checkpoint_interval": 2},
                      scaling={"num_workers": 1}, tracking={"export_onnx": False, "log_checkpoint": False})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("init")).info.run_id
    summary = run_loop(cfg, TrainJob(cfg.name, str(tmp_path / "run"), run_id, uri), LocalSession(tmp_path / "run"))
    assert summary["iteration"] == 2
    tags = client.get_run(run_id).data.tags
    assert tags["topnas.init"] == "imagenet_nearest"
    counts = {k: int(tags[f"topnas.init_{k}"]) for k in ("inherited", "sliced", "partial", "fresh")}
    assert counts["inherited"] + counts["sliced"] + counts["partial"] > 0 and counts["fresh"] > 0
    local = client.download_artifacts(run_id, "init/imagenet_inherit.json", str(tmp_path))
    report = json.loads(Path(local).read_text())
    assert report["counts"] == counts and Path(report["source"]).parent == zoo
    assert all(t["status"] == "fresh" for k, t in report["tensors"].items() if k.startswith("SIM."))


def test_a_missing_imagenet_checkpoint_fails_before_training(make_config, tmp_path):
    from topnas.platform.train import check_ready

    cfg = make_config(model={"preset": None, "variant": _variant_dict(), "init": "imagenet_nearest",
                             "pretrained": str(tmp_path / "modelzoos" / "classification")})
    with pytest.raises(ConfigError, match=r"model\.pretrained: got '.*topformer-[TSB]-224-.*\.pth'.*"
                                          r"download the official ImageNet checkpoints"):
        check_ready(cfg)


def test_an_unofficial_file_name_is_refused_before_training(make_config, tmp_path):
    from topnas.platform.train import check_ready

    other = tmp_path / "my_backbone.pth"
    torch.save({"state_dict": {}}, other)
    cfg = make_config(model={"preset": None, "variant": _variant_dict(), "init": "imagenet_nearest",
                             "pretrained": str(other)})
    with pytest.raises(ConfigError, match=r"model\.pretrained: got '.*my_backbone\.pth'.*topformer-\{T,S,B\}"):
        check_ready(cfg)
