"""The fusion pass shared by every graph reader (traced torch module, ONNX file).

A reader emits one :class:`Node` per runtime operation, with the ids of the values it reads and
writes; :meth:`KernelGraph.kernels` then applies what inference runtimes (ONNX Runtime, TFLite,
TNN) do before running a network, and only where they can do it:

* a BatchNorm that is the ONLY consumer of a convolution's output is folded into it (no kernel;
  a BN right after a folded one folds too);
* an activation that is the only consumer of a convolution's (folded) output is fused into it
  (``Kernel.act``); an activation anywhere else is an ``elementwise`` kernel.

"Only consumer" matters: a convolution whose output also feeds a residual or another branch keeps
its output, so its activation runs as a separate kernel. Deciding this needs the whole graph,
which is why it is a pass after reading and not a rule applied while tracing.

The ``*_at`` functions build kernels at ACTUAL shapes (a reader knows the output shape; it need
not reproduce padding or rounding rules); for the regular cases they give exactly the kernels of
the analytic constructors in :mod:`.kernels`, so traced, exported and analytic lists compare equal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from topnas.platform.latency.kernels import FLOAT_BYTES, Kernel, eltwise_kernel, linear_kernel, matmul_kernel

__all__ = ["CONV_TYPES", "FUSABLE_ACTS", "Node", "KernelGraph", "conv_at", "pool_at", "reduce_at", "eltwise_at",
           "matmul_at", "averages"]

Shape = tuple[int, ...]

CONV_TYPES = frozenset({"conv1x1", "conv", "gconv", "dwconv"})
# Activations ONNX Runtime's ConvActivationFusion (and TFLite's fused activations) absorb into a conv.
FUSABLE_ACTS = frozenset({"relu", "relu6", "hardtanh", "clamp", "sigmoid", "tanh", "leaky_relu", "hardsigmoid"})


@dataclass
class Node:
    """One operation: its provisional kernel (None for a free op), the values it reads and writes.

    ``role`` is ``"kernel"``, ``"norm"`` (a BatchNorm: folded into a producing conv when possible,
    else its provisional ``elementwise`` kernel runs) or ``"act"`` (fusable activation ``act``).
    """

    kernel: Kernel | None
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    role: str = "kernel"
    act: str = ""


class KernelGraph:
    """Nodes in execution order plus the graph outputs; :meth:`kernels` gives the fused kernel list."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.outputs: set[int] = set()

    def add(self, kernel: Kernel | None, inputs: Iterable[int], outputs: Iterable[int], role: str = "kernel",
            act: str = "") -> None:
        self.nodes.append(Node(kernel, tuple(inputs), tuple(outputs), role, act))

    def kernels(self) -> list[Kernel]:
        consumers: dict[int, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for v in set(n.inputs):
                consumers.setdefault(v, []).append(i)

        def sole_consumer(v: int) -> int | None:
            c = consumers.get(v, [])
            return c[0] if len(c) == 1 and v not in self.outputs else None

        drop: set[int] = set()
        kernels = [n.kernel for n in self.nodes]
        for i, n in enumerate(self.nodes):
            k = n.kernel
            if k is None or k.type not in CONV_TYPES or not n.outputs:
                continue
            v = n.outputs[0]
            j = sole_consumer(v)
            while j is not None and self.nodes[j].role == "norm":  # a chain of BNs folds one after another
                drop.add(j)
                v = self.nodes[j].outputs[0]
                j = sole_consumer(v)
            if j is not None and self.nodes[j].role == "act" and not k.act:
                drop.add(j)
                kernels[i] = k._replace(act=self.nodes[j].act)
        return [k for i, k in enumerate(kernels) if k is not None and i not in drop]


# ----------------------------------------------------------------------- kernels at actual shapes
def _numel(s: Sequence[int]) -> int:
    return math.prod(s)


def conv_at(x: Shape, w: Shape, out: Shape, stride: int, groups: int) -> Kernel:
    """A 2-D convolution: input, weight (C_out, C_in / g, kh, kw) and output shapes (``kernels.conv_kernel`` fields).

    Non-square kernels / strides record their larger side.
    """
    cin, kh, kw, cout = x[1], w[-2], w[-1], w[0]
    if groups == 1:
        kind = "conv1x1" if kh == kw == 1 else "conv"
    elif groups == cin == cout:
        kind = "dwconv"
    else:
        kind = "gconv"
    n_out = _numel(out)
    weights = _numel(w) + cout  # a bias once BN is folded, as kernels.conv_kernel
    macs = n_out * (cin // groups) * kh * kw
    return Kernel(kind, "conv2d", (x,), out, macs, FLOAT_BYTES * (_numel(x) + n_out + weights), max(kh, kw),
                  int(stride))


def pool_at(x: Shape, out: Shape, k: tuple[int, int], s: tuple[int, int], op: str) -> Kernel:
    """Windowed pooling: one MAC per window element (``kernels.pool_kernel`` / ``avg_pool_kernel``)."""
    return Kernel("pool", op, (x,), out, _numel(out) * k[0] * k[1], FLOAT_BYTES * (_numel(x) + _numel(out)),
                  k[0], s[0])


def reduce_at(op: str, x: Shape, out: Shape) -> Kernel:
    """A reduction that is not spatial pooling (e.g. a mean over tokens): a ``gpool`` kernel."""
    return Kernel("gpool", op, (x,), out, _numel(x), FLOAT_BYTES * (_numel(x) + _numel(out)))


def eltwise_at(op: str, ins: Sequence[Shape], out: Shape) -> Kernel:
    """Element-wise op on its DATA inputs (constants are folded in); broadcast operands after the full one."""
    ins = list(ins)
    for i, s in enumerate(ins):
        if s == out:
            return eltwise_kernel(op, *([s] + ins[:i] + ins[i + 1:]))
    n = _numel(out)
    return Kernel("elementwise", op, tuple(ins), out, n, FLOAT_BYTES * (sum(_numel(s) for s in ins) + n))


def matmul_at(sa: Shape, sb: Shape, out: Shape, a_data: bool, b_data: bool, a_val: Any = None,
              b_val: Any = None) -> Kernel:
    """Activation x activation: ``matmul``; by a constant: ``pool`` if it averages, else ``linear``.

    `a_val` / `b_val`: the constant operand's values (array-like) when known.
    """
    if len(sa) == 1 or len(sb) == 1:  # vector products: a linear map
        return Kernel("linear", "matmul", (sa, sb), out, _numel(out) * sa[-1],
                      FLOAT_BYTES * (_numel(sa) + _numel(sb) + _numel(out)))
    if a_data and b_data:
        return matmul_kernel(sa, sb)
    if not b_data and len(sb) == 2:
        if b_val is not None and averages(b_val, axis=0):
            return matmul_kernel(sa, sb, "pool")
        return linear_kernel(sa, sb[1], bias=False)
    if not a_data and len(sa) == 2 and a_val is not None and averages(a_val, axis=1):
        return matmul_kernel(sa, sb, "pool")
    return matmul_kernel(sa, sb, "linear")


def averages(m: Any, axis: int) -> bool:
    """Non-negative and summing to one along `axis` (the contracted one): an averaging (pooling) matrix."""
    import numpy as np

    m = np.asarray(m, dtype=np.float64)
    return bool((m >= 0).all()) and bool(np.allclose(m.sum(axis=axis), 1.0, atol=1e-5))
