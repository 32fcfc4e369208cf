"""Sliding-window testing: the window grid, the averaged logits, the config and the loop's wiring."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from topnas.errors import ConfigError
from topnas.platform.train.loop import evaluate
from topnas.platform.train.slide import slide_logits, window_grid


@pytest.mark.parametrize("hw, crop, stride", [((128, 160), (64, 64), (32, 32)), ((100, 70), (64, 48), (40, 30)),
                                              ((50, 160), (64, 64), (32, 48)), ((64, 64), (64, 64), (32, 32))])
def test_windows_cover_the_image_with_crop_sized_windows_the_last_flush_with_the_edge(hw, crop, stride):
    boxes = window_grid(hw, crop, stride)
    covered = torch.zeros(hw, dtype=torch.int64)
    for y0, y1, x0, x1 in boxes:
        assert (y1 - y0, x1 - x0) == (min(crop[0], hw[0]), min(crop[1], hw[1]))  # smaller image: its size
        assert 0 <= y0 and y1 <= hw[0] and 0 <= x0 and x1 <= hw[1]
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1  # every pixel predicted
    ys, xs = sorted({b[0] for b in boxes}), sorted({b[2] for b in boxes})
    assert ys[-1] + min(crop[0], hw[0]) == hw[0] and xs[-1] + min(crop[1], hw[1]) == hw[1]
    assert all(b - a <= s for a, b, s in ((ys[i], ys[i + 1], stride[0]) for i in range(len(ys) - 1)))
    assert len(boxes) == len(ys) * len(xs)


def test_a_context_free_network_gives_the_same_logits_whole_and_sliding():
    torch.manual_seed(0)
    net = nn.Conv2d(3, 5, 1).eval()  # each pixel's logits depend on that pixel only
    img = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        slid = slide_logits(net, img, (32, 32), (16, 24))
        torch.testing.assert_close(slid, net(img))


class _WindowMean(nn.Module):
    """Logits at 1/8 resolution equal to each window's mean input: tells overlapping windows apart."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return x.mean(dim=(1, 2, 3)).view(b, 1, 1, 1).expand(b, 2, h // 8, w // 8)


def test_overlapping_windows_are_averaged_pixel_by_pixel():
    img = torch.arange(64 * 96, dtype=torch.float32).view(1, 1, 64, 96).expand(1, 3, 64, 96).contiguous()
    out = slide_logits(_WindowMean(), img, (64, 64), (32, 32))
    assert out.shape == (1, 2, 64, 96)
    left, right = img[..., :, 0:64].mean(), img[..., :, 32:96].mean()  # the two windows
    assert out[0, 0, 10, 5] == pytest.approx(float(left))  # only the left window covers column 5
    assert out[0, 0, 10, 50] == pytest.approx(float((left + right) / 2))  # both cover column 50
    assert out[0, 0, 10, 90] == pytest.approx(float(right))


class _Images:
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.items = [{"img": torch.randn(3, 64, 80, generator=g),
                       "gt_semantic_seg": torch.randint(0, 4, (64, 80), generator=g)} for _ in range(3)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_evaluate_slides_when_asked_and_agrees_with_whole_testing_for_a_context_free_network():
    torch.manual_seed(0)
    net, data = nn.Conv2d(3, 4, 1), _Images()
    kw = dict(rank=0, world_size=1, device=torch.device("cpu"), num_classes=4)
    whole = evaluate(net, data, **kw)
    slid = evaluate(net, data, slide=((32, 32), (16, 16)), **kw)
    assert slid["IoU_per_class"] == whole["IoU_per_class"] and slid["aAcc"] == whole["aAcc"]
    # a network that looks at the whole input does not: the same images, other predictions
    context = evaluate(_GlobalShift(), data, slide=((32, 32), (32, 32)), **kw)
    assert context["aAcc"] != evaluate(_GlobalShift(), data, **kw)["aAcc"]


class _GlobalShift(nn.Module):
    """Logits = a pixel's first channel times the input's mean: depends on what the input holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return torch.cat([x[:, :1] * m, -x[:, :1] * m, x[:, 1:2], x[:, 2:3]], dim=1)


def test_test_mode_settings_are_checked_at_load(make_config):
    cfg = make_config(data={"test_mode": "slide", "crop_size": [128, 96]})
    assert cfg.data.slide_window() == ((128, 96), (64, 48))  # the training crop, every half window
    cfg = make_config(data={"test_mode": "slide", "test_crop_size": [32, 32], "test_stride": [8, 32]})
    assert cfg.data.slide_window() == ((32, 32), (8, 32))
    assert make_config().data.slide_window() is None  # whole-image testing, the official ADE20K test
    for data, field in [({"test_mode": "sliding"}, "test_mode"),
                        ({"test_mode": "slide", "test_crop_size": [32, 32], "test_stride": [40, 8]}, "test_stride"),
                        ({"test_stride": [8, 8]}, "test_stride"),
                        ({"test_mode": "slide", "test_crop_size": [0, 32]}, "test_crop_size")]:
        with pytest.raises(ConfigError) as err:
            make_config(data=data)
        assert field in str(err.value), (data, str(err.value))


def test_the_loop_evaluates_with_the_configured_window(make_config, tmp_path: Path, monkeypatch) -> None:
    from tests.platform.train.conftest import NUM_CLASSES
    from topnas.platform.train import loop

    seen: list = []
    real = loop.evaluate

    def recording(*args, **kwargs):
        seen.append(kwargs.get("slide"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", recording)
    cfg = make_config(schedule={"max_iters": 2, "warmup_iters": 1},
                      runtime={"log_interval": 2, "eval_interval": 1, "checkpoint_interval": 2},
                      scaling={"num_workers": 1}, model={"preset": "tiny", "num_classes": NUM_CLASSES},
                      data={"test_mode": "slide", "test_stride": [16, 16]})
    run_dir = tmp_path / "run"
    summary = loop.run_loop(cfg, loop.TrainJob(cfg.name, str(run_dir)), loop.LocalSession(run_dir))
    assert seen == [(tuple(cfg.data.crop_size), (16, 16))] * 2
    assert 0.0 <= summary["val_mIoU"] <= 1.0
