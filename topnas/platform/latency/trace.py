"""Kernels of ANY PyTorch module, recorded from one forward pass (no TopFormer knowledge).

:func:`trace_kernels` runs the module once (eval mode, no grad, zeros of `input_shape`) under a
``TorchFunctionMode`` and turns every torch call that becomes a runtime kernel into a generic
:class:`~topnas.platform.latency.kernels.Kernel`, at the actual tensor shapes:

* ``conv2d``: ``conv1x1`` / ``conv`` (dense), ``dwconv`` (groups = C_in = C_out), ``gconv`` (other groups);
* ``linear``; ``matmul`` / ``bmm`` / ``@`` of two activations: ``matmul``; by a constant operand:
  ``linear``, or ``pool`` when the constant is an averaging matrix (non-negative, summing to 1 over
  the contracted axis: pooling written as matrix products, as TopFormer's exportable pyramid pool);
* ``avg_pool2d`` / ``max_pool2d``: ``pool`` (window, stride); adaptive pooling and ``mean`` over
  the spatial axes: ``gpool``; ``interpolate``: ``resize``; ``softmax``;
* element-wise arithmetic, activations and normalisations: ``elementwise``; BatchNorm after a conv
  and an activation that is a conv's only consumer are folded / fused (:mod:`.graph`);
* ``permute`` / ``transpose`` / ``cat`` / ``stack`` / ``split`` / ``chunk`` / ``channel_shuffle`` /
  ``pad``: ``layout``; views (``view``, ``reshape``, ``flatten``, indexing, ...) are free.

Calls whose inputs are all constants (weights, buffers, tensors built in ``forward``) are folded
at export and record nothing. Any other call the recorder does not know raises ``RuntimeError``
listing it, so a new op cannot silently lose time from the predictor.
"""
from __future__ import annotations

from typing import Any, Sequence

from topnas.platform.latency.graph import (
    FUSABLE_ACTS,
    KernelGraph,
    conv_at,
    eltwise_at,
    matmul_at,
    pool_at,
    reduce_at,
)
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

__all__ = ["trace_kernels"]

Shape = tuple[int, ...]

_ACT_NAMES = {"relu": "relu", "relu_": "relu", "relu6": "relu6", "hardtanh": "hardtanh", "hardtanh_": "hardtanh",
              "clamp": "clamp", "clamp_": "clamp", "clip": "clamp", "clip_": "clamp", "sigmoid": "sigmoid",
              "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh", "leaky_relu": "leaky_relu",
              "leaky_relu_": "leaky_relu", "hardsigmoid": "hardsigmoid"}
_ELTWISE = {
    **{n: "add" for n in ("add", "add_", "__add__", "__radd__", "__iadd__")},
    **{n: "sub" for n in ("sub", "sub_", "__sub__", "__rsub__", "__isub__", "rsub")},
    **{n: "mul" for n in ("mul", "mul_", "__mul__", "__rmul__", "__imul__")},
    **{n: "div" for n in ("div", "div_", "__truediv__", "__rtruediv__", "__itruediv__", "true_divide")},
    **{n: n.strip("_") for n in ("pow", "__pow__", "neg", "__neg__", "abs", "exp", "log", "sqrt", "rsqrt",
                                 "maximum", "minimum", "where", "erf", "reciprocal", "square")},
    # activations that runtimes do not fuse into a convolution, and normalisations
    **{n: n.rstrip("_") for n in ("hardswish", "hardswish_", "silu", "silu_", "gelu", "elu", "elu_", "selu",
                                  "celu", "mish", "softplus", "prelu", "layer_norm", "group_norm",
                                  "instance_norm", "normalize")},
    "masked_fill": "where",
}
_LAYOUT = {"cat": "cat", "concat": "cat", "concatenate": "cat", "stack": "stack", "pad": "pad",
           "channel_shuffle": "channel_shuffle", "native_channel_shuffle": "channel_shuffle",
           "pixel_shuffle": "pixel_shuffle", "pixel_unshuffle": "pixel_unshuffle", "roll": "roll", "flip": "flip"}
_SPLIT = {"split", "split_with_sizes", "chunk", "tensor_split"}
# No runtime kernel: views and metadata, eval-mode dropout, copies a runtime elides.
_FREE = {"reshape", "view", "view_as", "flatten", "t", "contiguous", "__getitem__", "__setitem__", "dropout",
         "dropout2d", "dropout1d", "alpha_dropout", "feature_alpha_dropout", "detach", "to", "float", "clone",
         "expand", "expand_as", "squeeze", "unsqueeze", "unbind", "type_as", "identity", "cpu"}
_META = {"__get__", "size", "dim", "numel", "__len__", "__format__", "item", "tolist", "is_contiguous",
         "stride", "__bool__", "__iter__", "__hash__", "__repr__", "data_ptr", "element_size", "ndimension",
         "nelement", "is_floating_point", "get_device", "__reversed__"}
_GPOOL_OPS = {"adaptive_avg_pool2d": "adaptive_avg_pool2d", "adaptive_max_pool2d": "adaptive_max_pool2d",
              "adaptive_avg_pool1d": "adaptive_avg_pool1d", "adaptive_max_pool1d": "adaptive_max_pool1d"}
_REDUCE = {"mean": "adaptive_avg_pool2d", "amax": "adaptive_max_pool2d", "sum": "sum"}


def trace_kernels(module: Any, input_shape: Sequence[int]) -> list[Kernel]:
    """The inference kernels of `module` on one input of `input_shape` (batch included, e.g. ``(1, 3, 32, 32)``).

    The module runs in eval mode (its training flag is restored afterwards). BatchNorm is folded
    into the preceding convolution where a runtime would fold it, so the module need not be fused.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    graph = KernelGraph()
    value: dict[int, int] = {}  # id(tensor) -> current value id; only data-derived tensors have one
    keep: list[Any] = []  # keep every traced tensor alive so ids stay unique
    unknown: set[str] = set()
    counter = [0]

    def shape(t: Any) -> Shape:
        return tuple(int(s) for s in t.shape)

    def tensors_in(obj: Any) -> list[Any]:
        if isinstance(obj, torch.Tensor):
            return [obj]
        if isinstance(obj, (list, tuple)):
            return [t for o in obj for t in tensors_in(o)]
        if isinstance(obj, dict):
            return [t for o in obj.values() for t in tensors_in(o)]
        return []

    def new_values(out: Any) -> list[int]:
        vs = []
        for t in tensors_in(out):
            counter[0] += 1
            value[id(t)] = counter[0]
            keep.append(t)
            vs.append(counter[0])
        return vs

    def classify(name: str, args: tuple, kwargs: dict, out: Any, data: list[Any]) -> tuple[Any, str, str]:
        """(kernel or list of kernels, role, act) of one call on data tensors; kernel None = free."""
        x = data[0]
        if name in ("conv2d", "_conv2d"):
            return conv_at(shape(args[0]), shape(args[1]), shape(out), max(_pair(_arg(args, kwargs, 3, "stride", 1))),
                           int(_arg(args, kwargs, 6, "groups", 1))), "kernel", ""
        if name == "linear":
            bias = _arg(args, kwargs, 2, "bias", None)
            return linear_kernel(shape(args[0]), int(args[1].shape[0]), bias=bias is not None), "kernel", ""
        if name in ("matmul", "bmm", "__matmul__", "__rmatmul__", "mm"):
            a, b = (args[1], args[0]) if name == "__rmatmul__" else (args[0], args[1])
            a_data, b_data = id(a) in value, id(b) in value
            return matmul_at(shape(a), shape(b), shape(out), a_data, b_data, None if a_data else _np(a),
                             None if b_data else _np(b)), "kernel", ""
        if name == "scaled_dot_product_attention":
            q, k, v = shape(args[0]), shape(args[1]), shape(args[2])
            s = (*q[:-1], k[-2])
            return [matmul_kernel(q, (*k[:-2], k[-1], k[-2])), softmax_kernel(s), matmul_kernel(s, v)], "kernel", ""
        if name in _ACT_NAMES:
            act = _ACT_NAMES[name]
            return eltwise_kernel(act, shape(x)), ("act" if act in FUSABLE_ACTS else "kernel"), act
        if name == "batch_norm":
            return eltwise_kernel("affine", shape(x)), "norm", ""
        if name in _ELTWISE:
            return eltwise_at(_ELTWISE[name], [shape(t) for t in data], shape(out)), "kernel", ""
        if name in ("avg_pool2d", "max_pool2d", "_max_pool2d", "max_pool2d_with_indices"):
            op = "avg_pool2d" if name == "avg_pool2d" else "max_pool2d"
            ksz = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
            stride = _arg(args, kwargs, 2, "stride", None)
            stride = ksz if stride in (None, [], ()) else _pair(stride)
            o = out[0] if isinstance(out, tuple) else out
            return pool_at(shape(args[0]), shape(o), ksz, stride, op), "kernel", ""
        if name in _GPOOL_OPS:
            o = out[0] if isinstance(out, tuple) else out
            return global_pool_kernel(shape(args[0]), shape(o)[2:], _GPOOL_OPS[name]), "kernel", ""
        if name in _REDUCE:
            dims = _arg(args, kwargs, 1, "dim", None)
            xs = shape(args[0])
            dims = tuple(sorted(d % len(xs) for d in ((dims,) if isinstance(dims, int) else dims or range(len(xs)))))
            if name != "sum" and len(xs) == 4 and dims == (2, 3):
                return global_pool_kernel(xs, (1, 1), _REDUCE[name]), "kernel", ""
            return reduce_at(name, xs, shape(out)), "kernel", ""
        if name == "interpolate" or name == "upsample":
            return resize_kernel(shape(args[0]), shape(out)[2:]), "kernel", ""
        if name in ("softmax", "log_softmax", "_softmax"):
            return softmax_kernel(shape(out)), "kernel", ""
        if name in ("permute", "transpose", "swapaxes", "swapdims", "movedim"):
            xs = shape(args[0])
            if name == "permute":
                dims = tuple(args[1:]) if len(args) > 2 else tuple(_arg(args, kwargs, 1, "dims", ()))
            else:
                dims = _transpose_dims(len(xs), name, args, kwargs)
            return permute_kernel(xs, tuple(d % len(xs) for d in dims)), "kernel", ""
        if name in _SPLIT:
            return layout_kernel("split", (shape(args[0]),), shape(args[0])), "kernel", ""
        if name in _LAYOUT:
            ins = [shape(t) for t in data]
            o = shape(out)
            if _LAYOUT[name] == "cat":
                return layout_kernel("cat", ins, o), "kernel", ""
            return layout_kernel(_LAYOUT[name], ins, o), "kernel", ""
        if name in _FREE:
            return None, "free", ""
        unknown.add(name)
        return None, "free", ""

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "") or ""
            ins = [value[id(t)] for t in tensors_in(args) + tensors_in(kwargs) if id(t) in value]
            data = [t for t in tensors_in(args) + tensors_in(kwargs) if id(t) in value]
            out = func(*args, **kwargs)
            if name in _META or not data:  # metadata, or constants folded at export
                return out
            kernel, role, act = classify(name, args, kwargs, out, data)
            outs = new_values(out)
            if isinstance(kernel, list):  # one call, several kernels (attention): the last one writes
                for k in kernel[:-1]:
                    graph.add(k, ins, ())
                kernel = kernel[-1]
            graph.add(kernel, ins, outs, role, act)
            return out

    was_training = bool(getattr(module, "training", False))
    module.eval()
    try:
        x = torch.zeros(*[int(s) for s in input_shape])
        new_values(x)
        with torch.no_grad(), Recorder():
            y = module(x)
        graph.outputs = {value[id(t)] for t in tensors_in(y) if id(t) in value}
    finally:
        module.train(was_training)
    if unknown:
        raise RuntimeError(f"unclassified torch calls in the latency graph: {sorted(unknown)}; "
                           "teach topnas.platform.latency.trace about them")
    return graph.kernels()


# ----------------------------------------------------------------------- helpers (pure, on shapes)
def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _transpose_dims(n: int, name: str, args: tuple, kwargs: dict) -> tuple[int, ...]:
    dims = list(range(n))
    if name == "movedim":
        src, dst = int(args[1]) % n, int(args[2]) % n
        dims.insert(dst, dims.pop(src))
        return tuple(dims)
    i, j = int(_arg(args, kwargs, 1, "dim0", 0)) % n, int(_arg(args, kwargs, 2, "dim1", 1)) % n
    dims[i], dims[j] = dims[j], dims[i]
    return tuple(dims)


def _np(t: Any) -> Any:
    return t.detach().float().cpu().numpy()
