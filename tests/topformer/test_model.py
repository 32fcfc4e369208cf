"""Preset-driven model tests: official keys/shapes, parameter counts, output shapes."""
import json
import math
from pathlib import Path

import pytest
import torch

from topnas.topformer import PRESETS, TopFormer

# state_dict key -> shape of the official segmentors (copied from shared/reference/official_keys).
KEYS_DIR = Path(__file__).resolve().parent / "official_keys"
PARAMS = {"tiny": 1_389_654, "small": 3_034_662, "base": 5_062_646}


def _official_keys(name):
    path = KEYS_DIR / f"topformer_{name}.json"
    return json.loads(path.read_text())


@pytest.fixture(scope="module", params=sorted(PRESETS))
def preset_model(request):
    return request.param, TopFormer.from_preset(request.param, num_classes=150, norm="BN").eval()


def test_state_dict_matches_official_keys_and_shapes(preset_model):
    name, model = preset_model
    ref = _official_keys(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) == set(ref), (set(ours) ^ set(ref))
    assert ours == ref
    assert list(ours) == list(ref)  # same order as the official state_dict


def test_official_keys_load_strictly(preset_model):
    name, model = preset_model
    ref = _official_keys(name)
    fake = {k: torch.zeros(s) if s else torch.tensor(0) for k, s in ref.items()}
    result = model.load_state_dict(fake, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_parameter_count(preset_model):
    name, model = preset_model
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


@pytest.mark.parametrize("size", [(512, 512), (375, 500), (333, 257), (64, 96)])
def test_output_shapes_any_size(preset_model, size):
    _, model = preset_model
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = model(x)
        full = model.forward_full(x[:1], size=(size[0] * 2, size[1] + 3))
    assert out.shape == (2, 150, math.ceil(size[0] / 8), math.ceil(size[1] / 8))
    assert full.shape == (1, 150, size[0] * 2, size[1] + 3)


def test_forward_full_equals_resized_logits():
    model = TopFormer.from_preset("tiny", num_classes=7, norm="BN").eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        logits = model(x)
        full = model.forward_full(x)
    ref = torch.nn.functional.interpolate(logits, size=(96, 128), mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, ref)


def test_backward_reaches_every_parameter():
    model = TopFormer.from_preset("tiny", num_classes=5, norm="BN", drop_path_rate=0.0).train()
    # proj BN weights start at 0 (official bn_weight_init); give them a value so grads flow upstream.
    for blk in model.backbone.trans.transformer_blocks:
        torch.nn.init.constant_(blk.attn.proj[1].bn.weight, 0.5)
    out = model(torch.randn(2, 3, 64, 64))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_presets_official_hyperparameters():
    t = TopFormer.from_preset("tiny").config
    assert t.num_heads == 4 and t.head_is_dw and t.c2t_stride == 2 and t.embed_dim == 208
    assert TopFormer.from_preset("small").config.embed_dim == 296
    assert TopFormer.from_preset("base").config.embed_dim == 384
    assert t.norm == "SyncBN"  # official configs train with SyncBN


def test_to_inference_channels_last_matches_default_layout():
    ref = TopFormer.from_preset("small", num_classes=9, norm="BN").eval()
    fast = TopFormer.from_preset("small", num_classes=9, norm="BN")
    fast.load_state_dict(ref.state_dict())
    fast = fast.to_inference()
    assert not fast.training
    assert fast.backbone.tpm.stem[0].c.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 96, 120)
    with torch.inference_mode():
        out = fast(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref(x), atol=1e-4, rtol=1e-4)
