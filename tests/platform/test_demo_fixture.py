"""The demo and the trainer write a fixture from its spec once (FixtureSpec.ensure), with the spec's settings."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from topnas.errors import ConfigError
from topnas.platform.demo import _write_fixture
from topnas.platform.train.train_config import FixtureSpec


def _cfg(dataset, fixture):
    return SimpleNamespace(proxy=SimpleNamespace(dataset=str(dataset), fixture=fixture))


def test_demo_writes_the_proxy_fixture_once(tmp_path):
    said: list[str] = []
    cfg = _cfg(tmp_path / "fx", {"classes": 4, "train": 3, "val": 2, "size": [32, 40], "seed": 1, "colours": 2})
    _write_fixture(cfg, said.append)
    root = tmp_path / "fx" / "ADEChallengeData2016"
    meta = json.loads((root / "dataset.json").read_text())
    assert (meta["num_classes"], meta["splits"], meta["image_size"], meta["seed"], meta["colours"]) == (
        4, {"training": 3, "validation": 2}, [32, 40], 1, 2)
    assert said == [f"   wrote {root}"]
    _write_fixture(cfg, said.append)  # present: left alone
    assert said[-1] == f"   present: {root}"


def test_demo_fixture_spec_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError) as err:
        _write_fixture(_cfg(tmp_path / "fx", {"classes": 4, "shades": 2}), lambda _: None)
    assert err.value.field.startswith("proxy.fixture")
    with pytest.raises(ConfigError) as err:
        _write_fixture(_cfg(tmp_path / "none", None), lambda _: None)
    assert err.value.field == "proxy.dataset"


def test_an_existing_dataset_without_a_spec_is_used_as_it_is(tmp_path):
    said: list[str] = []
    root = FixtureSpec(classes=3, train=1, val=1, size=(32, 40)).write(tmp_path / "data")
    _write_fixture(_cfg(tmp_path / "data", None), said.append)
    assert said == [f"   present: {root}"]


def test_trials_sharing_a_root_write_the_fixture_once(tmp_path):
    spec = FixtureSpec(classes=3, train=2, val=1, size=(32, 40))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: spec.ensure(tmp_path / "shared"), range(4)))
    assert [written for _, written in results].count(True) == 1
    assert {target for target, _ in results} == {tmp_path / "shared" / "ADEChallengeData2016"}
    assert len(list((tmp_path / "shared" / "ADEChallengeData2016" / "images" / "training").iterdir())) == 2
