"""LR schedule: mmcv poly (power 1, min_lr 0) with linear warm-up from ratio 1e-6 over 1500 iterations."""
from __future__ import annotations

import math

import pytest
import torch

from topnas.platform.train.train_config import ScheduleConfig
from topnas.platform.train.schedule import apply_lr, lr_at, regular_lr

OFFICIAL = ScheduleConfig()  # poly 1.0, min_lr 0, linear warm-up 1500 from 1e-6, 160k iterations
BASE = 3e-4  # TopFormer-T


def test_official_defaults() -> None:
    assert (OFFICIAL.policy, OFFICIAL.power, OFFICIAL.min_lr) == ("poly", 1.0, 0.0)
    assert (OFFICIAL.warmup, OFFICIAL.warmup_iters, OFFICIAL.warmup_ratio) == ("linear", 1500, 1e-6)
    assert OFFICIAL.max_iters == 160_000


def test_warmup_start_is_ratio_times_base() -> None:
    # regular(0) = base; k = (1 - 0) * (1 - 1e-6) -> lr = base * 1e-6
    assert lr_at(0, BASE, OFFICIAL) == pytest.approx(3e-10, rel=1e-9)


def test_warmup_end() -> None:
    # last warm-up iteration 1499: regular * (1 - (1/1500) * (1 - 1e-6))
    regular = BASE * (1 - 1499 / 160_000)
    expected = regular * (1 - (1 / 1500) * (1 - 1e-6))
    assert lr_at(1499, BASE, OFFICIAL) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(2.969912e-4, rel=1e-6)  # by hand: 2.971894e-4 * 0.99933333
    # first regular iteration: plain poly, no jump from the warm-up line
    assert lr_at(1500, BASE, OFFICIAL) == pytest.approx(BASE * (1 - 1500 / 160_000), rel=1e-12)
    assert lr_at(1500, BASE, OFFICIAL) == pytest.approx(2.971875e-4, rel=1e-9)
    assert abs(lr_at(1500, BASE, OFFICIAL) - lr_at(1499, BASE, OFFICIAL)) < 1e-6


def test_warmup_is_linear_in_iteration() -> None:
    mid = lr_at(750, BASE, OFFICIAL)
    assert mid == pytest.approx(BASE * (1 - 750 / 160_000) * (1 - 0.5 * (1 - 1e-6)), rel=1e-12)


def test_last_iteration_and_end() -> None:
    assert lr_at(159_999, BASE, OFFICIAL) == pytest.approx(BASE / 160_000, rel=1e-9)  # 1.875e-9
    assert lr_at(160_000, BASE, OFFICIAL) == 0.0
    with pytest.raises(ValueError):
        lr_at(160_001, BASE, OFFICIAL)


def test_poly_power_and_min_lr() -> None:
    s = ScheduleConfig(power=0.9, min_lr=1e-4, warmup=None, warmup_iters=0, max_iters=100)
    assert lr_at(0, 0.01, s) == pytest.approx(0.01)
    assert lr_at(50, 0.01, s) == pytest.approx((0.01 - 1e-4) * 0.5 ** 0.9 + 1e-4)
    assert regular_lr(100, 0.01, s) == pytest.approx(1e-4)


def test_apply_lr_scales_each_group_from_its_initial_lr() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [a], "initial_lr": BASE}, {"params": [b], "initial_lr": 10 * BASE}], lr=BASE)
    lr = apply_lr(opt, 1500, OFFICIAL)
    assert lr == opt.param_groups[0]["lr"]
    assert opt.param_groups[1]["lr"] == pytest.approx(10 * lr, rel=1e-12)
    assert math.isclose(opt.param_groups[0]["lr"], 2.971875e-4)
