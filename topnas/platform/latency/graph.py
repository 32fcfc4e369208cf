"""The fusion pass shared by every graph reader (traced torch module, ONNX file).

A reader emits one :class:`Node` per runtime operation, with the ids of the values it reads and
writes; :meth:`KernelGraph.kernels` then applies what inference runtimes (ONNX Runtime, TFLite,
TNN) do before running a network, and only where they can do it:

* a BatchNorm that is the ONLY consumer of a convolution's output is folded into it (no kernel);
* an activation that is the only consumer of a convolution's (folded) output is fused into it
  (``Kernel.act``); an activation anywhere else is an ``elementwise`` kernel.

"Only consumer" matters: a convolution whose output also feeds a residual or another branch keeps
its output, so its activation runs as a separate kernel. Deciding this needs the whole graph,
which is why it is a pass after reading and not a rule applied while tracing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from topnas.platform.latency.kernels import Kernel

__all__ = ["CONV_TYPES", "FUSABLE_ACTS", "Node", "KernelGraph"]

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
            if j is not None and self.nodes[j].role == "norm":
                drop.add(j)
                v = self.nodes[j].outputs[0]
                j = sole_consumer(v)
            if j is not None and self.nodes[j].role == "act" and not k.act:
                drop.add(j)
                kernels[i] = k._replace(act=self.nodes[j].act)
        return [k for i, k in enumerate(kernels) if k is not None and i not in drop]
