"""Sweep YAML validation: everything is checked at load time, before Ray or MLflow start."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from topnas.errors import ConfigError
from topnas.platform.sweep import SAMPLERS, SweepConfig, load_sweep_config, make_sampler
from topnas.platform.sweep import estimates

from .conftest import sweep_dict, write_sweep_yaml

ROOT = Path(__file__).resolve().parents[3]


def test_valid_config_round_trips(tmp_path, test_predictor):
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor))
    assert cfg.sampler == "nsga2" and cfg.num_samples == 6 and cfg.max_concurrent == 2
    assert cfg.sweep_dir == tmp_path / "sweeps" / "t_sweep"
    again = SweepConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()


def test_train_config_is_the_proxy_budget(tmp_path, test_predictor):
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.eval_interval": 4}))
    variant = cfg.first_variant()
    tc = cfg.train_config(variant, "trial-x", tracking_uri="http://127.0.0.1:1")
    assert tc.name == "trial-x" and tc.variant.id == variant.id
    assert tc.schedule.max_iters == 12 and tc.data.crop_size == (64, 64)
    assert tc.runtime.eval_interval == tc.runtime.checkpoint_interval == 4
    assert tc.scaling.num_workers == 1 and tc.scaling.use_gpu is False
    assert tc.scaling.storage_path == str(cfg.sweep_dir / "train")
    assert tc.tracking.uri == "http://127.0.0.1:1" and tc.tracking.export_onnx is False
    assert tc.optimizer.lr == 0.001 and tc.schedule.warmup_iters <= 12


def test_demo_yaml_loads(tmp_path, monkeypatch, test_predictor):
    monkeypatch.setenv("TOPNAS_HOME", str(tmp_path))
    cfg = load_sweep_config(ROOT / "experiments" / "sweep_demo_fixture.yaml",
                            [f"latency.predictor={test_predictor}"])
    assert cfg.name == "sweep_demo_fixture" and cfg.num_samples >= 8 and cfg.max_concurrent == 2
    assert cfg.proxy.dataset.startswith(str(tmp_path))


@pytest.mark.parametrize("change, field", [
    ({"bogus": 1}, "bogus"),
    ({"sampler.name": "cmaes"}, "sampler.name"),
    ({"sampler.options": {"populaton_size": 4}}, "sampler.options.populaton_size"),
    ({"sampler.options": {"population_size": 1}}, "sampler.options"),
    ({"num_samples": 0}, "num_samples"),
    ({"max_concurrent": "2"}, "max_concurrent"),
    ({"objectives": {"val_mIoU": "max", "params": "min"}}, "objectives"),
    ({"name": "a/b"}, "name"),
    ({"latency.budget_ms": -3}, "latency.budget_ms"),
    ({"latency.budget_ms": 0.5}, "latency.budget_ms"),  # faster than any variant of the space
    ({"proxy.iterations": 0}, "proxy.iterations"),
    ({"proxy.eval_interval": 50}, "proxy.eval_interval"),
    ({"proxy.crop_size": [16, 16]}, "proxy.crop_size[0]"),
    ({"proxy.train": {"model": {"preset": "tiny"}}}, "proxy.train.model.preset"),
    ({"proxy.train": {"schedule": {"max_iters": 5}}}, "proxy.train.schedule.max_iters"),
    ({"proxy.train": {"optimizer": {"lr": -1.0}}}, "proxy (training config).optimizer.lr"),
    ({"proxy.fixture": {"classes": 7, "train": 8, "val": 2}}, "proxy.fixture.classes"),
    ({"scheduler": {"name": "asha"}}, "scheduler.name"),  # one evaluation per trial
    ({"proxy.seeds": 0}, "proxy.seeds"),
    ({"proxy.seeds": 2, "proxy.eval_interval": 6, "scheduler": {"name": "moasha"}}, "proxy.seeds"),  # no rung means
    ({"scheduler": {"name": "asha", "reduction_factor": 1}}, "scheduler.reduction_factor"),
    ({"search_space.transformer.c2t_stride": [16]}, "search_space.transformer.c2t_stride[0]"),
    ({"tracking": {"experiment": ""}}, "tracking.experiment"),
])
def test_invalid_fields_name_the_field(tmp_path, test_predictor, change, field):
    with pytest.raises(ConfigError) as info:
        SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **change))
    assert info.value.field == field, str(info.value)


def test_missing_dataset_without_fixture(tmp_path, test_predictor):
    with pytest.raises(ConfigError, match="proxy.dataset"):
        SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.fixture": None}))


def test_missing_predictor_file(tmp_path, test_predictor):
    with pytest.raises(ConfigError, match="latency.predictor"):
        SweepConfig.from_dict(sweep_dict(tmp_path, tmp_path / "nope.json"))


def test_overrides_and_unknown_yaml(tmp_path, test_predictor):
    path = write_sweep_yaml(tmp_path / "s.yaml", sweep_dict(tmp_path, test_predictor))
    cfg = load_sweep_config(path, ["sampler.name=tpe", "sampler.options={}", "latency.budget_ms=90"])
    assert cfg.sampler == "tpe" and cfg.latency.budget_ms == 90.0
    with pytest.raises(ConfigError, match="sampler.options.population_size"):  # NSGA-II's option on TPE
        load_sweep_config(path, ["sampler.name=tpe"])
    with pytest.raises(ConfigError, match="existing YAML"):
        load_sweep_config(tmp_path / "missing.yaml")


def test_samplers_by_name():
    import optuna

    assert sorted(SAMPLERS) == ["gp", "nsga2", "random", "tpe"]
    assert isinstance(make_sampler("nsga2", 0), optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler("tpe", 0), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("gp", 0), optuna.samplers.GPSampler)
    assert isinstance(make_sampler("random", 0), optuna.samplers.RandomSampler)
    with pytest.raises(ConfigError) as info:
        make_sampler("grid", 0)
    assert info.value.allowed == ["gp", "nsga2", "random", "tpe"]


def test_extreme_latency_brackets_every_variant(tmp_path, test_predictor):
    import random

    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor))
    pred = estimates.load_predictor(test_predictor)
    lo = estimates.extreme_latency(pred, cfg.space, fastest=True)
    hi = estimates.extreme_latency(pred, cfg.space, fastest=False)
    rng = random.Random(0)
    samples = [pred.predict(cfg.space.sample(rng)).ms for _ in range(50)]
    assert lo <= min(samples) and hi >= max(samples) and lo < hi


def test_seeds_of_a_replayed_trial_are_refused(tmp_path, test_predictor, replay_table):
    from .conftest import replay_sweep_dict

    data = replay_sweep_dict(tmp_path, test_predictor, replay_table, **{"proxy.seeds": 2,
                                                                         "scheduler": {"name": "fifo"}})
    with pytest.raises(ConfigError) as info:
        SweepConfig.from_dict(data)
    assert info.value.field == "proxy.seeds" and "replay.table" in str(info.value)


def test_each_seed_of_a_trial_trains_with_its_own_seed(tmp_path, test_predictor):
    cfg = SweepConfig.from_dict(sweep_dict(tmp_path, test_predictor, **{"proxy.seeds": 3, "seed": 5}))
    variant = cfg.space.sample(random.Random(0))
    seeds = [cfg.train_config(variant, f"r{k}", seed_index=k).runtime.seed for k in range(3)]
    assert seeds == [5, 6, 7] and cfg.proxy.seeds == 3
