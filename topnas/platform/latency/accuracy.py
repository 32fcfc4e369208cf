"""Accuracy measures of a latency predictor (nn-Meter's within-10% share, HELP's rank correlation)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["accuracy", "within", "rmspe", "spearman", "kendall"]


def _arrays(pred: Sequence[float], meas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p, m = np.asarray(pred, dtype=float), np.asarray(meas, dtype=float)
    if p.shape != m.shape or p.ndim != 1 or len(p) == 0:
        raise ValueError(f"pred/meas: got shapes {p.shape} and {m.shape}; allowed: equal, 1-D, non-empty")
    return p, m


def within(pred: Sequence[float], meas: Sequence[float], tol: float) -> float:
    """Share of predictions within +-tol (relative) of the measurement."""
    p, m = _arrays(pred, meas)
    return float(np.mean(np.abs(p / m - 1.0) <= tol + 1e-12))


def rmspe(pred: Sequence[float], meas: Sequence[float]) -> float:
    """Root mean squared percentage error, in percent."""
    p, m = _arrays(pred, meas)
    return float(100.0 * np.sqrt(np.mean((p / m - 1.0) ** 2)))


def spearman(pred: Sequence[float], meas: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    p, m = _arrays(pred, meas)
    return float(spearmanr(p, m).statistic) if len(p) > 1 else float("nan")


def kendall(pred: Sequence[float], meas: Sequence[float]) -> float:
    from scipy.stats import kendalltau

    p, m = _arrays(pred, meas)
    return float(kendalltau(p, m).statistic) if len(p) > 1 else float("nan")


def accuracy(pred: Sequence[float], meas: Sequence[float]) -> dict[str, float]:
    """within_5, within_10 (shares), rmspe and mape (percent), max_ape, spearman, kendall, n."""
    p, m = _arrays(pred, meas)
    ape = np.abs(p / m - 1.0)
    return {
        "n": int(len(p)),
        "within_5": within(p, m, 0.05),
        "within_10": within(p, m, 0.10),
        "rmspe": rmspe(p, m),
        "mape": float(100.0 * ape.mean()),
        "max_ape": float(100.0 * ape.max()),
        "spearman": spearman(p, m),
        "kendall": kendall(p, m),
    }
