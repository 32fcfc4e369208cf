"""Compare a probe's table with a base table (default: the demo proxy's whole-image table) on the same runs.

A probe (``make_replay_table.py`` with one setting changed, usually stopped after its noise variants)
holds a few variants with several seeds. Its noise and spread can only be set against the table's
runs of exactly those variants and seeds: the table's 48-variant figure averages other variants.

    python benchmarks/probes/same_runs.py /tmp/b16/replay_fixture-small.csv
    python benchmarks/probes/same_runs.py PROBE.csv --base OTHER.csv --rung 420 --min-seeds 3

For the variants with at least ``--min-seeds`` seeds in the probe, it prints, for the probe and the
base table (restricted to the probe's seeds): seed noise (std over a variant's seeds, mean over
variants), the spread of the variants' seed means and their ratio, computed as ``proxy_fidelity.py``
does (:func:`topnas.platform.sweep.fidelity.score_statistics`), and the mean mIoU of the runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BASE = ROOT / "benchmarks" / "data" / "demo_proxy_4class" / "replay_fixture-small.csv"


def compare(probe: str | Path, base: str | Path, rung: int, min_seeds: int) -> dict[str, dict[str, float]]:
    """``{"probe": {...}, "base": {...}}``: noise, spread, ratio, mean mIoU and run count at ``rung``."""
    import numpy as np
    import pandas as pd

    from topnas.platform.sweep.fidelity import score_statistics

    new = pd.read_csv(probe)
    new = new[new.iteration == rung]
    counts = new.groupby("variant_id").seed.nunique()
    chosen = set(counts[counts >= min_seeds].index)
    if len(chosen) < 2:
        raise SystemExit(f"{probe}: {len(chosen)} variant(s) with >= {min_seeds} seeds at {rung}; need 2")
    pairs = set(zip(new.variant_id, new.seed))
    old = pd.read_csv(base)
    same = [(v, s) in pairs for v, s in zip(old.variant_id, old.seed)]
    old = old[(old.iteration == rung).to_numpy() & np.asarray(same, bool)]
    out = {}
    for name, rows in (("probe", new), ("base", old)):
        rows = rows[rows.variant_id.isin(chosen)]
        stats = score_statistics({v: g.to_numpy() for v, g in rows.groupby("variant_id").val_mIoU})
        out[name] = {"runs": len(rows), "variants": rows.variant_id.nunique(), "noise": stats["seed_noise"],
                     "spread": stats["spread"], "ratio": stats["spread_to_noise"],
                     "mean_mIoU": float(rows.val_mIoU.mean())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probe", help="the probe's replay table (CSV)")
    ap.add_argument("--base", default=str(BASE), help="default: benchmarks/data/demo_proxy_4class (whole-image tests)")
    ap.add_argument("--rung", type=int, default=420)
    ap.add_argument("--min-seeds", type=int, default=3)
    args = ap.parse_args(argv)
    result = compare(args.probe, args.base, args.rung, args.min_seeds)
    print(f"{'table':>6} {'runs':>5} {'variants':>8} {'noise':>7} {'spread':>7} {'ratio':>6} {'mean':>7}")
    for name, r in result.items():
        print(f"{name:>6} {r['runs']:>5} {r['variants']:>8} {r['noise']:>7.4f} {r['spread']:>7.4f} "
              f"{r['ratio']:>6.2f} {r['mean_mIoU']:>7.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
