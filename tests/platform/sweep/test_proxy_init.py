"""Proxy trials can start from sliced ImageNet weights: ``proxy.train.model.init`` / ``pretrained``."""
from __future__ import annotations

import random

import pytest

from tests.platform.sweep.conftest import sweep_dict
from topnas.errors import ConfigError
from topnas.platform.sweep import SweepConfig


def test_proxy_trials_take_the_imagenet_init_option(tmp_path, test_predictor):
    zoo = tmp_path / "modelzoos" / "classification"
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{
        "proxy.train": {"model": {"init": "imagenet_nearest", "pretrained": str(zoo)}}}))
    variant = cfg.space.sample(random.Random(1))
    tc = cfg.train_config(variant, "trial-x")
    assert (tc.model.init, tc.model.pretrained) == ("imagenet_nearest", str(zoo))
    assert tc.variant.model == variant.model.replace(num_classes=tc.model.num_classes)  # the sweep's variant


@pytest.mark.parametrize("key", ["variant", "num_classes", "norm"])
def test_the_sweep_still_owns_the_architecture(tmp_path, test_predictor, key):
    with pytest.raises(ConfigError) as info:
        SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.train": {"model": {key: 3}}}))
    assert info.value.field == f"proxy.train.model.{key}"
