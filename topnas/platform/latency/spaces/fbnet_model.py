"""FBNet-space networks (CIFAR-100 form) as torch modules, for tracing, export and reference checks.

Follows ``FBNet_Infer`` of HW-NAS-Bench (``hw_nas_bench_api/fbnet_models/model_infer.py``, CIFAR
setting): stem conv 3x3 / 1 (no bias) + BN + ReLU; 22 blocks; head conv 1x1 352 -> 1504 + BN +
ReLU; global average pool; linear. A block ``kK_eE[_g2]`` is conv 1x1 (groups g) + BN + ReLU,
[channel shuffle], depthwise K x K (stride s, padding K // 2) + BN + ReLU, conv 1x1 (groups g) +
BN, plus the input when C_in = C_out and s = 1; ``skip`` is the identity or conv 1x1 (stride s) +
BN + ReLU. The reference writes the shuffle as view-permute-view; ``nn.ChannelShuffle`` is the
same permutation as one op.
"""
from __future__ import annotations

from torch import nn

from topnas.platform.latency.spaces.fbnet import HEAD_CHANNELS, NUM_CLASSES, STEM_CHANNELS, block_plan, parse

__all__ = ["build_model"]


def build_model(arch: str, num_classes: int = NUM_CLASSES) -> nn.Module:
    """The FBNet-space network of `arch` (22 block names joined by ``|``) for 32x32 inputs."""
    names = parse(arch)
    blocks = [_block(name, cin, cout, stride) for name, (cin, cout, stride) in zip(names, block_plan())]
    return nn.Sequential(
        _conv_bn(3, STEM_CHANNELS, 3, 1, relu=True),
        *blocks,
        _conv_bn(block_plan()[-1][1], HEAD_CHANNELS, 1, 1, relu=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(HEAD_CHANNELS, num_classes),
    )


def _conv_bn(c_in: int, c_out: int, k: int, stride: int, groups: int = 1, relu: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _block(name: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    if name == "skip":
        return nn.Identity() if (c_in == c_out and stride == 1) else _conv_bn(c_in, c_out, 1, stride, relu=True)
    k, e, g2 = name.split("_") + ([] if name.endswith("_g2") else [""])
    return _InvertedResidual(c_in, c_out, int(k[1:]), int(e[1:]), 2 if g2 else 1, stride)


class _InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, expand: int, groups: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers = [_conv_bn(c_in, hidden, 1, 1, groups, relu=True)]
        if groups > 1:
            layers.append(nn.ChannelShuffle(groups))
        layers += [_conv_bn(hidden, hidden, k, stride, hidden, relu=True), _conv_bn(hidden, c_out, 1, 1, groups)]
        self.body = nn.Sequential(*layers)
        self.residual = c_in == c_out and stride == 1

    def forward(self, x):
        y = self.body(x)
        return y + x if self.residual else y
