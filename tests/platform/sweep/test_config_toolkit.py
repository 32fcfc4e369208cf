"""The sweep config on the shared toolkit: owned training keys from one list, composition, coercion."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from topnas.errors import ConfigError
from topnas.platform.sweep import SweepConfig, load_sweep_config
from topnas.platform.sweep.sweep_config import ProxyConfig, SweepFile

from .conftest import sweep_dict, write_sweep_yaml


def _owned(cfg: SweepConfig) -> list[tuple[str, str | None]]:
    """Every (section, key) the sweep sets in a trial, read from the one mapping it writes."""
    out: list[tuple[str, str | None]] = []
    for key, value in cfg._trial_settings(None, "x").items():
        whole = not isinstance(value, dict) or key == "tracking"  # tracking: every field is the sweep's
        out += [(key, None)] if whole else [(key, sub) for sub in value]
    return out


def test_every_key_the_sweep_sets_is_rejected_in_proxy_train(tmp_path, test_predictor):
    base = sweep_dict(tmp_path, test_predictor)
    owned = _owned(SweepConfig.from_dict(base))
    assert {("model", "norm"), ("model", "input_size"), ("scaling", "ray_address"), ("data", "fixture"),
            ("runtime", "seed"), ("schedule", "max_iters"), ("name", None), ("tracking", None),
            ("fault_injection", None)} <= set(owned)  # the keys of the hand-kept list this replaced
    assert ("model", "init") not in owned and ("model", "pretrained") not in owned  # the user's
    for section, key in owned:
        train = copy.deepcopy(base["proxy"]["train"])
        train[section] = {**dict(train.get(section) or {}), key: 1} if key else {"x": 1}
        with pytest.raises(ConfigError) as info:
            SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.train": train}))
        assert info.value.field == (f"proxy.train.{section}.{key}" if key else f"proxy.train.{section}")
        assert info.value.allowed == "<set by the sweep>"


def test_train_keys_the_sweep_does_not_own_pass_through(tmp_path, test_predictor):
    train = sweep_dict(tmp_path, test_predictor)["proxy"]["train"]
    train = {**train, "scaling": {"report_poll_s": 0.5}, "schedule": {"warmup_iters": 3}}
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.train": train}))
    tc = cfg.train_config(cfg.first_variant(), "t")
    assert tc.scaling.report_poll_s == 0.5 and tc.schedule.warmup_iters == 3
    assert tc.model.norm == "auto" and tc.scaling.ray_address is None and tc.fault_injection is None


def test_a_sweep_yaml_composes_bases_and_coerces_overrides(tmp_path, test_predictor):
    data = sweep_dict(tmp_path, test_predictor)
    proxy = data.pop("proxy")
    (tmp_path / "_base_").mkdir()
    write_sweep_yaml(tmp_path / "_base_" / "proxy.yaml", {"proxy": proxy})
    path = write_sweep_yaml(tmp_path / "s.yaml", {"_base_": ["_base_/proxy.yaml"], **data})
    cfg = load_sweep_config(path, ["proxy.crop_size=96", "proxy.cpus_per_worker=2", "latency.budget_ms=90",
                                   "proxy.use_gpu=false", "sampler.options={population_size: 6}"])
    assert cfg.proxy.crop_size == (96, 96) and cfg.proxy.cpus_per_worker == 2.0
    assert isinstance(cfg.proxy.cpus_per_worker, float) and cfg.latency.budget_ms == 90.0
    assert cfg.sampler_options == {"population_size": 6} and cfg.proxy.dataset == proxy["dataset"]
    assert SweepConfig.from_dict(yaml.safe_load(cfg.to_yaml())).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("change, field, allowed", [
    ({"proxy.bogus_key": 1}, "proxy.bogus_key", [f.name for f in dataclasses.fields(ProxyConfig)]),
    ({"latency.bogus_key": 1}, "latency.bogus_key", ["budget_ms", "max_rejections", "predictor", "reference_ms"]),
    ({"tracking.bogus_key": 1}, "tracking.bogus_key", ["experiment", "registered_model", "uri"]),
    ({"bogus_key": 1}, "bogus_key", sorted(f.name for f in dataclasses.fields(SweepFile))),
])
def test_unknown_keys_name_the_allowed_ones(tmp_path, test_predictor, change, field, allowed):
    with pytest.raises(ConfigError) as info:
        SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **change))
    assert info.value.field == field and info.value.allowed == sorted(allowed)


def test_scheduler_rungs_and_the_legacy_asha_section(tmp_path, test_predictor):
    every4 = {"proxy.eval_interval": 4}  # 12 iterations: evaluations at 4, 8, 12
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, scheduler={"name": "moasha"}, **every4))
    assert cfg.scheduler.rungs == (4, 8) and cfg.scheduler.grace_period == 4
    assert cfg.scheduler.to_dict() == {"name": "moasha", "grace_period": 4, "reduction_factor": 2.0, "rungs": [4, 8]}
    fifo = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor))
    assert fifo.scheduler.rungs == () and fifo.scheduler.to_dict()["rungs"] is None
    legacy = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, asha={"enabled": True}, **every4))
    assert legacy.scheduler.name == "asha" and legacy.scheduler.rungs == (4, 8)
    for change, field in (({"asha": {"enabled": True}, "scheduler": {"name": "asha"}}, "asha"),
                          ({"asha": {"enabled": "yes"}}, "asha.enabled"),
                          ({"scheduler": {"name": "moasha", "rungs": [8, 4]}}, "scheduler.rungs"),
                          ({"scheduler": {"name": "moasha", "rungs": [6]}}, "scheduler.rungs[0]"),
                          ({"scheduler": {"name": "moasha", "grace_period": 12}}, "scheduler.grace_period")):
        with pytest.raises(ConfigError) as info:
            SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **change, **every4))
        assert info.value.field == field, str(info.value)


def test_empty_sections_and_a_missing_fidelity_table(tmp_path, test_predictor):
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.train": None,
                                                                         "sampler.options": None}))
    assert cfg.proxy.train == {} and cfg.sampler_options == {}  # `train:` / `options:` left empty
    with pytest.raises(ConfigError) as info:  # one line naming the field (was an AttributeError on .hint)
        SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.fidelity": str(tmp_path / "no.csv")}))
    assert info.value.field == "proxy.fidelity"
