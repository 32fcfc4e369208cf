"""trace_kernels on non-TopFormer modules: every kernel type, BN folding, act fusion, matmul kinds, errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from topnas.platform.latency.kernels import (
    KERNEL_TYPES,
    conv_kernel,
    eltwise_kernel,
    global_pool_kernel,
    layout_kernel,
    linear_kernel,
    matmul_kernel,
    permute_kernel,
    pool_kernel,
    resize_kernel,
    signature,
    softmax_kernel,
)
from topnas.platform.latency.trace import trace_kernels


class TinyMobile(nn.Module):
    """Stem, grouped 1x1 + shuffle, depthwise, projection + residual, max pool, SE gate, classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1, groups=2, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.shuffle = nn.ChannelShuffle(2)
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.project = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.se = nn.Linear(16, 16)
        self.head = nn.Conv2d(16, 24, 5, 1, 2)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.project(self.dw(self.shuffle(self.expand(x))))
        x = self.pool(x + y)
        gate = torch.sigmoid(self.se(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        x = x * gate[:, :, None, None]
        x = F.hardswish(self.head(x))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.fc(x.mean((2, 3)))


def test_tiny_mobilenet_kernels_by_hand():
    net = TinyMobile()
    net.train()
    got = trace_kernels(net, (1, 3, 32, 32))
    assert net.training  # mode restored
    x = (1, 3, 32, 32)
    s = (1, 16, 16, 16)
    e = (1, 32, 16, 16)
    p = (1, 16, 8, 8)
    h = (1, 24, 8, 8)
    want = [
        conv_kernel(x, 16, 3, 2, 1, "relu"),              # BN folded, ReLU fused
        conv_kernel(s, 32, 1, 1, 2, "hardtanh"),           # grouped 1x1 (gconv), ReLU6 = hardtanh fused
        layout_kernel("channel_shuffle", (e,), e),
        conv_kernel(e, 32, 3, 1, 32, "relu"),              # depthwise
        conv_kernel(e, 16, 1, 1, 1),                       # projection, BN folded
        eltwise_kernel("add", s, s),                       # residual
        pool_kernel(s, 3, 2, 1, "max_pool2d"),
        global_pool_kernel(p, (1, 1)),
        linear_kernel((1, 16), 16),
        eltwise_kernel("sigmoid", (1, 16)),                # after a linear: not fused
        eltwise_kernel("mul", p, (1, 16, 1, 1)),           # broadcast gate
        conv_kernel(p, 24, 5, 1, 1),                       # dense 5x5
        eltwise_kernel("hardswish", h),                    # not a fusable activation
        resize_kernel(h, (16, 16)),
        global_pool_kernel((1, 24, 16, 16), (1, 1)),       # mean over H, W
        linear_kernel((1, 24), 10),
    ]
    assert signature(got) == signature(want)
    assert [k.type for k in got] == ["conv", "gconv", "layout", "dwconv", "conv1x1", "elementwise", "pool", "gpool",
                                     "linear", "elementwise", "elementwise", "conv", "elementwise", "resize",
                                     "gpool", "linear"]


class TwoConsumers(nn.Module):
    """A conv output read twice keeps its activation separate; BN read by two branches is not folded."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 8, 1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.a(x)
        z = F.relu(y) + y                      # y has two consumers: relu is its own kernel
        w = self.bn(self.b(z))                 # folded: bn is b's only consumer
        return torch.relu(w) + torch.sigmoid(w)  # w has two consumers: nothing fused


def test_fusion_needs_a_sole_consumer():
    got = trace_kernels(TwoConsumers(), (1, 8, 6, 6))
    x = (1, 8, 6, 6)
    want = [conv_kernel(x, 8, 1, 1, 1), eltwise_kernel("relu", x), eltwise_kernel("add", x, x),
            conv_kernel(x, 8, 3, 1, 1), eltwise_kernel("relu", x), eltwise_kernel("sigmoid", x),
            eltwise_kernel("add", x, x)]
    assert signature(got) == signature(want)


class Attention(nn.Module):
    """Token mixer: linear qkv, q.k^T, softmax, attn.v, averaging matrix (pool), weight matrix (linear)."""

    def __init__(self, n: int = 6, c: int = 8) -> None:
        super().__init__()
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.w = nn.Parameter(torch.randn(c, 4))
        self.register_buffer("avg", torch.full((n, 2), 1.0 / n))

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        a = torch.bmm(q, k.transpose(1, 2)).softmax(-1)
        t = a @ v                                      # (1, n, c)
        pooled = t.transpose(1, 2) @ self.avg          # averages tokens: pool
        return torch.cat([pooled.flatten(1), (t @ self.w).flatten(1)], 1)


def test_matmul_kinds():
    got = trace_kernels(Attention(), (1, 6, 8))
    t = (1, 6, 8)
    want = [linear_kernel(t, 24, bias=False), layout_kernel("split", ((1, 6, 24),), (1, 6, 24)),
            permute_kernel(t, (0, 2, 1)), matmul_kernel(t, (1, 8, 6)), softmax_kernel((1, 6, 6)),
            matmul_kernel((1, 6, 6), t), permute_kernel(t, (0, 2, 1)), matmul_kernel((1, 8, 6), (6, 2), "pool"),
            linear_kernel(t, 4, bias=False), layout_kernel("cat", [(1, 16), (1, 24)], (1, 40))]
    assert signature(got) == signature(want)
    assert {k.type for k in got} <= set(KERNEL_TYPES)


class Odd(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, 1)


class ConstantsOnly(nn.Module):
    """Work on constants only (folded at export) records nothing; constant operands are not inputs."""

    def forward(self, x):
        m = torch.zeros(4, 4)
        m = torch.cumsum(m + 1, 0)
        return F.relu(x) + m.sum()


def test_unknown_op_raises_and_constants_are_free():
    with pytest.raises(RuntimeError, match="cumsum"):
        trace_kernels(Odd(), (1, 4))
    got = trace_kernels(ConstantsOnly(), (1, 4))
    assert signature(got) == signature([eltwise_kernel("relu", (1, 4)), eltwise_kernel("add", (1, 4))])
