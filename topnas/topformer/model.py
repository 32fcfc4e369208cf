"""TopFormer: Token Pyramid Transformer for Mobile Semantic Segmentation (CVPR 2022).

Paper: https://arxiv.org/abs/2204.05525 . Official code: hustvl/TopFormer (mmseg 0.19).

Plain-PyTorch re-implementation of the official segmentor (backbone ``Topformer`` + ``SimpleHead``)
with the official module names, so official checkpoints load with ``strict=True``, and the official
numerics, quirks included (each read from hustvl/TopFormer's code and checked against its outputs):

* no 1/sqrt(key_dim) attention scaling;
* ReLU in the token pyramid, ReLU6 in the transformer, ReLU in the head;
* the attention activation sits BEFORE the output projection (``proj.0`` = ReLU6);
* TPM hidden width = round(in * t), not make_divisible;
* pooled token size ((h - 1) // c2t_stride + 1) of the LAST pyramid level;
* SIM applies h_sigmoid BEFORE the bilinear upsample of the gate;
* the head sums the decoded levels at stride 8; tiny's ``linear_fuse`` is depthwise.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from topnas.topformer.arch_config import TopFormerConfig, make_divisible, preset_config

__all__ = ["TopFormer", "TopFormerBackbone", "SimpleHead", "ConvBN", "ConvModule", "adaptive_avg_pool"]


def _norm_layer(kind: str, channels: int) -> nn.Module:
    return nn.SyncBatchNorm(channels) if kind == "SyncBN" else nn.BatchNorm2d(channels)


def adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int], exportable: bool = False) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` with an ONNX-exportable path for sizes that do not divide evenly.

    The official export only works where the pooling divides every pyramid level (512, 448).
    Adaptive average pooling is a separable linear map, so for export we apply it as two constant
    averaging matrices; eager mode keeps the exact PyTorch op.
    """
    h, w = x.shape[-2:]
    oh, ow = size
    if not exportable:
        return F.adaptive_avg_pool2d(x, size)
    if h % oh == 0 and w % ow == 0:
        return F.avg_pool2d(x, kernel_size=(h // oh, w // ow))
    ph = _pool_matrix(h, oh, x.dtype, x.device)
    pw = _pool_matrix(w, ow, x.dtype, x.device)
    return torch.matmul(torch.matmul(ph, x), pw.t())


def _pool_matrix(n: int, m: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    mat = torch.zeros(m, n, dtype=dtype, device=device)
    for i in range(m):
        start = (i * n) // m
        end = -((-(i + 1) * n) // m)  # ceil
        mat[i, start:end] = 1.0 / (end - start)
    return mat


class ConvBN(nn.Sequential):
    """Official ``Conv2d_BN``: children ``c`` (conv, no bias) and ``bn``; no activation."""

    def __init__(self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1,
                 bn_weight_init: float = 1.0, norm: str = "BN") -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, ks, stride, pad, 1, groups, bias=False))
        bn = _norm_layer(norm, cout)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.constant_(bn.bias, 0)
        self.add_module("bn", bn)


class ConvModule(nn.Module):
    """The subset of mmcv's ``ConvModule`` TopFormer uses: ``conv`` [+ ``bn``] [+ ReLU ``activate``]."""

    def __init__(self, cin: int, cout: int, groups: int = 1, norm: str | None = "BN", act: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, 1, 0, groups=groups, bias=norm is None)
        self.bn = _norm_layer(norm, cout) if norm else None
        self.activate = nn.ReLU(inplace=False) if act else None
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        if self.bn is not None:
            nn.init.ones_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


class DropPath(nn.Module):
    """Per-sample stochastic depth with 1/keep_prob rescaling (training only)."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = (keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)).floor_()
        return x.div(keep) * mask


class HSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3) / 6


# ---------------------------------------------------------------------------- token pyramid
class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int, stride: int, expand_ratio: float, norm: str) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))  # official: NOT make_divisible
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [ConvBN(cin, hidden, 1, norm=norm), nn.ReLU()]
        layers += [
            ConvBN(hidden, hidden, ks, stride, ks // 2, groups=hidden, norm=norm),
            nn.ReLU(),
            ConvBN(hidden, cout, 1, norm=norm),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TokenPyramidModule(nn.Module):
    def __init__(self, cfg: TopFormerConfig) -> None:
        super().__init__()
        self.out_indices = tuple(cfg.embed_out_indice)
        cin = cfg.stem_channels
        # TPM uses nn.ReLU: the backbone's act_layer (ReLU6) never reaches it.
        self.stem = nn.Sequential(ConvBN(3, cin, 3, 2, 1, norm=cfg.norm), nn.ReLU())
        self.layer_names: list[str] = []
        for i, b in enumerate(cfg.blocks):
            cout = make_divisible(b.out_channels, 8)
            name = f"layer{i + 1}"
            self.add_module(name, InvertedResidual(cin, cout, b.kernel, b.stride, b.expand_ratio, cfg.norm))
            self.layer_names.append(name)
            cin = cout

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        x = self.stem(x)
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


# ---------------------------------------------------------------------------- transformer
class Attention(nn.Module):
    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, norm: str) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        nh_kd = key_dim * num_heads
        self.to_q = ConvBN(dim, nh_kd, 1, norm=norm)
        self.to_k = ConvBN(dim, nh_kd, 1, norm=norm)
        self.to_v = ConvBN(dim, self.dh, 1, norm=norm)
        # Official quirk: activation BEFORE the projection; projection BN starts at 0.
        self.proj = nn.Sequential(nn.ReLU6(), ConvBN(self.dh, dim, bn_weight_init=0, norm=norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n = h * w
        q = self.to_q(x).reshape(b, self.num_heads, self.key_dim, n).permute(0, 1, 3, 2)
        k = self.to_k(x).reshape(b, self.num_heads, self.key_dim, n)
        v = self.to_v(x).reshape(b, self.num_heads, self.d, n).permute(0, 1, 3, 2)
        attn = torch.matmul(q, k).softmax(dim=-1)  # official: no 1/sqrt(key_dim)
        out = torch.matmul(attn, v).permute(0, 1, 3, 2).reshape(b, self.dh, h, w)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, norm: str) -> None:
        super().__init__()
        self.fc1 = ConvBN(dim, hidden, norm=norm)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, bias=True, groups=hidden)
        self.act = nn.ReLU6()
        self.fc2 = ConvBN(hidden, dim, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, dim: int, cfg: TopFormerConfig, drop_path: float) -> None:
        super().__init__()
        self.attn = Attention(dim, cfg.key_dim, cfg.num_heads, cfg.attn_ratio, cfg.norm)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))


class BasicLayer(nn.Module):
    def __init__(self, cfg: TopFormerConfig) -> None:
        super().__init__()
        dpr = [x.item() for x in torch.linspace(0, cfg.drop_path_rate, cfg.depths)]
        self.transformer_blocks = nn.ModuleList(Block(cfg.embed_dim, cfg, r) for r in dpr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.transformer_blocks:
            x = blk(x)
        return x


# ---------------------------------------------------------------------------- semantic injection
class InjectionMultiSum(nn.Module):
    """``muli_sum``: local * upsample(h_sigmoid(act(global))) + upsample(embed(global))."""

    cbr = False

    def __init__(self, cin: int, cout: int, norm: str) -> None:
        super().__init__()
        self.local_embedding = ConvModule(cin, cout, norm=norm, act=self.cbr)
        self.global_embedding = ConvModule(cin, cout, norm=norm, act=self.cbr)
        self.global_act = ConvModule(cin, cout, norm=None if self.cbr else norm)
        self.act = HSigmoid()

    def forward(self, x_l: torch.Tensor, x_g: torch.Tensor) -> torch.Tensor:
        size = x_l.shape[-2:]
        local = self.local_embedding(x_l)
        gate = F.interpolate(self.act(self.global_act(x_g)), size=size, mode="bilinear", align_corners=False)
        glob = F.interpolate(self.global_embedding(x_g), size=size, mode="bilinear", align_corners=False)
        return local * gate + glob


class InjectionMultiSumCBR(InjectionMultiSum):
    """``muli_sum_cbr``: conv-BN-ReLU embeddings, plain conv (with bias) gate."""

    cbr = True


class FuseBlockSum(nn.Module):
    """``fuse_sum``: fuse1(local) + upsample(fuse2(global))."""

    multi = False

    def __init__(self, cin: int, cout: int, norm: str) -> None:
        super().__init__()
        self.fuse1 = ConvModule(cin, cout, norm=norm)
        self.fuse2 = ConvModule(cin, cout, norm=norm)
        self.act = HSigmoid() if self.multi else None

    def forward(self, x_l: torch.Tensor, x_g: torch.Tensor) -> torch.Tensor:
        g = self.fuse2(x_g)
        if self.act is not None:
            g = self.act(g)
        g = F.interpolate(g, size=x_l.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse1(x_l) * g if self.multi else self.fuse1(x_l) + g


class FuseBlockMulti(FuseBlockSum):
    """``fuse_multi``: fuse1(local) * upsample(h_sigmoid(fuse2(global)))."""

    multi = True


SIM_BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "muli_sum": InjectionMultiSum,
    "muli_sum_cbr": InjectionMultiSumCBR,
    "fuse_sum": FuseBlockSum,
    "fuse_multi": FuseBlockMulti,
}


# ---------------------------------------------------------------------------- backbone / head
class TopFormerBackbone(nn.Module):
    """Official ``Topformer`` backbone: TPM -> pyramid pool -> transformer -> SIM."""

    def __init__(self, cfg: TopFormerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.channels = list(cfg.channels)
        self.decode_out_indices = tuple(cfg.decode_out_indices)
        self.c2t_stride = cfg.c2t_stride
        self.exportable = False  # set by the ONNX exporter; see adaptive_avg_pool
        self.tpm = TokenPyramidModule(cfg)
        self.trans = BasicLayer(cfg)
        block = SIM_BLOCKS[cfg.injection_type]
        self.SIM = nn.ModuleList(
            block(c, cfg.out_channels[i], cfg.norm) if i in self.decode_out_indices else nn.Identity()
            for i, c in enumerate(cfg.channels)
        )

    def pyramid_pool(self, feats: list[torch.Tensor]) -> torch.Tensor:
        h, w = feats[-1].shape[-2:]
        size = ((h - 1) // self.c2t_stride + 1, (w - 1) // self.c2t_stride + 1)
        return torch.cat([adaptive_avg_pool(f, size, self.exportable) for f in feats], dim=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        local = self.tpm(x)
        tokens = self.trans(self.pyramid_pool(local))
        glob = tokens.split(self.channels, dim=1)
        return [self.SIM[i](local[i], glob[i]) for i in self.decode_out_indices]

    def init_weights(self) -> None:
        """Official ``Topformer.init_weights`` under SyncBN: conv normal(0, sqrt(2/n)), BN init kept."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


class SimpleHead(nn.Module):
    """Official ``SimpleHead``: sum at stride 8 -> 1x1 ConvModule -> Dropout2d -> ``conv_seg``."""

    def __init__(self, cfg: TopFormerConfig) -> None:
        super().__init__()
        ch = cfg.head_channels
        # conv_seg is created first by the official base class, so it precedes linear_fuse.
        self.conv_seg = nn.Conv2d(ch, cfg.num_classes, 1)
        self.dropout = nn.Dropout2d(cfg.dropout_ratio) if cfg.dropout_ratio > 0 else nn.Identity()
        self.linear_fuse = ConvModule(ch, ch, groups=ch if cfg.head_is_dw else 1, norm=cfg.norm, act=True)
        nn.init.normal_(self.conv_seg.weight, 0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[0]
        for f in feats[1:]:
            x = x + F.interpolate(f, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv_seg(self.dropout(self.linear_fuse(x)))


class TopFormer(nn.Module):
    """TopFormer segmentor (official ``EncoderDecoder`` with ``Topformer`` + ``SimpleHead``).

    Example:
        >>> model = TopFormer.from_preset("tiny", num_classes=150).eval()
        >>> model(torch.randn(1, 3, 375, 500)).shape   # stride-8 head logits
        torch.Size([1, 150, 47, 63])
    """

    def __init__(self, config: TopFormerConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = TopFormerBackbone(config)
        self.decode_head = SimpleHead(config)
        self.backbone.init_weights()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TopFormer":
        return cls(preset_config(name, **overrides))

    @classmethod
    def from_config(cls, config: TopFormerConfig | dict) -> "TopFormer":
        if not isinstance(config, TopFormerConfig):
            config = TopFormerConfig.from_dict(config)
        return cls(config)

    def to_inference(self) -> "TopFormer":
        """Eval mode in channels-last memory: faster eager CPU inference (oneDNN NHWC kernels).

        Numerics match the default layout to float rounding; feed inputs as
        ``x.to(memory_format=torch.channels_last)`` under ``torch.inference_mode()``.
        """
        return self.eval().to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decode-head logits at the output stride (8): B x K x ceil(H/8) x ceil(W/8)."""
        return self.decode_head(self.backbone(x))

    def forward_full(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Logits bilinearly resized to the input size (or `size`), like the official test path."""
        logits = self(x)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if size is not None and tuple(size) != tuple(x.shape[-2:]):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits
