"""Small non-TopFormer torch models for the graph readers' tests (trace and ONNX), and their export."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


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


def export(net: nn.Module, shape: tuple[int, ...], path: str | Path, opset: int = 17) -> Path:
    """`net` (eval) to ONNX with the exporter export_onnx uses (dynamo), fixed input `shape`."""
    from topnas.topformer.export import _quiet_torch_onnx

    net.eval()
    with warnings.catch_warnings(), _quiet_torch_onnx():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(*shape),), str(path), dynamo=True, external_data=False, verbose=False,
                          opset_version=opset)
    return Path(path)
