"""Training config: official files field for field, composition, overrides, early rejection."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from topnas.errors import ConfigError
from topnas.platform.cli import main as cli_main
from topnas.platform.data import DatasetError
from topnas.platform.train.train_config import TrainConfig, compose_yaml, load_config, parse_override

REPO = Path(__file__).resolve().parents[3]
EXPERIMENTS = REPO / "experiments"


# ----------------------------------------------------------------------------- official configs
@pytest.mark.parametrize("preset,lr,ckpt", [
    ("tiny", 3e-4, "topformer-T-224-66.2.pth"),
    ("small", 1.2e-4, "topformer-S-224-72.3.pth"),
    ("base", 1.2e-4, "topformer-B-224-75.3.pth"),
])
def test_official_configs_match_the_recipe(preset: str, lr: float, ckpt: str) -> None:
    cfg = load_config(EXPERIMENTS / f"topformer_{preset}_512x512_160k_ade20k.yaml")
    assert cfg.name == f"topformer_{preset}_512x512_160k_ade20k"
    assert cfg.model.preset == preset and cfg.model.num_classes == 150 and cfg.variant.preset == preset
    assert cfg.model.pretrained.endswith(f"modelzoos/classification/{ckpt}")
    assert cfg.resolved_norm() == "SyncBN" and cfg.variant.input_size == (512, 512)
    o = cfg.optimizer
    assert (o.type, o.lr, o.betas, o.weight_decay) == ("AdamW", lr, (0.9, 0.999), 0.01)
    assert o.custom_keys == {"absolute_pos_embed": {"decay_mult": 0.0}, "head": {"lr_mult": 10.0},
                             "norm": {"decay_mult": 0.0}}
    s = cfg.schedule
    assert (s.policy, s.power, s.min_lr, s.warmup, s.warmup_iters, s.warmup_ratio, s.max_iters) == \
        ("poly", 1.0, 0.0, "linear", 1500, 1e-6, 160_000)
    r = cfg.runtime
    assert (r.checkpoint_interval, r.eval_interval, r.log_interval, r.find_unused_parameters, r.amp) == \
        (16_000, 16_000, 50, True, False)
    d = cfg.data
    assert d.root.endswith("data/ade/ADEChallengeData2016") and d.reduce_zero_label is True
    assert (d.crop_size, d.img_scale, d.ratio_range, d.cat_max_ratio, d.flip_prob, d.photometric) == \
        ((512, 512), (2048, 512), (0.5, 2.0), 0.75, 0.5, True)
    assert (d.test_img_scale, d.size_divisor, d.samples_per_gpu, d.workers_per_gpu) == ((2048, 512), 32, 2, 4)
    assert (cfg.scaling.num_workers, cfg.scaling.use_gpu, cfg.total_batch_size) == (8, True, 16)


def test_demo_config_loads_and_is_cpu_sized() -> None:
    cfg = load_config(EXPERIMENTS / "demo_tiny_fixture.yaml")
    assert cfg.scaling.use_gpu is False and cfg.resolved_norm() == "BN"
    assert cfg.data.fixture is not None and cfg.data.fixture.classes == cfg.model.num_classes
    assert cfg.schedule.max_iters <= 500 and max(cfg.data.crop_size) <= 128


# ----------------------------------------------------------------------------- composition
def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_base_files_merge_deeply_and_lists_replace(tmp_path: Path) -> None:
    _write(tmp_path / "_base_" / "a.yaml", {"data": {"root": "/data/x", "crop_size": [512, 512], "flip_prob": 0.5},
                                            "optimizer": {"lr": 0.1}})
    _write(tmp_path / "_base_" / "b.yaml", {"optimizer": {"lr": 0.2, "weight_decay": 0.0}})
    child = _write(tmp_path / "exp.yaml", {"_base_": ["_base_/a.yaml", "_base_/b.yaml"],
                                           "data": {"crop_size": [96, 96]}, "schedule": {"max_iters": 2000}})
    raw = compose_yaml(child)
    assert raw["data"] == {"root": "/data/x", "crop_size": [96, 96], "flip_prob": 0.5}
    assert raw["optimizer"] == {"lr": 0.2, "weight_decay": 0.0}  # later base wins
    cfg = load_config(child, ["optimizer.lr=1.2e-4", "runtime.seed=7", "data.ratio_range=null"])
    assert cfg.name == "exp" and cfg.optimizer.lr == 1.2e-4 and cfg.runtime.seed == 7
    assert cfg.data.ratio_range is None and cfg.data.crop_size == (96, 96)


def test_base_cycle_is_reported(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    _write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        compose_yaml(tmp_path / "a.yaml")


def test_parse_override() -> None:
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("data.crop_size=[64, 64]") == ("data.crop_size", [64, 64])
    assert parse_override("model.pretrained=null") == ("model.pretrained", None)
    for bad in ("nokey", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match="--set"):
            parse_override(bad)


def test_yaml_round_trip(make_config) -> None:
    cfg = make_config()
    again = TrainConfig.from_yaml_text(cfg.to_yaml())
    assert again == cfg and again.variant.id == cfg.variant.id


def test_with_overrides_and_variant_inline(make_config, tmp_path: Path) -> None:
    from topnas.search_spaces import preset_variant

    vfile = preset_variant("small", input_size=(128, 128), num_classes=150).save(tmp_path / "v.yaml")
    cfg = make_config(model={"preset": None, "variant": str(vfile), "num_classes": 5})
    assert isinstance(cfg.model.variant, dict)  # inlined: the config is self-contained
    assert cfg.variant.model.num_classes == 5 and cfg.variant.input_size == (128, 128)
    assert cfg.variant.preset == "small"
    assert cfg.with_overrides({"runtime.seed": 3}).runtime.seed == 3


# ----------------------------------------------------------------------------- rejection
@pytest.mark.parametrize("section,values,field", [
    ("optimizer", {"lrr": 1e-3}, "optimizer.lrr"),
    ("optimizer", {"lr": "fast"}, "optimizer.lr"),
    ("optimizer", {"lr": -1.0}, "optimizer.lr"),
    ("optimizer", {"type": "SGD"}, "optimizer.type"),
    ("data", {"crop_size": [96]}, "data.crop_size"),
    ("data", {"samples_per_gpu": 2.5}, "data.samples_per_gpu"),
    ("scaling", {"use_gpu": "yes"}, "scaling.use_gpu"),
    ("scaling", {"num_workers": 0}, "scaling.num_workers"),
    ("schedule", {"warmup": "cosine"}, "schedule.warmup"),
    ("runtime", {"eval_interval": True}, "runtime.eval_interval"),
    ("runtime", {"channels_last": "maybe"}, "runtime.channels_last"),
    ("model", {"preset": "huge"}, "model.preset"),
    ("model", {"norm": "GN"}, "model.norm"),
    ("model", {"variant": {"preset": "tiny"}}, "model.variant"),  # both preset and variant
    ("model", {"class_weight": [1.0, 2.0]}, "model.class_weight"),  # not one per class
    ("model", {"class_weight": "auto"}, "model.class_weight"),
    ("fault_injection", {"rank": 5, "at_iter": 3}, "fault_injection.rank"),
])
def test_bad_fields_are_rejected_with_their_name(make_config, section: str, values: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(**{section: values})
    assert info.value.field == field, str(info.value)


def test_unknown_top_level_key(make_config, train_fixture: Path, tmp_path: Path) -> None:
    from tests.platform.train.conftest import small_config_dict

    raw = small_config_dict(train_fixture, tmp_path, trainer={"x": 1})
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(raw)
    assert info.value.field == "trainer"


def test_numeric_strings_are_numbers(make_config) -> None:
    cfg = make_config(schedule={"max_iters": 30, "warmup_iters": 5, "warmup_ratio": "1e-6"})
    assert cfg.schedule.warmup_ratio == 1e-6  # PyYAML reads 1e-6 (no dot) as a string


# ----------------------------------------------------------------------------- before Ray starts
def _ray_initialized() -> bool:
    import ray

    return ray.is_initialized()


def test_bad_dataset_path_rejected_before_ray(make_config, tmp_path: Path) -> None:
    from topnas.platform.train import run_training

    assert not _ray_initialized()
    cfg = make_config(data={"root": str(tmp_path / "missing")})
    with pytest.raises(DatasetError, match="missing"):
        run_training(cfg)
    assert not _ray_initialized()


def test_dataset_without_split_rejected_before_ray(make_config, train_fixture: Path, tmp_path: Path) -> None:
    import shutil

    from topnas.platform.train import run_training

    broken = tmp_path / "data"
    shutil.copytree(train_fixture, broken)
    shutil.rmtree(broken / "ADEChallengeData2016" / "annotations" / "validation")
    with pytest.raises(DatasetError, match="annotations/validation"):
        run_training(make_config(data={"root": str(broken)}))
    assert not _ray_initialized()


def test_class_count_mismatch_rejected_before_ray(make_config) -> None:
    from topnas.platform.train import run_training

    cfg = make_config(model={"preset": "tiny", "num_classes": 150})
    with pytest.raises(ConfigError, match="num_classes"):
        run_training(cfg)
    assert not _ray_initialized()


def test_missing_pretrained_and_gpu_rejected_before_ray(make_config, tmp_path: Path) -> None:
    import torch

    from topnas.platform.train import check_ready, run_training

    with pytest.raises(ConfigError, match="model.pretrained"):
        run_training(make_config(model={"preset": "tiny", "num_classes": 5, "pretrained": str(tmp_path / "no.pth")}))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="scaling.use_gpu"):
            check_ready(make_config(scaling={"use_gpu": True}))
    with pytest.raises(ConfigError, match="--resume"):
        run_training(make_config(), resume="must")
    assert not _ray_initialized()


def test_too_few_images_for_the_batch(make_config) -> None:
    from topnas.platform.train import check_ready

    with pytest.raises(ConfigError, match="samples_per_gpu"):
        check_ready(make_config(data={"samples_per_gpu": 9}))  # 16 images, 2 workers


# ----------------------------------------------------------------------------- CLI
def test_cli_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["train", str(EXPERIMENTS / "topformer_small_512x512_160k_ade20k.yaml"),
                   "--set", "scaling.num_workers=2", "--set", "model.pretrained=null", "--print-config"])
    out = capsys.readouterr().out
    assert rc == 0
    printed = yaml.safe_load(out)
    assert printed["scaling"]["num_workers"] == 2 and printed["model"]["pretrained"] is None
    assert printed["optimizer"]["lr"] == 1.2e-4
    assert TrainConfig.from_dict(printed).variant.preset == "small"


def test_cli_bad_key_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["train", str(EXPERIMENTS / "demo_tiny_fixture.yaml"), "--set", "optimizer.lrr=1", "--print-config"])
    assert rc == 2
    assert "optimizer.lrr" in capsys.readouterr().err


def test_cli_resume_unknown_run_without_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["train", "--resume", "nope", "--storage", str(tmp_path)])
    assert rc == 2
    assert "--resume" in capsys.readouterr().err


def test_config_pickles_without_its_cached_variant(make_config) -> None:
    import pickle

    cfg = make_config()
    _ = cfg.variant
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and "variant" not in again.__dict__ and again.variant.id == cfg.variant.id


def test_class_weight_one_positive_number_per_class(make_config) -> None:
    from tests.platform.train.conftest import NUM_CLASSES

    weights = [1.0] * (NUM_CLASSES - 1) + [3.0]
    assert make_config(model={"preset": "tiny", "num_classes": NUM_CLASSES,
                              "class_weight": weights}).model.class_weight == tuple(weights)
    with pytest.raises(ConfigError) as info:
        make_config(model={"preset": "tiny", "num_classes": NUM_CLASSES, "class_weight": [0.0] * NUM_CLASSES})
    assert info.value.field == "model.class_weight" and "positive" in str(info.value)
