"""AdamW param groups with mmcv custom_keys semantics: head x10, BN params decayed (``norm`` matches
no TopFormer name)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from topnas.platform.train.train_config import OptimizerConfig
from topnas.platform.train.optim import build_optimizer, build_param_groups, match_custom_key
from topnas.topformer import TopFormer


@pytest.fixture(scope="module")
def model() -> TopFormer:
    return TopFormer.from_preset("tiny", num_classes=5, norm="BN")


def _groups_by_param(opt: torch.optim.Optimizer) -> dict[str, dict]:
    return {name: g for g in opt.param_groups for name in g["param_names"]}


def test_official_keys_head_lr_x10_and_everything_else_base(model: TopFormer) -> None:
    cfg = OptimizerConfig()  # official: lr 3e-4, wd 0.01, custom keys head/norm/absolute_pos_embed
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.999)
    by_param = _groups_by_param(opt)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(by_param) == sorted(names)  # every parameter exactly once
    for name in names:
        g = by_param[name]
        if name.startswith("decode_head."):
            assert g["lr"] == pytest.approx(3e-3) and g["initial_lr"] == g["lr"], name
        else:
            assert g["lr"] == pytest.approx(3e-4), name
        assert g["weight_decay"] == pytest.approx(0.01), name  # 'norm' matches nothing: all decayed
    assert {g["name"] for g in opt.param_groups} == {"default", "head"}
    head = [n for n in names if n.startswith("decode_head.")]
    assert by_param[head[0]]["name"] == "head" and len(head) == 5


def test_batchnorm_parameters_are_weight_decayed(model: TopFormer) -> None:
    opt = build_optimizer(model, OptimizerConfig())
    by_param = _groups_by_param(opt)
    bn_params = [f"{mname}.{p}" for mname, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
                 for p in ("weight", "bias")]
    assert len(bn_params) == 2 * 61
    assert all(by_param[n]["weight_decay"] == pytest.approx(0.01) for n in bn_params)
    assert by_param["decode_head.linear_fuse.bn.weight"]["lr"] == pytest.approx(3e-3)  # head BN: x10 too


def test_syncbn_model_has_the_same_groups() -> None:
    sync = TopFormer.from_preset("tiny", num_classes=5, norm="SyncBN")
    opt = build_optimizer(sync, OptimizerConfig())
    assert all(g["weight_decay"] == pytest.approx(0.01) for g in opt.param_groups)


def test_longest_key_wins_then_alphabetical() -> None:
    keys = {"head": {"lr_mult": 10.0}, "decode_head.conv_seg": {"lr_mult": 2.0}, "bn": {"decay_mult": 0.0}}
    assert match_custom_key("decode_head.conv_seg.weight", keys) == "decode_head.conv_seg"
    assert match_custom_key("decode_head.linear_fuse.bn.weight", keys) == "head"  # 'head' (4) > 'bn' (2)
    assert match_custom_key("backbone.tpm.stem.0.bn.bias", keys) == "bn"
    assert match_custom_key("backbone.tpm.stem.0.c.weight", keys) is None
    assert match_custom_key("ab", {"a": {}, "b": {}}) == "a"  # equal length: alphabetical first


def test_decay_mult_applies_when_a_key_matches(model: TopFormer) -> None:
    groups = build_param_groups(model, 1e-3, 0.05, {"bn": {"decay_mult": 0.0}, "head": {"lr_mult": 10.0}})
    by_name = {g["name"]: g for g in groups}
    assert by_name["bn"]["weight_decay"] == 0.0 and by_name["bn"]["lr"] == pytest.approx(1e-3)
    assert by_name["default"]["weight_decay"] == pytest.approx(0.05)
    assert all(n.startswith("decode_head.") for n, _ in by_name["head"]["params"])
