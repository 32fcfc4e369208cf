"""Proxy probe: does scoring a run by several of its evaluations, not its last one, lower the seed noise?

Reads a replay table (no training). For each score it prints the seed noise, the spread between
variants and their ratio, defined as in ``topnas.platform.sweep.fidelity``, and the Spearman of the
variants' mean score against the reference table's longest rung. The scores: the last evaluation
(the proxy's mIoU), the mean of the last k, the best, and the mean of all (area under the curve).

    python benchmarks/probes/score_aggregates.py      # the demo's tables (exact proxy, 960-iteration reference)

Result: benchmarks/data/README.md ("Scoring a run by several evaluations").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "benchmarks" / "data"
SCORES = {
    "last": lambda v: v[-1],
    "mean of last 2": lambda v: float(np.mean(v[-2:])),
    "mean of last 3": lambda v: float(np.mean(v[-3:])),
    "mean of last 4": lambda v: float(np.mean(v[-4:])),
    "best": lambda v: float(np.max(v)),
    "mean of all (area)": lambda v: float(np.mean(v)),
}


def main(argv: list[str] | None = None) -> int:
    from topnas.platform.sweep.fidelity import _per_variant, _spearman, _std

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=str(DATA / "demo_proxy" / "replay_fixture-small.csv"))
    ap.add_argument("--reference", default=str(DATA / "replay_fixture-small.csv"))
    args = ap.parse_args(argv)

    runs, _ = _per_variant(Path(args.table), "--table", None)  # variant -> rung -> [value per seed]
    ref, longest = _per_variant(Path(args.reference), "--reference", None)
    shared = sorted(set(runs) & set(ref))
    print(f"{args.table}: {len(runs)} variants; Spearman against rung {longest} of {args.reference} "
          f"({len(shared)} shared variants)")
    print(f"  {'score':<20} {'spread':>7} {'noise':>7} {'ratio':>6} {'spearman':>8}")
    for name, score in SCORES.items():
        per_seed = {}
        for vid, by_rung in runs.items():
            rungs = sorted(by_rung)
            seeds = len(by_rung[rungs[-1]])
            per_seed[vid] = np.array([score([by_rung[r][i] for r in rungs]) for i in range(seeds)])
        noise = float(np.mean([_std(s) for s in per_seed.values() if len(s) >= 2]))
        spread = _std(np.array([s.mean() for s in per_seed.values()]))
        rho = _spearman(np.array([per_seed[v].mean() for v in shared]), np.array([np.mean(ref[v][longest])
                                                                               for v in shared]))
        print(f"  {name:<20} {spread:7.4f} {noise:7.4f} {spread / noise:6.2f} {rho:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
