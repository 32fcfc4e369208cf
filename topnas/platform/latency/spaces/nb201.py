"""NAS-Bench-201: the CIFAR cell network of Dong & Yang (ICLR 2020), as a kernel list.

Network: conv 3x3 stem (3 -> 16, BN); three stages of 5 cells at C = 16, 32, 64 with a residual
reduction block between stages; BN + ReLU, global average pool, linear to 100 classes. A cell has
four nodes; node i sums ``op(node j)`` over its incoming edges; the arch string lists the edges as
``|op~j|+|op~j|op~j|+|op~j|op~j|op~j|``.

Inference graph conventions: a ``nor_conv`` edge is a ReLU on its input node followed by a
convolution; ``avg_pool_3x3`` is stride 1, padding 1; ``skip_connect`` is free; ``none`` is an
absent edge (no kernel); a node with k > 1 live inputs costs k - 1 additions, a node with none
(every incoming edge ``none``) that a live edge reads is ``x * 0`` (one element-wise kernel, as
the reference's Zero op; unread, it costs nothing).
The list is built as a graph and passed through the same fusion pass as a traced or exported
model (:class:`~topnas.platform.latency.graph.KernelGraph`): BN folds into its convolution, and a
ReLU fuses into a convolution whose output it alone reads (the reduction block's inner ReLU, and
cell nodes fed by one conv and read by one conv edge); a node read by several edges keeps its
ReLUs as stand-alone kernels. ``spaces.nb201_model.build_model`` traced gives the same list.

Two graph conventions exist among real runtimes, and the phone data tell them apart: with
``prune_dead=True`` the edges into a node whose value never reaches the cell output are removed
(dead-code elimination by the converter); with ``False`` every edge runs. Fitting each phone's data
under both shows which one its pipeline used (``fewshot.choose_convention``). An architecture whose
cell output does not depend on its input (:func:`is_degenerate`) computes a constant; runtimes
differ in whether they fold it away (one phone reports ~0.003 ms for most of them, the others the
full graph), so it is not a latency question and few-shot scoring leaves it out.
"""
from __future__ import annotations

from functools import lru_cache

from topnas.platform.latency.graph import KernelGraph
from topnas.platform.latency.kernels import (
    Kernel,
    conv_kernel,
    eltwise_kernel,
    global_pool_kernel,
    linear_kernel,
    pool_kernel,
)

__all__ = ["NAME", "OPS", "DEFAULT_INPUT", "parse", "kernels", "build_model", "is_degenerate"]

NAME = "nb201"
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
DEFAULT_INPUT = 32
HAS_DEAD_CODE = True  # an edge into a node that never reaches the cell output computes nothing used
STAGE_CHANNELS = (16, 32, 64)
CELLS_PER_STAGE = 5
NUM_CLASSES = 100
Edge = tuple[str, int]  # (op, source node)


@lru_cache(maxsize=32768)
def parse(arch: str) -> tuple[tuple[Edge, ...], ...]:
    """``|op~j|+|...|`` -> per node (1..3) its incoming edges; ValueError names what is wrong."""
    nodes = arch.strip().split("+")
    if len(nodes) != 3:
        raise ValueError(f"expected 3 node groups joined by '+', got {len(nodes)}; allowed: |op~j|+|op~j|op~j|+|...|")
    out = []
    for i, group in enumerate(nodes, start=1):
        edges = [e for e in group.strip().strip("|").split("|") if e]
        if len(edges) != i:
            raise ValueError(f"node {i} needs {i} incoming edges, got {len(edges)} in {group!r}")
        parsed = []
        for e in edges:
            op, _, src = e.partition("~")
            if op not in OPS:
                raise ValueError(f"unknown op {op!r}; allowed: {list(OPS)}")
            if not src.isdigit() or int(src) >= i:
                raise ValueError(f"edge {e!r} of node {i}: source must be an integer in [0, {i - 1}]")
            parsed.append((op, int(src)))
        if sorted(s for _, s in parsed) != list(range(i)):
            raise ValueError(f"node {i} must list each source 0..{i - 1} once, got {group!r}")
        out.append(tuple(parsed))
    return tuple(out)


def _reaches_output(nodes: tuple[tuple[Edge, ...], ...]) -> list[bool]:
    """Per node 0..3: does its value flow (through non-``none`` edges) into node 3?"""
    reach = [False, False, False, True]
    for i in (2, 1, 0):
        reach[i] = any(op != "none" and src == i and reach[dst]
                       for dst, edges in enumerate(nodes, start=1) for op, src in edges)
    return reach


def is_degenerate(arch: str) -> bool:
    """True when the cell output does not depend on the cell input (a constant network)."""
    live = [True]
    for edges in parse(arch):
        live.append(any(op != "none" and live[src] for op, src in edges))
    return not live[3]


def _cell(add: "_Add", nodes: tuple[tuple[Edge, ...], ...], v0: int, c: int, hw: int, reach: list[bool]) -> int:
    """Adds one cell's operations to the graph; returns the value id of its output (node 3)."""
    x = (1, c, hw, hw)
    vals: list[int | None] = [v0]
    read = _read_nodes(nodes, reach)
    for dst, edges in enumerate(nodes, start=1):
        outs: list[int] = []
        for op, src in edges:
            if op == "none" or not reach[dst]:
                continue
            if op.startswith("nor_conv"):
                r = add(eltwise_kernel("relu", x), [vals[src]], "act", "relu")
                outs.append(add(conv_kernel(x, c, 3 if op.endswith("3x3") else 1, 1, 1), [r]))
            elif op == "avg_pool_3x3":
                outs.append(add(pool_kernel(x, 3, 1, 1, "avg_pool2d"), [vals[src]]))
            else:  # skip_connect
                outs.append(vals[src])  # type: ignore[arg-type]
        if not outs:  # no live edge: zeros (x * 0) if anything reads this node, else nothing
            vals.append(add(eltwise_kernel("mul", x), [vals[edges[0][1]]]) if read[dst] else None)
            continue
        v = outs[0]
        for o in outs[1:]:
            v = add(eltwise_kernel("add", x, x), [v, o])
        vals.append(v)
    return vals[3]  # type: ignore[return-value]


def _read_nodes(nodes: tuple[tuple[Edge, ...], ...], reach: list[bool]) -> list[bool]:
    """Per node 0..3: is it read by a live edge (node 3, the cell output, always is)?"""
    read = [False, False, False, True]
    for dst, edges in enumerate(nodes, start=1):
        for op, src in edges:
            if op != "none" and reach[dst]:
                read[src] = True
    return read


def _reduction(add: "_Add", v: int, c: int, hw: int) -> int:
    """ResNet basic block, stride 2, C -> 2C; shortcut avg-pool 2x2 + conv 1x1."""
    x = (1, c, hw, hw)
    a = conv_kernel(x, 2 * c, 3, 2, 1)
    y = a.output
    va = add(a, [add(eltwise_kernel("relu", x), [v], "act", "relu")])
    vb = add(conv_kernel(y, 2 * c, 3, 1, 1), [add(eltwise_kernel("relu", y), [va], "act", "relu")])
    vd = add(conv_kernel((1, c, hw // 2, hw // 2), 2 * c, 1, 1, 1), [add(pool_kernel(x, 2, 2, 0, "avg_pool2d"), [v])])
    return add(eltwise_kernel("add", y, y), [vd, vb])


class _Add:
    """Appends a node to a KernelGraph and returns its (new) output value id."""

    def __init__(self, graph: KernelGraph) -> None:
        self.graph = graph
        self.n = 0

    def __call__(self, kernel: Kernel, inputs: list, role: str = "kernel", act: str = "") -> int:
        self.n += 1
        self.graph.add(kernel, inputs, (self.n,), role, act)
        return self.n


@lru_cache(maxsize=32768)
def kernels(arch: str, input_hw: int = DEFAULT_INPUT, prune_dead: bool = False) -> tuple[Kernel, ...]:
    """The inference kernels of `arch` at a square input of side `input_hw` (see module docstring)."""
    nodes = parse(arch)
    reach = _reaches_output(nodes) if prune_dead else [True] * 4
    graph = KernelGraph()
    add = _Add(graph)
    hw = input_hw
    v = add(conv_kernel((1, 3, hw, hw), STAGE_CHANNELS[0], 3, 1, 1), [0])  # value 0 = the input image
    for s, c in enumerate(STAGE_CHANNELS):
        if s:
            v = _reduction(add, v, STAGE_CHANNELS[s - 1], hw)
            hw = (hw + 1) // 2
        for _ in range(CELLS_PER_STAGE):
            v = _cell(add, nodes, v, c, hw, reach)
    x = (1, STAGE_CHANNELS[-1], hw, hw)
    v = add(eltwise_kernel("relu", x), [add(eltwise_kernel("affine", x), [v], "norm")], "act", "relu")
    out = add(linear_kernel((1, STAGE_CHANNELS[-1]), NUM_CLASSES), [add(global_pool_kernel(x), [v])])
    graph.outputs = {out}
    return tuple(graph.kernels())


def build_model(arch: str, num_classes: int = NUM_CLASSES):
    """`arch` as a torch ``nn.Module`` (the reference network; imports torch, see :mod:`.nb201_model`)."""
    from topnas.platform.latency.spaces.nb201_model import build_model as build

    return build(arch, num_classes)
