"""Kernels of an exported ONNX graph, for any model (``topnas latency predict --onnx``).

:func:`onnx_kernels` loads the file, runs ``onnx.shape_inference`` (with data propagation, so
Reshape / Resize targets are known) and maps each node to the generic kernels of
:mod:`topnas.platform.latency.kernels` at its inferred shapes, with the same rules as the torch
recorder (:mod:`topnas.platform.latency.trace`): Conv (group, kernel, stride) -> conv1x1 / conv /
gconv / dwconv; Gemm and MatMul by a constant -> linear (an Add of a constant right after it is
its bias), MatMul by an averaging constant -> pool, MatMul of two activations -> matmul;
Average/MaxPool -> pool; GlobalAverage/MaxPool and ReduceMean/Max over H, W -> gpool; Resize ->
resize; Softmax; element-wise ops and normalisations -> elementwise; Transpose / Concat / Split /
Pad / DepthToSpace -> layout; Reshape, Flatten, Squeeze, Identity, Shape, Cast ... are free.
BatchNormalization and activations (Relu, Clip, Sigmoid, HardSigmoid, ...) are folded / fused
into a convolution when they are its only consumer (:class:`~topnas.platform.latency.graph.KernelGraph`).

Nodes whose inputs are all constants are folded (a runtime computes them once). A symbolic batch
dimension is taken as 1; any other symbolic input dimension is an error (export with a fixed size).
"""
from __future__ import annotations

import os
from typing import Any

from topnas.errors import ConfigError
from topnas.platform.latency.graph import KernelGraph, conv_at, eltwise_at, matmul_at, pool_at, reduce_at
from topnas.platform.latency.kernels import (
    Kernel,
    eltwise_kernel,
    global_pool_kernel,
    layout_kernel,
    linear_kernel,
    matmul_kernel,
    permute_kernel,
    resize_kernel,
    softmax_kernel,
)

__all__ = ["onnx_kernels", "ONNX_OPS"]

Shape = tuple[int, ...]

_ACTS = {"Relu": "relu", "Clip": "clip", "Sigmoid": "sigmoid", "Tanh": "tanh", "LeakyRelu": "leaky_relu",
         "HardSigmoid": "hardsigmoid"}
_ELTWISE = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow", "Neg": "neg", "Abs": "abs",
            "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Reciprocal": "reciprocal", "Max": "maximum",
            "Min": "minimum", "Where": "where", "Erf": "erf", "HardSwish": "hardswish", "Gelu": "gelu",
            "Elu": "elu", "Selu": "selu", "Celu": "celu", "Mish": "mish", "Softplus": "softplus", "PRelu": "prelu",
            "LayerNormalization": "layer_norm", "InstanceNormalization": "instance_norm",
            "GroupNormalization": "group_norm", "LpNormalization": "normalize", "Equal": "eq", "Less": "lt",
            "Greater": "gt", "Not": "not", "And": "and", "Or": "or"}
_LAYOUT = {"Concat": "cat", "Pad": "pad", "DepthToSpace": "pixel_shuffle", "SpaceToDepth": "pixel_unshuffle",
           "Tile": "tile"}
_FREE = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast", "Shape", "Size", "Slice",
         "Gather", "Expand", "CastLike", "ConstantOfShape", "Constant", "Range"}
_POOL = {"AveragePool": "avg_pool2d", "MaxPool": "max_pool2d"}
_GPOOL = {"GlobalAveragePool": "adaptive_avg_pool2d", "GlobalMaxPool": "adaptive_max_pool2d"}
_REDUCE = {"ReduceMean": "adaptive_avg_pool2d", "ReduceMax": "adaptive_max_pool2d", "ReduceSum": "sum"}
ONNX_OPS = tuple(sorted({"Conv", "Gemm", "MatMul", "Resize", "Upsample", "Softmax", "LogSoftmax", "Transpose",
                         "Split", "BatchNormalization", *_ACTS, *_ELTWISE, *_LAYOUT, *_FREE, *_POOL, *_GPOOL,
                         *_REDUCE}))


def onnx_kernels(path: str | os.PathLike[str]) -> list[Kernel]:
    """The inference kernels of the ONNX model at `path` (any architecture).

    Raises ``ConfigError`` (one line naming the file) when it does not load, has dynamic spatial
    sizes, or holds an operator this reader does not classify.
    """
    model = _load(path)
    return _Reader(model, str(path)).kernels()


def _load(path: str | os.PathLike[str]) -> Any:
    import onnx

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ConfigError("onnx", p, "an existing .onnx file")
    try:
        model = onnx.load(p)
    except Exception as exc:  # noqa: BLE001 - protobuf raises many types; the user needs one line
        raise ConfigError("onnx", p, "an ONNX model file", hint=f"does not load: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not model.graph.node:
        raise ConfigError("onnx", p, "an ONNX model file", hint="no graph nodes (not an ONNX model?)")
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if d.dim_value > 0:
                continue
            if i == 0:
                d.Clear()
                d.dim_value = 1  # batch 1, as every latency in this project
            else:
                raise ConfigError("onnx", p, "static input sizes",
                                  hint=f"input {inp.name!r} dimension {i} is {d.dim_param or '?'}; "
                                       "export with a fixed input size")
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError("onnx", p, "a graph onnx.shape_inference can type",
                          hint=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


class _Reader:
    def __init__(self, model: Any, path: str) -> None:
        from onnx import numpy_helper

        self.path = path
        g = model.graph
        self.graph = g
        self.shapes: dict[str, Shape] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            dims = vi.type.tensor_type.shape.dim
            if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                self.shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
        self.const: dict[str, Any] = {}  # constant values (None when not computed)
        for init in g.initializer:
            self.const[init.name] = numpy_helper.to_array(init)
            self.shapes[init.name] = tuple(int(d) for d in init.dims)
        self.values: dict[str, int] = {}
        self.consumers: dict[str, list[Any]] = {}
        for n in g.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.unknown: set[str] = set()

    # --------------------------------------------------------------------------------- helpers
    def shape(self, name: str) -> Shape:
        if name not in self.shapes:
            raise ConfigError("onnx", self.path, "a graph whose tensor shapes onnx.shape_inference resolves",
                              hint=f"no static shape for tensor {name!r}")
        return self.shapes[name]

    def value(self, name: str) -> int:
        if name not in self.values:
            self.values[name] = len(self.values) + 1
        return self.values[name]

    def is_data(self, name: str) -> bool:
        return bool(name) and name not in self.const

    def attrs(self, node: Any) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    # --------------------------------------------------------------------------------- reading
    def kernels(self) -> list[Kernel]:
        from onnx import numpy_helper

        graph = KernelGraph()
        skip: set[int] = set()  # ids of nodes folded into an earlier kernel (a linear's bias Add)
        alias: dict[str, str] = {}
        for node in self.graph.node:
            ins = [alias.get(i, i) for i in node.input]
            data = [i for i in ins if self.is_data(i)]
            if node.op_type == "Constant":
                a = self.attrs(node)
                t = a.get("value")
                self.const[node.output[0]] = numpy_helper.to_array(t) if t is not None else None
                continue
            if id(node) in skip:
                continue
            if not data or node.op_type in ("Shape", "Size"):  # constants only: folded by the runtime
                for o in node.output:
                    self.const.setdefault(o, None)
                continue
            got = self.classify(node, ins, data)
            if got is None:
                continue
            kernel, role, act = got
            if isinstance(kernel, tuple) and kernel[0] == "bias":  # linear + its bias Add
                kernel, add = kernel[1], kernel[2]
                skip.add(id(add))
                alias[add.output[0]] = node.output[0]
                if add.output[0] in self.outputs:
                    self.outputs.add(node.output[0])
            graph.add(kernel, [self.value(i) for i in data], [self.value(o) for o in node.output if o], role, act)
        if self.unknown:
            raise ConfigError("onnx", self.path, f"operators {list(ONNX_OPS)}",
                              hint=f"unclassified ONNX operators {sorted(self.unknown)}")
        graph.outputs = {self.values[o] for o in self.outputs if o in self.values}
        return graph.kernels()

    def classify(self, node: Any, ins: list[str], data: list[str]) -> tuple[Any, str, str] | None:
        op, a = node.op_type, self.attrs(node)
        out = node.output[0]
        if op == "Conv":
            strides = a.get("strides", [1])
            return conv_at(self.shape(ins[0]), self.shape(ins[1]), self.shape(out), max(strides),
                           int(a.get("group", 1))), "kernel", ""
        if op == "Gemm":
            return self.gemm(node, ins, a), "kernel", ""
        if op == "MatMul":
            return self.matmul(node, ins), "kernel", ""
        if op in _ACTS:
            return eltwise_kernel(_ACTS[op], self.shape(data[0])), "act", _ACTS[op]
        if op == "BatchNormalization":
            return eltwise_kernel("affine", self.shape(data[0])), "norm", ""
        if op in _ELTWISE:
            return eltwise_at(_ELTWISE[op], [self.shape(i) for i in data], self.shape(out)), "kernel", ""
        if op in _POOL:
            ks = tuple(a["kernel_shape"])
            st = tuple(a.get("strides", [1] * len(ks)))
            return pool_at(self.shape(ins[0]), self.shape(out), (ks[0], ks[-1]), (st[0], st[-1]), _POOL[op]), \
                "kernel", ""
        if op in _GPOOL:
            return global_pool_kernel(self.shape(ins[0]), self.shape(out)[2:], _GPOOL[op]), "kernel", ""
        if op in _REDUCE:
            x = self.shape(ins[0])
            axes = a.get("axes")
            if axes is None and len(ins) > 1 and ins[1]:
                axes = self.const.get(ins[1])
            axes = tuple(sorted(int(d) % len(x) for d in axes)) if axes is not None else tuple(range(len(x)))
            if op != "ReduceSum" and len(x) == 4 and axes == (2, 3):
                return global_pool_kernel(x, (1, 1), _REDUCE[op]), "kernel", ""
            return reduce_at(_REDUCE[op], x, self.shape(out)), "kernel", ""
        if op in ("Resize", "Upsample"):
            return resize_kernel(self.shape(ins[0]), self.shape(out)[2:]), "kernel", ""
        if op in ("Softmax", "LogSoftmax"):
            return softmax_kernel(self.shape(out)), "kernel", ""
        if op == "Transpose":
            x = self.shape(ins[0])
            perm = tuple(a.get("perm", list(range(len(x)))[::-1]))
            return permute_kernel(x, perm), "kernel", ""
        if op == "Split":
            x = self.shape(ins[0])
            return layout_kernel("split", (x,), x), "kernel", ""
        if op in _LAYOUT:
            return layout_kernel(_LAYOUT[op], [self.shape(i) for i in data], self.shape(out)), "kernel", ""
        if op in _FREE:
            return None, "free", ""
        self.unknown.add(op)
        return None

    def gemm(self, node: Any, ins: list[str], a: dict[str, Any]) -> Any:
        x, w = self.shape(ins[0]), self.shape(ins[1])
        if a.get("transA", 0):
            x = x[::-1]
        if not self.is_data(ins[1]) and not a.get("transA", 0):
            cout = w[0] if a.get("transB", 0) else w[1]
            return linear_kernel(x, cout, bias=len(ins) > 2 and bool(ins[2]))
        w = w[::-1] if a.get("transB", 0) else w
        return matmul_kernel(x, w, "matmul" if self.is_data(ins[1]) else "linear")

    def matmul(self, node: Any, ins: list[str]) -> Any:
        sa, sb = self.shape(ins[0]), self.shape(ins[1])
        ad, bd = self.is_data(ins[0]), self.is_data(ins[1])
        k = matmul_at(sa, sb, self.shape(node.output[0]), ad, bd, self.const.get(ins[0]), self.const.get(ins[1]))
        if k.type == "linear" and k.op == "linear":  # x @ W: an Add of a constant (N,) right after is the bias
            users = self.consumers.get(node.output[0], [])
            if len(users) == 1 and users[0].op_type == "Add" and node.output[0] not in self.outputs:
                other = [i for i in users[0].input if i != node.output[0]]
                if len(other) == 1 and not self.is_data(other[0]) and self.shapes.get(other[0], (0,))[-1:] == \
                        (k.output[-1],) and len(self.shapes.get(other[0], ())) == 1:
                    return ("bias", linear_kernel(sa, k.output[-1]), users[0])
        return k
