"""A variant's latency graph cut into kernels (nn-Meter style), with shapes, MACs and bytes moved.

Two ways to get the same list:

* :func:`extract_kernels` TAKES IT FROM THE MODEL: it builds the variant, folds BatchNorm and
  switches the backbone to its exportable path (exactly what :func:`~topnas.topformer.export.export_onnx`
  exports) and records one forward pass with the model-agnostic
  :func:`~topnas.platform.latency.trace.trace_kernels` (which takes any ``nn.Module``). An activation
  that is a convolution's only consumer is fused into it (conv-bias-act is one kernel in ONNX Runtime
  and TNN).
* :func:`kernels_from_config` derives the same list analytically from the config, in microseconds
  and without torch, for the predictor (it runs inside the sampler). ``tests/platform/latency``
  checks the two are identical on presets and sampled variants, so the fast path cannot drift from
  the model code unnoticed.

Kernel types (:data:`KERNEL_TYPES`) are generic, so any network's graph maps onto them:
``conv1x1`` (dense pointwise), ``conv`` (dense k x k, k > 1), ``gconv`` (grouped, neither dense nor
depthwise), ``dwconv`` (k x k depthwise), ``linear`` (fully connected / Gemm), ``matmul`` (activation x
activation, e.g. attention q.k and attn.v), ``softmax``, ``pool`` (windowed average / max pooling,
including the exportable pooling written as constant matmuls), ``gpool`` (global or adaptive
pooling), ``resize`` (bilinear), ``elementwise`` (add, mul, div, stand-alone activations), ``layout``
(transpose, concat, split, channel shuffle). Convolutions and pooling carry kernel size and stride.

Cost fields, in the conventions of fvcore (what TopFormer's published MACs use): ``macs`` =
multiply-accumulates for convs and matmuls, 4 per output element for bilinear resize, 1 per input
element for pooling, 1 per output element for element-wise ops and softmax, 0 for layout; ``bytes``
= float32 bytes read and written (inputs + output + weights and bias).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Iterable, NamedTuple, Sequence

__all__ = [
    "KERNEL_TYPES", "Kernel", "extract_kernels", "kernels_from_config", "kernel_summary", "signature",
    "conv_kernel", "eltwise_kernel", "matmul_kernel", "resize_kernel", "avg_pool_kernel", "pool_kernel",
    "global_pool_kernel", "linear_kernel", "layout_kernel", "permute_kernel", "softmax_kernel",
]

KERNEL_TYPES = ("conv1x1", "dwconv", "conv", "gconv", "linear", "matmul", "softmax", "pool", "gpool", "resize",
                "elementwise", "layout")
FLOAT_BYTES = 4
Shape = tuple[int, ...]


class Kernel(NamedTuple):
    """One runtime kernel of the latency graph (a NamedTuple: cheap to build in the sampler)."""

    type: str
    op: str
    inputs: tuple[Shape, ...]
    output: Shape
    macs: int
    bytes: int
    kernel_size: int = 0
    stride: int = 1
    act: str = ""

    def key(self) -> tuple[Any, ...]:
        return tuple(self)


def signature(kernels: Iterable[Kernel]) -> list[tuple[Any, ...]]:
    """Order-free comparable form of a kernel list."""
    return sorted(k.key() for k in kernels)


def kernel_summary(kernels: Iterable[Kernel]) -> dict[str, dict[str, int]]:
    """Per type: count, total MACs, total bytes."""
    out: dict[str, dict[str, int]] = {}
    for k in kernels:
        s = out.setdefault(k.type, {"count": 0, "macs": 0, "bytes": 0})
        s["count"] += 1
        s["macs"] += k.macs
        s["bytes"] += k.bytes
    return out


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


# ----------------------------------------------------------------------- kernel constructors
# Pure functions of hashable shapes, memoised: a sampler sees the same layer shapes over and over.
@lru_cache(maxsize=65536)
def conv_kernel(x: Shape, cout: int, k: int, stride: int, groups: int, act: str = "") -> Kernel:
    _, cin, h, w = x
    pad = k // 2
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    out = (1, cout, oh, ow)
    weights = cout * (cin // groups) * k * k + cout  # every conv carries a bias once BN is folded
    if groups == 1:
        kind = "conv1x1" if k == 1 else "conv"
    elif groups == cin == cout:
        kind = "dwconv"
    else:
        kind = "gconv"
    n_out = cout * oh * ow
    macs = n_out * (cin // groups) * k * k
    return Kernel(kind, "conv2d", (x,), out, macs, FLOAT_BYTES * (cin * h * w + n_out + weights), k, stride, act)


@lru_cache(maxsize=65536)
def eltwise_kernel(op: str, *inputs: Shape) -> Kernel:
    out = inputs[0]
    n = _numel(out)
    return Kernel("elementwise", op, tuple(inputs), out, n, FLOAT_BYTES * (sum(_numel(s) for s in inputs) + n))


@lru_cache(maxsize=65536)
def matmul_kernel(a: Shape, b: Shape, kind: str = "matmul") -> Kernel:
    batch = a[:-2] if len(a) >= len(b) else b[:-2]
    out = (*batch, a[-2], b[-1])
    macs = _numel(out) * a[-1]
    return Kernel(kind, "matmul", (a, b), out, macs, FLOAT_BYTES * (_numel(a) + _numel(b) + _numel(out)))


@lru_cache(maxsize=65536)
def resize_kernel(x: Shape, size: tuple[int, ...]) -> Kernel:
    out = (*x[:2], *size)
    return Kernel("resize", "interpolate", (x,), out, 4 * _numel(out), FLOAT_BYTES * (_numel(x) + _numel(out)))


@lru_cache(maxsize=65536)
def avg_pool_kernel(x: Shape, kernel: tuple[int, int]) -> Kernel:
    """Non-overlapping average pooling (window = stride), as in the exportable pyramid pool."""
    out = (*x[:2], x[2] // kernel[0], x[3] // kernel[1])
    return Kernel("pool", "avg_pool2d", (x,), out, _numel(x), FLOAT_BYTES * (_numel(x) + _numel(out)),
                  int(kernel[0]), int(kernel[0]))


@lru_cache(maxsize=65536)
def pool_kernel(x: Shape, k: int, stride: int, padding: int, op: str = "avg_pool2d") -> Kernel:
    """Windowed pooling (``avg_pool2d`` / ``max_pool2d``); MACs = one per window element read."""
    oh, ow = (x[2] + 2 * padding - k) // stride + 1, (x[3] + 2 * padding - k) // stride + 1
    out = (*x[:2], oh, ow)
    return Kernel("pool", op, (x,), out, _numel(out) * k * k, FLOAT_BYTES * (_numel(x) + _numel(out)), k, stride)


@lru_cache(maxsize=65536)
def global_pool_kernel(x: Shape, out_hw: tuple[int, int] = (1, 1), op: str = "adaptive_avg_pool2d") -> Kernel:
    """Global / adaptive pooling; MACs = one per input element."""
    out = (*x[:2], *out_hw)
    return Kernel("gpool", op, (x,), out, _numel(x), FLOAT_BYTES * (_numel(x) + _numel(out)))


@lru_cache(maxsize=65536)
def linear_kernel(x: Shape, cout: int, act: str = "", bias: bool = True) -> Kernel:
    """Fully connected layer on the last dimension (Gemm, or MatMul by a constant, in ONNX)."""
    cin = x[-1]
    out = (*x[:-1], cout)
    rows = _numel(x[:-1])
    return Kernel("linear", "linear", (x,), out, rows * cin * cout,
                  FLOAT_BYTES * (_numel(x) + _numel(out) + cin * cout + (cout if bias else 0)), 0, 1, act)


def layout_kernel(op: str, inputs: Sequence[Shape], out: Shape) -> Kernel:
    return Kernel("layout", op, tuple(inputs), out, 0,
                  FLOAT_BYTES * (sum(_numel(s) for s in inputs) + _numel(out)))


@lru_cache(maxsize=65536)
def permute_kernel(x: Shape, dims: tuple[int, ...]) -> Kernel:
    return layout_kernel("permute", (x,), tuple(x[d] for d in dims))


def softmax_kernel(s: Shape) -> Kernel:
    return Kernel("softmax", "softmax", (s,), s, _numel(s), 2 * FLOAT_BYTES * _numel(s))


# ----------------------------------------------------------------------- analytic (fast) path
def kernels_from_config(variant: Any) -> tuple[Kernel, ...]:
    """The kernel list of `variant` derived from its config (no torch).

    Cached by (config, input size): the same key as ``variant.id`` (a hash of exactly these), but
    hashing the frozen config is ~100x cheaper than computing the id's canonical JSON.
    """
    return _kernels_cached(variant.model, tuple(variant.input_size))


@lru_cache(maxsize=4096)
def _kernels_cached(model: Any, input_size: tuple[int, int]) -> tuple[Kernel, ...]:
    return tuple(_analytic(model, input_size))


def _analytic(cfg: Any, input_size: Sequence[int]) -> list[Kernel]:
    from topnas.topformer.arch_config import make_divisible

    ks: list[Kernel] = []
    add = ks.append

    def conv(x: Shape, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: str = "") -> Shape:
        kern = conv_kernel(x, int(cout), int(k), int(stride), int(groups), act)
        add(kern)
        return kern.output

    def hsigmoid(x: Shape) -> None:
        add(eltwise_kernel("add", x))
        add(eltwise_kernel("relu6", x))
        add(eltwise_kernel("div", x))

    # token pyramid
    x: Shape = (1, 3, *input_size)
    x = conv(x, cfg.stem_channels, 3, 2, act="relu")
    taps: list[Shape] = []
    cin = cfg.stem_channels
    for i, b in enumerate(cfg.blocks):
        cout = make_divisible(b.out_channels, 8)
        hidden = int(round(cin * b.expand_ratio))
        y = x
        if b.expand_ratio != 1:
            y = conv(y, hidden, act="relu")
        y = conv(y, hidden, b.kernel, b.stride, groups=hidden, act="relu")
        y = conv(y, cout)
        if b.stride == 1 and cin == cout:
            add(eltwise_kernel("add", y, x))
        x, cin = y, cout
        if i in cfg.embed_out_indice:
            taps.append(x)

    # pyramid pool (exportable form: avg_pool2d where it divides, else two constant matmuls)
    h, w = taps[-1][2:]
    th, tw = (h - 1) // cfg.c2t_stride + 1, (w - 1) // cfg.c2t_stride + 1
    pooled = []
    for f in taps:
        fh, fw = f[2:]
        if fh % th == 0 and fw % tw == 0:
            kern = avg_pool_kernel(f, (fh // th, fw // tw))
            add(kern)
        else:
            a = matmul_kernel((th, fh), f, "pool")
            add(a)
            kern = matmul_kernel(a.output, (fw, tw), "pool")
            add(kern)
        pooled.append(kern.output)
    E = cfg.embed_dim
    tok: Shape = (1, E, th, tw)
    add(layout_kernel("cat", pooled, tok))

    # transformer
    n = th * tw
    nh, kd = cfg.num_heads, cfg.key_dim
    d = int(cfg.attn_ratio * kd)
    dh = d * nh
    hid = int(E * cfg.mlp_ratio)
    block = [
        conv_kernel(tok, nh * kd, 1, 1, 1), permute_kernel((1, nh, kd, n), (0, 1, 3, 2)),
        conv_kernel(tok, nh * kd, 1, 1, 1), conv_kernel(tok, dh, 1, 1, 1), permute_kernel((1, nh, d, n), (0, 1, 3, 2)),
        matmul_kernel((1, nh, n, kd), (1, nh, kd, n)), softmax_kernel((1, nh, n, n)), matmul_kernel((1, nh, n, n), (1, nh, n, d)),
        permute_kernel((1, nh, n, d), (0, 1, 3, 2)), eltwise_kernel("hardtanh", (1, dh, th, tw)), conv_kernel((1, dh, th, tw), E, 1, 1, 1),
        eltwise_kernel("add", tok, tok),
        conv_kernel(tok, hid, 1, 1, 1), conv_kernel((1, hid, th, tw), hid, 3, 1, hid, "hardtanh"), conv_kernel((1, hid, th, tw), E, 1, 1, 1),
        eltwise_kernel("add", tok, tok),
    ]
    ks.extend(block * cfg.depths)
    add(layout_kernel("split", (tok,), tok))

    # semantic injection
    sims = []
    for i in cfg.decode_out_indices:
        local, c, oc = taps[i], cfg.channels[i], cfg.out_channels[i]
        g: Shape = (1, c, th, tw)
        size = local[2:]
        kind = cfg.injection_type
        if kind in ("muli_sum", "muli_sum_cbr"):
            act = "relu" if kind == "muli_sum_cbr" else ""
            lo = conv(local, oc, act=act)
            ga = conv(g, oc)
            hsigmoid(ga)
            add(resize_kernel(ga, tuple(size)))
            ge = conv(g, oc, act=act)
            add(resize_kernel(ge, tuple(size)))
            add(eltwise_kernel("mul", lo, lo))
            add(eltwise_kernel("add", lo, lo))
        else:  # fuse_sum / fuse_multi
            g2 = conv(g, oc)
            if kind == "fuse_multi":
                hsigmoid(g2)
            add(resize_kernel(g2, tuple(size)))
            lo = conv(local, oc)
            add(eltwise_kernel("mul" if kind == "fuse_multi" else "add", lo, lo))
        sims.append((1, oc, *size))

    # head
    x = sims[0]
    for f in sims[1:]:
        add(resize_kernel(f, tuple(x[2:])))
        add(eltwise_kernel("add", x, x))
    ch = cfg.head_channels
    x = conv(x, ch, groups=ch if cfg.head_is_dw else 1, act="relu")
    conv(x, cfg.num_classes)
    return ks


# ----------------------------------------------------------------------- traced (model) path
def extract_kernels(variant: Any, model: Any = None) -> list[Kernel]:
    """Kernels of the variant's exported latency graph, recorded from one traced forward pass.

    `model` (optional) is a built ``TopFormer`` for `variant`; by default ``variant.build(norm="BN")``.
    BatchNorm is folded and the backbone switched to its exportable path (the graph
    :func:`~topnas.topformer.export.export_onnx` writes), then :func:`~topnas.platform.latency.trace.trace_kernels`
    records it like any other module (``RuntimeError`` on a torch call it cannot classify).
    """
    from topnas.platform.latency.trace import trace_kernels
    from topnas.topformer.export import fold_batchnorm

    net = fold_batchnorm(model if model is not None else variant.build(norm="BN"))
    net.backbone.exportable = True  # the graph export_onnx writes
    return trace_kernels(net, (1, 3, *variant.input_size))
