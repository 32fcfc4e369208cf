"""Which variants to measure on your own phone: a small set that spans the space's kernel mix.

Criterion: greedy D-optimal design. Each candidate is described by its predicted time per kernel
group (the phone predictor's per-group contributions, as shares of the total, plus the log of the
total); variants are added one at a time to maximise ``log det(X'X + eps I)`` of the chosen rows,
starting from the space's presets. A transfer that fits one weight per kernel group is then as well
conditioned as `n` measurements allow, and the set covers both small and large, attention-heavy and
convolution-heavy variants.
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from topnas.errors import ConfigError

__all__ = ["mix_matrix", "plan_variants", "write_plan"]


def mix_matrix(variants: Sequence[Any], predictor: Any) -> np.ndarray:
    """Rows: per-group time shares of each variant, then log total predicted ms."""
    rows = []
    for v in variants:
        c = predictor.contributions(v)
        total = sum(c.values())
        rows.append([c[g] / total for g in sorted(c)] + [math.log(total)])
    X = np.array(rows)
    live = X.std(axis=0) > 0
    X = X[:, live]
    return (X - X.mean(axis=0)) / X.std(axis=0)


def plan_variants(space: Any, n: int = 12, pool: int = 500, seed: int = 0, predictor: Any = None) -> list[Any]:
    """`n` variants of `space` chosen by greedy D-optimal design over the kernel mix."""
    from topnas.platform.latency.measure_local import calibration_variants
    from topnas.platform.latency.predictor import packaged_predictor

    if n < 2:
        raise ConfigError("--num-samples", n, "an integer >= 2")
    if pool < n:
        raise ConfigError("--pool", pool, f"an integer >= --num-samples ({n})")
    predictor = predictor or packaged_predictor()
    # the official presets at the space's first input size anchor the set (they are what users compare with)
    size = tuple(space.input_sizes[0])
    start = [v for v in calibration_variants(space, n=0, presets=True, corners=False)
             if tuple(v.input_size) == size][:min(3, n - 1)]
    rng = random.Random(seed)
    seen = {v.id for v in start}
    cands = list(start)
    tries = 0
    while len(cands) < pool + len(start) and tries < 20 * pool:
        v = space.sample(rng)
        tries += 1
        if v.id not in seen:
            seen.add(v.id)
            cands.append(v)
    X = mix_matrix(cands, predictor)
    chosen = list(range(len(start)))
    eps = 1e-3
    while len(chosen) < min(n, len(cands)):
        M = X[chosen].T @ X[chosen] + eps * np.eye(X.shape[1])
        Minv = np.linalg.inv(M)
        # det(M + x x') = det(M) (1 + x' M^-1 x): pick the candidate with the largest gain
        gain = np.einsum("ij,jk,ik->i", X, Minv, X)
        gain[chosen] = -np.inf
        chosen.append(int(np.argmax(gain)))
    return [cands[i] for i in chosen]


def write_plan(variants: Sequence[Any], out: str | Path) -> Path:
    """One variant YAML per chosen variant under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(variants):
        v.save(out / f"{i:02d}_{v.id}.yaml")
    return out
