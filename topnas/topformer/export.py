"""ONNX export in the official TopFormer latency protocol (hustvl/TopFormer ``tools/convert2onnx.py``).

Graph: input ``input`` (1 x 3 x H x W, fixed) -> ``output`` = decode-head logits at stride 8; eval
mode, BatchNorm folded into the preceding convolutions, no dropout, no final upsample, no argmax.
Unlike the official ``convert2onnx.py`` this works at any input size (odd sizes included), because
the pyramid pooling is exported through an exact linear form where it does not divide evenly.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from topnas.fileio import atomic_path
from topnas.topformer.model import ConvBN, ConvModule, TopFormer

__all__ = ["DEFAULT_OPSET", "fold_batchnorm", "export_onnx", "onnx_session", "run_onnx"]

DEFAULT_OPSET = 17


def _fused_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = copy.deepcopy(conv)
    std = torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight / std
    fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused


@torch.no_grad()
def fold_batchnorm(model: TopFormer) -> TopFormer:
    """A copy of `model` in eval mode with every conv+BN pair folded into one biased conv."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, ConvBN) and isinstance(module.bn, nn.modules.batchnorm._BatchNorm):
            module.c = _fused_conv(module.c, module.bn)
            module.bn = nn.Identity()
        elif isinstance(module, ConvModule) and module.bn is not None:
            module.conv = _fused_conv(module.conv, module.bn)
            module.bn = None
    return model


def export_onnx(model: TopFormer, path: str | os.PathLike[str], input_size: tuple[int, int] = (512, 512),
                opset: int = DEFAULT_OPSET, fold_bn: bool = True) -> Path:
    """Export `model` to ONNX at a fixed 1 x 3 x H x W input; returns the written path."""
    if opset < 13:
        raise ValueError(f"opset: got {opset}; allowed: >= 13")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    net.backbone.exportable = True
    x = torch.zeros(1, 3, *input_size)
    # The dynamo exporter: the TorchScript one emits hundreds of shape ops and its Resize differs
    # from PyTorch's bilinear by up to 2e-2 at sizes that are not integer multiples.
    with atomic_path(path) as tmp, warnings.catch_warnings(), _quiet_torch_onnx():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (x,), str(tmp), input_names=["input"], output_names=["output"],
            opset_version=opset, dynamo=True, external_data=False, verbose=False,
        )
    return path


@contextlib.contextmanager
def _quiet_torch_onnx():
    """The dynamo exporter logs progress and torchvision warnings through `logging`; mute them."""
    names = ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def onnx_session(path: str | os.PathLike[str], intra_threads: int = 1, inter_threads: int = 1):
    """An ONNX Runtime CPU session with explicit thread counts (the latency protocol uses 1 + 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_threads
    opts.inter_op_num_threads = inter_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(os.fspath(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(path_or_session, x: torch.Tensor):
    """Run an exported model on a tensor; returns a numpy array of the stride-8 logits."""
    sess = onnx_session(path_or_session) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session
    return sess.run(["output"], {"input": x.detach().cpu().numpy()})[0]
