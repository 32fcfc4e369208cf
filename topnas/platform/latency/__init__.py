"""Latency: measurement harness (local ONNX Runtime, adb phones), calibration files, the variant's
kernel graph, an operator-level predictor with few-shot device transfer, and its report.

The sweep needs only::

    from topnas.platform.latency import LatencyPredictor, packaged_predictor
    p = packaged_predictor("snapdragon865_tnn_1core")    # or LatencyPredictor.load(path)
    pred = p.predict(variant)                             # Prediction(ms, lo, hi, out_of_range, reasons)

Importing this package imports neither torch nor pandas.
"""
from topnas.platform.latency.kernels import KERNEL_TYPES, Kernel, extract_kernels, kernels_from_config
from topnas.platform.latency.predictor import (
    DEFAULT_GROUPS,
    GroupRule,
    LatencyPredictor,
    Prediction,
    flops_baseline,
    packaged_predictor,
)

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
    "packaged_predictor",
]
