"""Pin each official TopFormer quirk (read from hustvl/TopFormer's code) without the official code.

Each test computes the expected value by hand (or inspects module types / shapes) so that
"fixing" a quirk in ``topnas/topformer/model.py`` makes exactly that test fail.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from topnas.topformer import TopFormer, make_divisible, preset_config
from topnas.topformer.model import (
    Attention,
    ConvBN,
    DropPath,
    InjectionMultiSum,
    InvertedResidual,
    SimpleHead,
)


@torch.no_grad()
def _randomise(module: nn.Module, seed: int = 0, bn_scale: float = 1.0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.copy_((torch.rand(m.weight.shape, generator=g) + 0.5) * bn_scale)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        elif isinstance(m, nn.Conv2d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.weight[0].numel()))
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return module.eval()


def _conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode conv + BN written out with functional ops."""
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _hsig(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3) / 6


# --------------------------------------------------------------------------- attention
@torch.no_grad()
def test_attention_is_softmax_qk_without_scaling_then_relu6_then_proj():
    dim, key_dim, heads, ratio = 48, 16, 3, 2
    attn = _randomise(Attention(dim, key_dim, heads, ratio, "BN"), seed=1)
    assert attn.proj[1].bn.weight.abs().min() > 0  # the zero-init projection BN must not hide the path
    x = torch.randn(2, dim, 3, 5, generator=torch.Generator().manual_seed(2)) * 2
    q_all, k_all, v_all = attn.to_q(x), attn.to_k(x), attn.to_v(x)
    d = int(ratio * key_dim)
    b, n = x.shape[0], x.shape[2] * x.shape[3]

    def by_hand(scale: float, act_before_proj: bool = True) -> torch.Tensor:
        outs = []
        for h in range(heads):  # channel layout: head-major blocks of key_dim (q, k) / d (v) channels
            q = q_all[:, h * key_dim:(h + 1) * key_dim].reshape(b, key_dim, n).transpose(1, 2)  # B,N,kd
            k = k_all[:, h * key_dim:(h + 1) * key_dim].reshape(b, key_dim, n)  # B,kd,N
            v = v_all[:, h * d:(h + 1) * d].reshape(b, d, n).transpose(1, 2)  # B,N,d
            p = torch.softmax(q @ k * scale, dim=-1)  # softmax over keys
            outs.append((p @ v).transpose(1, 2).reshape(b, d, *x.shape[2:]))
        mixed = torch.cat(outs, dim=1)
        # proj = Sequential(ReLU6, Conv2d_BN): the activation comes BEFORE the projection.
        if act_before_proj:
            return _conv_bn(F.relu6(mixed), attn.proj[1].c, attn.proj[1].bn)
        return F.relu6(_conv_bn(mixed, attn.proj[1].c, attn.proj[1].bn))

    expected = by_hand(1.0)
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(attn(x), by_hand(key_dim ** -0.5), atol=1e-3), "1/sqrt(key_dim) must NOT be applied"
    assert not torch.allclose(attn(x), by_hand(1.0, act_before_proj=False), atol=1e-3)


# --------------------------------------------------------------------------- activations
def test_tpm_uses_relu_transformer_uses_relu6_head_uses_relu():
    model = TopFormer.from_preset("tiny", num_classes=150, norm="BN")
    tpm = model.backbone.tpm
    assert type(tpm.stem[1]) is nn.ReLU
    for name in tpm.layer_names:
        acts = [m for m in getattr(tpm, name).conv if not isinstance(m, ConvBN)]
        assert acts and all(type(a) is nn.ReLU for a in acts), f"{name}: {acts}"
    for m in tpm.modules():
        assert not isinstance(m, nn.ReLU6), "the backbone act_layer (ReLU6) must not reach the TPM"
    for blk in model.backbone.trans.transformer_blocks:
        assert type(blk.attn.proj[0]) is nn.ReLU6  # proj[0] = activation ...
        assert isinstance(blk.attn.proj[1], ConvBN)  # ... BEFORE proj[1] = Conv2d_BN
        assert list(dict(blk.attn.proj.named_children())) == ["0", "1"]
        assert type(blk.mlp.act) is nn.ReLU6
    assert type(model.decode_head.linear_fuse.activate) is nn.ReLU
    assert not any(isinstance(m, (nn.LayerNorm, nn.GroupNorm)) for m in model.modules())


def test_attention_projection_bn_starts_at_zero():
    model = TopFormer.from_preset("tiny", num_classes=150, norm="BN")
    for blk in model.backbone.trans.transformer_blocks:
        assert torch.count_nonzero(blk.attn.proj[1].bn.weight) == 0
        assert torch.all(blk.attn.to_q.bn.weight == 1)


# --------------------------------------------------------------------------- TPM widths
@pytest.mark.parametrize("cin,t,hidden", [(24, 2.5, 60), (24, 2.3, 55), (16, 3, 48), (96, 6, 576)])
def test_inverted_residual_hidden_width_is_round_in_times_t(cin, t, hidden):
    block = InvertedResidual(cin, 24, 3, 1, t, "BN")
    assert block.conv[0].c.weight.shape == (hidden, cin, 1, 1)
    assert block.conv[2].c.weight.shape == (hidden, 1, 3, 3)
    assert block.conv[4].c.weight.shape == (24, hidden, 1, 1)
    if t in (2.5, 2.3):
        assert make_divisible(cin * t, 8) != hidden  # the official code does NOT round to 8


def test_non_integer_expand_ratio_row_in_a_model():
    rows = [list(b.as_list()) for b in preset_config("small").blocks]
    rows[2] = [3, 2.5, 24, 1]  # layer3: 24 -> round(60.0) = 60 hidden (make_divisible would give 64)
    model = TopFormer.from_preset("small", blocks=rows, num_classes=4, norm="BN").eval()
    assert model.backbone.tpm.layer3.conv[0].c.weight.shape == (60, 24, 1, 1)
    assert model.backbone.tpm.layer3.conv[2].c.weight.shape == (60, 1, 3, 3)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 4, 8, 12)


def test_t1_block_has_no_expansion_and_residual_rule():
    b = InvertedResidual(16, 16, 3, 1, 1, "BN")
    assert [type(m) for m in b.conv] == [ConvBN, nn.ReLU, ConvBN]
    assert b.conv[0].c.groups == 16 and b.use_res_connect
    assert not InvertedResidual(16, 24, 3, 1, 3, "BN").use_res_connect
    assert not InvertedResidual(16, 16, 3, 2, 3, "BN").use_res_connect


# --------------------------------------------------------------------------- token grid
def _ceil_half(n: int, times: int) -> int:
    for _ in range(times):
        n = (n - 1) // 2 + 1  # 3x3/5x5 conv, stride 2, padding k//2
    return n


@pytest.mark.parametrize("c2t_stride", [1, 2, 4])
@pytest.mark.parametrize("size", [(333, 257), (97, 161), (64, 64)])
def test_pooled_token_grid_uses_ceil_of_last_level(size, c2t_stride):
    model = TopFormer.from_preset("tiny", num_classes=5, norm="BN", c2t_stride=c2t_stride).eval()
    seen = {}
    model.backbone.tpm.register_forward_hook(lambda m, i, o: seen.__setitem__("tpm", o))
    model.backbone.trans.register_forward_pre_hook(lambda m, args: seen.__setitem__("tokens", args[0]))
    with torch.no_grad():
        model.backbone(torch.randn(1, 3, *size))
    h32, w32 = _ceil_half(size[0], 5), _ceil_half(size[1], 5)
    assert seen["tpm"][-1].shape[-2:] == (h32, w32)
    grid = ((h32 - 1) // c2t_stride + 1, (w32 - 1) // c2t_stride + 1)
    assert seen["tokens"].shape == (1, 208, *grid)
    assert model.config.token_grid(*size) == grid
    expected = torch.cat([F.adaptive_avg_pool2d(f, grid) for f in seen["tpm"]], dim=1)  # order s4, s8, s16, s32
    torch.testing.assert_close(seen["tokens"], expected, rtol=0, atol=0)
    if c2t_stride > 1 and (h32 % c2t_stride or w32 % c2t_stride):
        assert grid != (h32 // c2t_stride, w32 // c2t_stride)  # floor division would differ here


# --------------------------------------------------------------------------- semantic injection
@torch.no_grad()
def test_sim_gate_h_sigmoid_is_applied_before_upsampling():
    sim = _randomise(InjectionMultiSum(32, 48, "BN"), seed=3, bn_scale=4.0)  # gate logits well past +-3
    x_l = torch.randn(2, 32, 9, 11, generator=torch.Generator().manual_seed(4))
    x_g = torch.randn(2, 32, 3, 4, generator=torch.Generator().manual_seed(5))
    size = x_l.shape[-2:]
    local = _conv_bn(x_l, sim.local_embedding.conv, sim.local_embedding.bn)
    gate_logits = _conv_bn(x_g, sim.global_act.conv, sim.global_act.bn)
    glob = _up(_conv_bn(x_g, sim.global_embedding.conv, sim.global_embedding.bn), size)
    before = local * _up(_hsig(gate_logits), size) + glob
    after = local * _hsig(_up(gate_logits, size)) + glob
    assert (before - after).abs().max() > 1e-2  # the two orders are distinguishable on this input
    out = sim(x_l, x_g)
    torch.testing.assert_close(out, before, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, after, atol=1e-3)


# --------------------------------------------------------------------------- head
@torch.no_grad()
def test_head_sums_levels_at_stride8_then_conv_bn_relu_then_conv_seg():
    cfg = preset_config("tiny", num_classes=7, norm="BN")
    head = _randomise(SimpleHead(cfg), seed=6)
    g = torch.Generator().manual_seed(7)
    feats = [torch.randn(2, 128, 9, 11, generator=g), torch.randn(2, 128, 5, 6, generator=g),
             torch.randn(2, 128, 3, 3, generator=g)]
    fused = feats[0] + _up(feats[1], (9, 11)) + _up(feats[2], (9, 11))  # SUM, not concat
    lf = head.linear_fuse
    y = F.relu(_conv_bn(fused, lf.conv, lf.bn))
    expected = F.conv2d(y, head.conv_seg.weight, head.conv_seg.bias)  # Dropout2d is identity in eval
    out = head(feats)
    assert out.shape == (2, 7, 9, 11)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert head.conv_seg.weight.shape == (7, 128, 1, 1)
    assert isinstance(head.dropout, nn.Dropout2d) and head.dropout.p == 0.1


@pytest.mark.parametrize("preset,shape,groups", [
    ("tiny", (128, 1, 1, 1), 128), ("small", (192, 192, 1, 1), 1), ("base", (256, 256, 1, 1), 1)])
def test_linear_fuse_is_depthwise_only_for_tiny(preset, shape, groups):
    model = TopFormer.from_preset(preset, num_classes=150, norm="BN")
    conv = model.decode_head.linear_fuse.conv
    assert conv.weight.shape == shape and conv.groups == groups and conv.bias is None


# --------------------------------------------------------------------------- drop path
def test_drop_path_is_identity_in_eval_and_stochastic_in_train():
    dp = DropPath(0.5)
    x = torch.randn(64, 8, 3, 3)
    dp.eval()
    assert dp(x) is x or torch.equal(dp(x), x)
    dp.train()
    torch.manual_seed(0)
    y = dp(x)
    kept = [torch.equal(y[i], x[i] * 2) for i in range(64)]
    dropped = [torch.count_nonzero(y[i]) == 0 for i in range(64)]
    assert all(k or d for k, d in zip(kept, dropped)) and any(kept) and any(dropped)  # per-sample, 1/keep rescale


def test_model_drop_path_rates_and_eval_determinism():
    model = TopFormer.from_preset("tiny", num_classes=5, norm="BN", drop_path_rate=0.9)
    blocks = model.backbone.trans.transformer_blocks
    assert isinstance(blocks[0].drop_path, nn.Identity)  # linspace(0, rate, depths)[0] == 0
    rates = [b.drop_path.drop_prob for b in blocks[1:]]
    assert rates == pytest.approx([0.3, 0.6, 0.9])
    model.eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        torch.manual_seed(0)
        a = model(x)
        torch.manual_seed(1)
        b = model(x)
    assert torch.equal(a, b)
