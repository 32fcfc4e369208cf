"""NAS-Bench-201 networks as torch modules, for tracing, export and checks against the reference.

The macro and cell structure of the reference inference network (``TinyNetwork`` with C = 16,
N = 5 in ``xautodl/models/cell_infers``, also vendored by HW-NAS-Bench): conv 3x3 stem + BN; three
stages of five cells (C = 16, 32, 64) with a ResNet basic block (stride 2) between stages; BN +
ReLU, global average pool, linear. Cell ops: ``nor_conv_kxk`` = ReLU -> conv (no bias) -> BN,
``avg_pool_3x3`` = average pool 3 / 1 / 1 without padded elements, ``skip_connect`` = identity.

Two deliberate departures from the reference's Python, neither changing a parameter or a MAC:
``none`` edges are left out (the reference multiplies by 0 and adds the zeros, which is dead work
in the graph), and a node's inputs are summed without the reference's ``sum()`` starting at 0
(``0 + x`` is a spurious kernel in the traced graph). A node whose every incoming edge is ``none``
is ``x * 0`` of its first source (one element-wise kernel) when a later edge reads it, else nothing.
The forward pass returns the logits only (the reference also returns the pooled features).
"""
from __future__ import annotations

from torch import nn

from topnas.platform.latency.spaces.nb201 import CELLS_PER_STAGE, NUM_CLASSES, STAGE_CHANNELS, parse

__all__ = ["build_model"]


def build_model(arch: str, num_classes: int = NUM_CLASSES) -> nn.Module:
    """The NAS-Bench-201 network of `arch` (``|op~j|+|op~j|op~j|+|...|``) for 32x32 inputs (any size works)."""
    return _TinyNetwork(parse(arch), num_classes)


def _relu_conv_bn(c_in: int, c_out: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(c_out))


def _op(name: str, c: int) -> nn.Module:
    if name == "nor_conv_3x3":
        return _relu_conv_bn(c, c, 3, 1)
    if name == "nor_conv_1x1":
        return _relu_conv_bn(c, c, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return nn.Identity()  # skip_connect


class _Cell(nn.Module):
    def __init__(self, nodes, c: int) -> None:
        super().__init__()
        self.edge_ops = nn.ModuleDict()
        self.edges: list[tuple[list[tuple[str, int]], int]] = []  # per node: (live edges (key, source), first source)
        self.read = [any(op != "none" and src == j for later in nodes for op, src in later) for j in range(3)] + [True]
        for i, edges in enumerate(nodes, start=1):
            live = []
            for op, src in edges:
                if op != "none":
                    key = f"{i}_{src}"
                    self.edge_ops[key] = _op(op, c)
                    live.append((key, src))
            self.edges.append((live, edges[0][1]))

    def forward(self, x):
        nodes = [x]
        for i, (live, first_src) in enumerate(self.edges, start=1):
            if not live:  # zeros, computed only when a later edge reads them
                nodes.append(nodes[first_src].mul(0.0) if self.read[i] else None)
                continue
            out = self.edge_ops[live[0][0]](nodes[live[0][1]])
            for key, src in live[1:]:
                out = out + self.edge_ops[key](nodes[src])
            nodes.append(out)
        return nodes[-1]


class _Reduction(nn.Module):
    """ResNet basic block, stride 2, C -> 2C; shortcut avg-pool 2x2 + conv 1x1 (no BN), as the reference."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = _relu_conv_bn(c_in, c_out, 3, 2)
        self.conv_b = _relu_conv_bn(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, 0), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class _TinyNetwork(nn.Module):
    def __init__(self, nodes, num_classes: int) -> None:
        super().__init__()
        c0 = STAGE_CHANNELS[0]
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0))
        cells: list[nn.Module] = []
        for s, c in enumerate(STAGE_CHANNELS):
            if s:
                cells.append(_Reduction(STAGE_CHANNELS[s - 1], c))
            cells += [_Cell(nodes, c) for _ in range(CELLS_PER_STAGE)]
        self.cells = nn.Sequential(*cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(STAGE_CHANNELS[-1]), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(STAGE_CHANNELS[-1], num_classes)

    def forward(self, x):
        x = self.global_pooling(self.lastact(self.cells(self.stem(x))))
        return self.classifier(x.flatten(1))
