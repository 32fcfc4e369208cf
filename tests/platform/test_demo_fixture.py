"""The demo writes its sweep's fixture from ``proxy.fixture`` once, with the spec's settings."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from topnas.errors import ConfigError
from topnas.platform.demo import _write_fixture


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
