"""Numerical parity of ``topnas.topformer.TopFormer`` with the official hustvl/TopFormer code.

Runs only when ``TOPNAS_OFFICIAL_TOPFORMER`` points at a checkout or a bare git repository of
hustvl/TopFormer (checked against cc0f436). The official backbone (mmseg/models/backbones/topformer.py),
``SimpleHead`` and its ``BaseDecodeHead`` are built from that source at test time: the source text is
read, a few import lines are shimmed textually (mmcv 1.x runner -> mmengine, mmseg registries and
losses removed) and the result is exec'd. No copy of the official code lives in this repository.
The official models are configured from the official ``local_configs/topformer/topformer_*.py``
(SyncBN -> BN), so these tests also pin our presets to the official configs.

Every parameter AND every BN buffer of the official model is randomised (BN weights in [0.5, 1.5],
so the zero-initialised attention-projection BN cannot hide bugs), the state_dict is loaded into ours
with ``strict=True`` and the stride-8 head logits are compared in eval mode and in train mode
(batch statistics, running-stat updates, gradients; drop-path and Dropout2d with the same seed).
"""
from __future__ import annotations

import math
import os
import subprocess
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from topnas.topformer import TopFormer

OFFICIAL = os.environ.get("TOPNAS_OFFICIAL_TOPFORMER", "")

pytestmark = pytest.mark.skipif(
    not OFFICIAL,
    reason="official-parity tests need TOPNAS_OFFICIAL_TOPFORMER=<checkout or bare git repo of hustvl/TopFormer>",
)

PRESETS = ("tiny", "small", "base")
PRESET_FILES = {"tiny": "topformer_tiny.py", "small": "topformer_small.py", "base": "topformer_base.py"}
SIZES = [(512, 512), (448, 448), (375, 500), (333, 257), (64, 64)]
ATOL = RTOL = 1e-5


# --------------------------------------------------------------------------- official-source loader
def _read_source(src: Path, rel: str) -> str:
    if (src / rel).is_file():  # a checkout
        return (src / rel).read_text()
    git_dir = src if (src / "HEAD").is_file() else src / ".git"  # bare repo or checkout's .git
    try:
        out = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{rel}"],
                             capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("git is not installed: cannot read the official TopFormer source")
    if out.returncode:
        pytest.skip(f"TOPNAS_OFFICIAL_TOPFORMER={src} does not hold {rel} "
                    f"(not a hustvl/TopFormer checkout or bare repo): {out.stderr.strip()}")
    return out.stdout


def _exec_source(src: Path, rel: str, shims: list[tuple[str, str]], namespace: dict) -> types.ModuleType:
    text = _read_source(src, rel)
    for old, new in shims:
        # A missing target means upstream changed: fail loudly rather than silently testing other code.
        assert old in text, f"shim target {old!r} not found in official {rel}"
        text = text.replace(old, new)
    module = types.ModuleType("official_" + rel[:-3].replace("/", "_"))
    module.__dict__.update(namespace)
    exec(compile(text, f"<{src}>/{rel}", "exec"), module.__dict__)  # noqa: S102 - the point of the test
    return module


class _NoLoss(nn.Module):
    """Stands in for mmseg's CrossEntropyLoss (parameter-free; losses are not compared here)."""

    loss_name = "loss_ce"


def _official_losses(src: Path) -> tuple:
    """(build_loss, accuracy) from the official mmseg loss sources (CrossEntropyLoss and top-k accuracy)."""
    utils = _exec_source(src, "mmseg/models/losses/utils.py", [], {})
    ce = _exec_source(src, "mmseg/models/losses/cross_entropy_loss.py", [
        ("from ..builder import LOSSES\n", ""),
        ("from .utils import get_class_weight, weight_reduce_loss\n", ""),
        ("@LOSSES.register_module()\n", ""),
    ], dict(get_class_weight=utils.get_class_weight, weight_reduce_loss=utils.weight_reduce_loss))
    accuracy = _exec_source(src, "mmseg/models/losses/accuracy.py", [], {}).accuracy

    def build_loss(cfg: dict) -> nn.Module:
        cfg = dict(cfg)
        assert cfg.pop("type") == "CrossEntropyLoss", cfg
        return ce.CrossEntropyLoss(**cfg)

    return build_loss, accuracy


def _load_official(src: Path, losses: bool = False) -> types.SimpleNamespace:
    """The official backbone and head; ``losses``: the head's real decode loss and accuracy (else none)."""
    pytest.importorskip("mmcv.cnn", reason="the official code needs mmcv's ConvModule/build_norm_layer")
    pytest.importorskip("mmengine.model", reason="mmengine.model.BaseModule stands in for mmcv.runner.BaseModule")
    identity_decorator = lambda *a, **k: (lambda f: f)  # noqa: E731 - auto_fp16 / force_fp32
    build_loss, accuracy = _official_losses(src) if losses else ((lambda cfg: _NoLoss()), None)
    wrappers = _exec_source(src, "mmseg/ops/wrappers.py", [], {})
    decode_head = _exec_source(src, "mmseg/models/decode_heads/decode_head.py", [
        ("from mmcv.runner import BaseModule, auto_fp16, force_fp32", "from mmengine.model import BaseModule"),
        ("from mmseg.core import build_pixel_sampler\n", ""),
        ("from mmseg.ops import resize\n", ""),
        ("from ..builder import build_loss\n", ""),
        ("from ..losses import accuracy\n", ""),
    ], dict(resize=wrappers.resize, auto_fp16=identity_decorator, force_fp32=identity_decorator,
            build_loss=build_loss, accuracy=accuracy))
    simple_head = _exec_source(src, "mmseg/models/decode_heads/simple_head.py", [
        ("from mmseg.ops import resize\n", ""),
        ("from ..builder import HEADS\n", ""),
        ("from .decode_head import BaseDecodeHead\n", ""),
        ("from mmseg.models.utils import *\n", ""),
        ("@HEADS.register_module()\n", ""),
    ], dict(resize=wrappers.resize, BaseDecodeHead=decode_head.BaseDecodeHead))
    backbone = _exec_source(src, "mmseg/models/backbones/topformer.py", [
        ("from mmcv.runner import BaseModule\n", "from mmengine.model import BaseModule\n"),
        ("from mmcv.runner import _load_checkpoint\n", ""),
        ("from mmseg.utils import get_root_logger\n", ""),
        ("from ..builder import BACKBONES\n", ""),
        ("@BACKBONES.register_module()\n", ""),
    ], {})
    configs = {}
    for preset, name in PRESET_FILES.items():
        ns: dict = {}
        exec(compile(_read_source(src, f"local_configs/topformer/{name}"), name, "exec"), ns)  # noqa: S102
        configs[preset] = ns["model"]
    return types.SimpleNamespace(Topformer=backbone.Topformer, SimpleHead=simple_head.SimpleHead,
                                 resize=wrappers.resize, configs=configs)


class _OfficialSegmentor(nn.Module):
    """The part of mmseg's EncoderDecoder we compare: decode_head(backbone(img)), same attribute names."""

    def __init__(self, backbone: nn.Module, decode_head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self.backbone(x))


@pytest.fixture(scope="module")
def official() -> types.SimpleNamespace:
    src = Path(OFFICIAL).expanduser()
    if not src.exists():
        pytest.skip(f"TOPNAS_OFFICIAL_TOPFORMER={OFFICIAL} does not exist")
    return _load_official(src)


def _build_official(lib, preset: str, head: dict | None = None, **backbone_overrides) -> nn.Module:
    cfg = lib.configs[preset]
    bn = dict(type="BN", requires_grad=True)
    bcfg = {k: v for k, v in cfg["backbone"].items() if k != "type"}
    bcfg.update(norm_cfg=bn, init_cfg=None, **backbone_overrides)
    hcfg = {k: v for k, v in cfg["decode_head"].items() if k != "type"}
    hcfg.update(norm_cfg=bn, **(head or {}))
    return _OfficialSegmentor(lib.Topformer(**bcfg), lib.SimpleHead(**hcfg))


@torch.no_grad()
def _randomise(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)  # never 0 (attn proj BN)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
        elif isinstance(m, nn.Conv2d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.weight[0].numel()))
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    untouched = [k for k, v in model.state_dict().items() if torch.equal(v, before[k])]
    assert not untouched, f"randomisation missed {untouched}"


def _pair(lib, preset: str, seed: int = 0, **overrides) -> tuple[nn.Module, TopFormer]:
    """(official, ours) with the same random weights. `overrides` use our config field names."""
    off_bb = {k: overrides[k] for k in ("injection_type", "c2t_stride", "drop_path_rate") if k in overrides}
    off_head = {"dropout_ratio": overrides["dropout_ratio"]} if "dropout_ratio" in overrides else None
    torch.manual_seed(seed)
    off = _build_official(lib, preset, off_head, **off_bb)
    _randomise(off, seed)
    ours = TopFormer.from_preset(preset, num_classes=150, norm="BN", **overrides)
    sd = off.state_dict()
    ours_sd = ours.state_dict()
    assert list(ours_sd) == list(sd), "state_dict keys (or their order) differ from the official model"
    assert {k: tuple(v.shape) for k, v in ours_sd.items()} == {k: tuple(v.shape) for k, v in sd.items()}
    ours.load_state_dict(sd, strict=True)
    return off, ours


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL,
                               msg=lambda m: f"{what}: {m}")


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("preset", PRESETS)
def test_eval_logits_match_official(official, preset):
    off, ours = _pair(official, preset)
    off.eval(), ours.eval()
    for h, w in SIZES:
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))
        with torch.no_grad():
            expected, actual = off(x), ours(x)
            assert actual.shape == (1, 150, (h - 1) // 8 + 1, (w - 1) // 8 + 1)
            _close(actual, expected, f"{preset} {h}x{w} eval logits")
            # official EncoderDecoder.encode_decode: resize(out, img size, bilinear, align_corners=False)
            full = official.resize(expected, size=(h, w), mode="bilinear", align_corners=False)
            _close(ours.forward_full(x), full, f"{preset} {h}x{w} forward_full")


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("stochastic", [False, True], ids=["nodrop", "droppath+dropout"])
def test_train_mode_matches_official(official, preset, stochastic):
    """BN batch statistics, running-stat updates and gradients; drop-path/Dropout2d under one seed."""
    rate = 0.1 if stochastic else 0.0
    off, ours = _pair(official, preset, seed=1, drop_path_rate=rate, dropout_ratio=rate)
    off.train(), ours.train()
    x = torch.randn(2, 3, 333, 257, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(123)
    expected = off(x)
    torch.manual_seed(123)
    actual = ours(x)
    _close(actual, expected, f"{preset} train logits")
    ours_sd = ours.state_dict()
    for k, v in off.state_dict().items():  # running_mean / running_var / num_batches_tracked updated alike
        _close(ours_sd[k], v, f"{preset} {k} after one train forward")
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(3))
    (expected * g).sum().backward()
    (actual * g).sum().backward()
    ours_params = dict(ours.named_parameters())
    for k, p in off.named_parameters():
        torch.testing.assert_close(ours_params[k].grad, p.grad, rtol=1e-4, atol=1e-6,
                                   msg=lambda m, k=k: f"{preset} grad of {k}: {m}")


@pytest.mark.parametrize("injection_type", ["muli_sum_cbr", "fuse_sum", "fuse_multi"])
def test_other_injection_types_match_official(official, injection_type):
    off, ours = _pair(official, "tiny", seed=2, injection_type=injection_type)
    off.eval(), ours.eval()
    for h, w in [(512, 512), (333, 257)]:
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h + w))
        with torch.no_grad():
            _close(ours(x), off(x), f"{injection_type} {h}x{w} eval logits")
    off.train(), ours.train()
    x = torch.randn(2, 3, 160, 224, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(5)
    expected = off(x)
    torch.manual_seed(5)
    _close(ours(x), expected, f"{injection_type} train logits")


@pytest.mark.parametrize("c2t_stride", [1, 4])
def test_c2t_stride_matches_official(official, c2t_stride):
    off, ours = _pair(official, "tiny", seed=3, c2t_stride=c2t_stride)
    off.eval(), ours.eval()
    for h, w in [(512, 512), (375, 500), (333, 257), (64, 64)]:
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h + w))
        with torch.no_grad():
            _close(ours(x), off(x), f"c2t_stride={c2t_stride} {h}x{w} eval logits")


def test_syncbn_model_in_eval_matches_official_bn(official):
    """Our default norm (SyncBN, as in the official configs) is plain BN in eval mode."""
    off, _ = _pair(official, "tiny")
    ours = TopFormer.from_preset("tiny", num_classes=150)
    ours.load_state_dict(off.state_dict(), strict=True)
    off.eval(), ours.eval()
    x = torch.randn(1, 3, 333, 257, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        _close(ours(x), off(x), "SyncBN (ours, eval) vs BN (official, eval)")


@pytest.mark.parametrize("label_hw", [(64, 64), (60, 44)])
def test_loss_matches_official_decode_head_loss(label_hw):
    """Our loss (value and gradients) vs the official head's ``losses``: mmseg's CrossEntropyLoss after
    the x8 resize (an integer scale: our CPU fast path; 60x44: torch's resize)."""
    from topnas.platform.train.loss import seg_cross_entropy

    lib = _load_official(Path(OFFICIAL).expanduser(), losses=True)
    head = _build_official(lib, "tiny").decode_head
    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(2, 150, 8, 8, generator=g) * 3).requires_grad_()
    labels = torch.randint(0, 150, (2, 1, *label_hw), generator=g)
    labels[:, :, :5] = 255
    official = head.losses(logits, labels)
    (want,) = torch.autograd.grad(official["loss_ce"], logits)
    ours = seg_cross_entropy(logits, labels)
    (got,) = torch.autograd.grad(ours, logits)
    _close(ours, official["loss_ce"], "loss")
    _close(got, want, "loss gradient")
    assert float(official["acc_seg"]) > 0  # the official head computed its accuracy too
