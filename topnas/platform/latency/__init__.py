"""Latency: measurement harness (local ONNX Runtime, adb phones), calibration files, the variant's
kernel graph, an operator-level predictor with few-shot device transfer, and its report.

The sweep needs only::

    from topnas.platform.latency import LatencyPredictor, packaged_predictor
    p = packaged_predictor("snapdragon865_tnn_1core")    # or LatencyPredictor.load(path)
    pred = p.predict(variant)                             # Prediction(ms, lo, hi, out_of_range, reasons)

Any other model: ``p.predict_kernels(trace_kernels(module, (1, 3, H, W)))`` or
``p.predict_kernels(onnx_kernels("model.onnx"))``.

Importing this package imports neither torch nor pandas.
"""
from topnas.platform.latency.kernels import KERNEL_TYPES, Kernel, extract_kernels, kernels_from_config
from topnas.platform.latency.onnx_graph import onnx_kernels
from topnas.platform.latency.predictor import (
    DEFAULT_GROUPS,
    GroupRule,
    LatencyPredictor,
    Prediction,
    flops_baseline,
    packaged_predictor,
)
from topnas.platform.latency.trace import trace_kernels

__all__ = [
    "DEFAULT_GROUPS",
    "GroupRule",
    "KERNEL_TYPES",
    "Kernel",
    "LatencyPredictor",
    "Prediction",
    "extract_kernels",
    "flops_baseline",
    "kernels_from_config",
    "onnx_kernels",
    "packaged_predictor",
    "trace_kernels",
]
