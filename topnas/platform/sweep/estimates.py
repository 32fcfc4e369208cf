"""What the sweep knows about a variant before training it: predicted latency, params and MACs.

A thin adapter over :mod:`topnas.platform.latency.predictor` (the latency objective and the budget)
and :func:`topnas.topformer.complexity.count_complexity` (params, fvcore-compatible MACs at the
variant's input size). Predictions take microseconds; counting MACs traces one forward pass on the
``meta`` device (shapes only, well under a second), once per trained trial, on the trial's own process.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from topnas.errors import ConfigError

__all__ = [
    "DEFAULT_PREDICTOR",
    "LatencyEstimate",
    "complexity_of",
    "extreme_latency",
    "fastest_latency",
    "load_predictor",
    "predict",
    "predictor_info",
    "predictor_path",
]

DEFAULT_PREDICTOR = "snapdragon865_tnn_1core"


@dataclass(frozen=True)
class LatencyEstimate:
    latency_ms: float
    latency_lo: float
    latency_hi: float
    out_of_range: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predictor_path(path: str | os.PathLike[str] | None) -> Path:
    """``path`` or the shipped Snapdragon 865 predictor."""
    if path:
        return Path(path)
    from topnas.platform.latency.predictor import PACKAGED

    return PACKAGED / f"{DEFAULT_PREDICTOR}.json"


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int):
    from topnas.platform.latency.predictor import LatencyPredictor

    return LatencyPredictor.load(path)


def load_predictor(path: str | os.PathLike[str] | None = None):
    """The :class:`~topnas.platform.latency.predictor.LatencyPredictor` at ``path`` (cached per file version)."""
    p = predictor_path(path)
    if not p.is_file():
        raise ConfigError("latency.predictor", str(p), "an existing predictor JSON file (see `topnas latency fit`)")
    return _load(str(p.resolve()), p.stat().st_mtime_ns)


def predictor_info(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Identity and metadata of a predictor, for the sweep's MLflow run.

    ``id`` is ``<file stem>-<first 10 hex of the file's sha256>``: two sweeps share an id exactly
    when they used byte-identical predictors. ``label`` names the device and the id (plot axes);
    ``provenance`` is one line on what the predictor rests on (its calibration sources).
    """
    p = predictor_path(path)
    pred = load_predictor(p)  # validates
    raw = p.read_bytes()
    data = json.loads(raw)
    pid = f"{p.stem}-{hashlib.sha256(raw).hexdigest()[:10]}"
    return {
        "id": pid,
        "label": f"{pred.device.get('device', '?')}, predictor {pid}",
        "provenance": pred.provenance(),
        "path": str(p.resolve()),
        "schema": data.get("schema"),
        "created": data.get("created"),
        "device": data.get("device") or {},
        "calibration": data.get("calibration") or {},
        "interval": data.get("interval") or {},
        "fit": data.get("fit") or {},
    }


def predict(predictor: Any, variant: Any) -> LatencyEstimate:
    pred = predictor.predict(variant)
    return LatencyEstimate(float(pred.ms), float(pred.lo), float(pred.hi), bool(pred.out_of_range))


def complexity_of(variant: Any) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` at the variant's input size (the official latency graph).

    Counted on the ``meta`` device: the FLOP counter needs shapes only, so the forward pass
    allocates and computes nothing (the same counts as on CPU, in a fraction of the time; every
    trained trial pays it before its training starts).
    """
    import torch

    from topnas.topformer.complexity import count_complexity

    model = variant.build(norm="BN").to("meta")  # built on CPU: its init reads values (.item())
    with torch.device("meta"):  # the counter's input tensor too
        c = count_complexity(model, variant.input_size)
    return {"params": int(c.params), "macs": int(c.macs)}


def extreme_latency(predictor: Any, space: Any, *, fastest: bool, passes: int = 3) -> float:
    """The predicted latency of the space's fastest (or slowest) variant, by coordinate descent.

    Starts from the corner of first (or last) choices and changes one dimension at a time to its
    best value until nothing improves. The shipped predictors are additive and monotone in width and
    depth, so this reaches the true extreme of those dimensions; for the others it is a close
    approximation (it never claims a value no variant reaches: every value is a real prediction).
    """
    dims = space.parameters()
    sign = 1.0 if fastest else -1.0
    point = {k: (v[0] if fastest else v[-1]) for k, v in dims.items()}

    def score(p: Mapping[str, Any]) -> float:
        try:
            return sign * predictor.predict(space.build(p)).ms
        except ConfigError:  # a combination the space builds but the model rejects
            return float("inf")

    best = score(point)
    for _ in range(passes):
        improved = False
        for key, choices in dims.items():
            for choice in choices:
                if choice == point[key]:
                    continue
                trial = {**point, key: choice}
                s = score(trial)
                if s < best:
                    best, point, improved = s, trial, True
        if not improved:
            break
    return sign * best


def fastest_latency(predictor: Any, space: Any) -> float:
    return extreme_latency(predictor, space, fastest=True)

