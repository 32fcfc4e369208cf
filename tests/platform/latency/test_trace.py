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
from tests.helpers.nets import Attention, TinyMobile, TwoConsumers


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


def test_fusion_needs_a_sole_consumer():
    got = trace_kernels(TwoConsumers(), (1, 8, 6, 6))
    x = (1, 8, 6, 6)
    want = [conv_kernel(x, 8, 1, 1, 1), eltwise_kernel("relu", x), eltwise_kernel("add", x, x),
            conv_kernel(x, 8, 3, 1, 1), eltwise_kernel("relu", x), eltwise_kernel("sigmoid", x),
            eltwise_kernel("add", x, x)]
    assert signature(got) == signature(want)


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
