"""The FBNet space in its CIFAR-100 form (HW-NAS-Bench / HELP), as a kernel list.

Stem conv 3x3 (3 -> 16, stride 1, BN, ReLU); 22 searchable blocks in 7 stages; head conv 1x1
352 -> 1504 (BN, ReLU), global average pool, linear to 100 classes. A block ``kK_eE[_g2]`` is a
MobileNetV2 inverted residual: 1x1 expansion (groups g) + ReLU, [channel shuffle when g = 2],
K x K depthwise (stride s) + ReLU, 1x1 projection (groups g), residual add when the shape is kept.
``skip`` is the identity, or conv 1x1 (stride s) + ReLU when the shape changes. BN is folded and a
ReLU that directly follows a convolution is fused into it, as in the exported graph.
"""
from __future__ import annotations

import re
from functools import lru_cache

from topnas.platform.latency.kernels import (
    Kernel,
    conv_kernel,
    eltwise_kernel,
    global_pool_kernel,
    layout_kernel,
    linear_kernel,
)

__all__ = ["NAME", "BLOCKS", "DEFAULT_INPUT", "parse", "kernels", "build_model", "block_plan", "is_degenerate"]

NAME = "fbnet"
DEFAULT_INPUT = 32
HAS_DEAD_CODE = False  # every block feeds the next
STAGE_BLOCKS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1504
NUM_CLASSES = 100
BLOCKS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
_BLOCK = re.compile(r"^k(3|5)_e(1|3|6)(_g2)?$")
N_BLOCKS = sum(STAGE_BLOCKS)


def block_plan() -> list[tuple[int, int, int]]:
    """(C_in, C_out, stride) of each of the 22 searchable blocks."""
    plan, cin = [], STEM_CHANNELS
    for n, c, s in zip(STAGE_BLOCKS, STAGE_CHANNELS, STAGE_STRIDES):
        for i in range(n):
            plan.append((cin, c, s if i == 0 else 1))
            cin = c
    return plan


def is_degenerate(arch: str) -> bool:
    """Never: every FBNet network depends on its input (uniform space interface)."""
    parse(arch)
    return False


@lru_cache(maxsize=32768)
def parse(arch: str) -> tuple[str, ...]:
    """``k5_e6|skip|...`` (22 names) -> the names; ValueError names what is wrong."""
    names = tuple(arch.strip().split("|"))
    if len(names) != N_BLOCKS:
        raise ValueError(f"expected {N_BLOCKS} block names joined by '|', got {len(names)}")
    for i, name in enumerate(names):
        if name not in BLOCKS:
            raise ValueError(f"block {i}: unknown name {name!r}; allowed: {list(BLOCKS)}")
    return names


def _block(name: str, x: tuple[int, ...], cout: int, stride: int) -> tuple[list[Kernel], tuple[int, ...]]:
    cin = x[1]
    if name == "skip":
        if cin == cout and stride == 1:
            return [], x
        k = conv_kernel(x, cout, 1, stride, 1, "relu")
        return [k], k.output
    ksize, expand, g2 = _BLOCK.match(name).groups()  # type: ignore[union-attr]
    groups = 2 if g2 else 1
    hidden = cin * int(expand)
    ks = [conv_kernel(x, hidden, 1, 1, groups, "relu")]
    y = ks[-1].output
    if groups == 2:
        ks.append(layout_kernel("channel_shuffle", (y,), y))
    ks.append(conv_kernel(y, hidden, int(ksize), stride, hidden, "relu"))
    ks.append(conv_kernel(ks[-1].output, cout, 1, 1, groups))
    out = ks[-1].output
    if cin == cout and stride == 1:
        ks.append(eltwise_kernel("add", out, x))
    return ks, out


@lru_cache(maxsize=32768)
def kernels(arch: str, input_hw: int = DEFAULT_INPUT, prune_dead: bool = False) -> tuple[Kernel, ...]:
    """The inference kernels of `arch` at a square input of side `input_hw`.

    `prune_dead` is accepted for a uniform space interface; an FBNet network has no dead code.
    """
    names = parse(arch)
    stem = conv_kernel((1, 3, input_hw, input_hw), STEM_CHANNELS, 3, 1, 1, "relu")
    ks, x = [stem], stem.output
    for name, (_cin, cout, stride) in zip(names, block_plan()):
        bk, x = _block(name, x, cout, stride)
        ks += bk
    head = conv_kernel(x, HEAD_CHANNELS, 1, 1, 1, "relu")
    ks += [head, global_pool_kernel(head.output), linear_kernel((1, HEAD_CHANNELS), NUM_CLASSES)]
    return tuple(ks)


def build_model(arch: str, num_classes: int = NUM_CLASSES):
    """`arch` as a torch ``nn.Module`` (the reference network; imports torch, see :mod:`.fbnet_model`)."""
    from topnas.platform.latency.spaces.fbnet_model import build_model as build

    return build(arch, num_classes)
