"""Is the proxy honest? Seed noise vs spread between variants, and Spearman against the longest budget.

Reads a replay table (``benchmarks/make_replay_table.py``) and, for every rung, measures with
:func:`topnas.platform.sweep.fidelity.measure_fidelity`: the seed noise (std over a variant's seeds,
mean over the variants trained with several seeds), the spread (std of the per-variant means over
all variants), their ratio (target >= 3 at the demo's proxy budget), the Spearman rank correlation
against the longest rung (of ``--reference`` when given: a longer-budget table of the same
variants), how many variants tie at one mIoU, and the Spearman of the variants' mIoU against their
parameter count (``vs_params``: near 0 or below, bigger models are not better on the task, so the
spread comes from learning speed rather than capacity), and ``net``: the spread net of the seed
noise in the means over the pooled seed noise (the module docstring of
:mod:`topnas.platform.sweep.fidelity`). Writes the whole table and the proxy rung's
numbers to a JSON file.

    python benchmarks/proxy_fidelity.py            # the demo's tables (proxy.fidelity, proxy.fidelity_reference)
    python benchmarks/proxy_fidelity.py --table t.csv --rung 60 --json out.json
    python benchmarks/proxy_fidelity.py --table t.csv --seeds-per-trial 2   # a proxy that averages 2 seeds
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_YAML = ROOT / "experiments" / "sweep_demo_fixture.yaml"


def params_spearman(table: str | Path) -> dict[int, float]:
    """Per evaluation iteration: Spearman, across variants, of mean mIoU (over seeds) against parameters."""
    import pandas as pd
    from scipy.stats import spearmanr

    df = pd.read_csv(table)
    out = {}
    for it, rows in df.groupby("iteration"):
        per_variant = rows.groupby("variant_id").agg(miou=("val_mIoU", "mean"), params=("params", "first"))
        out[int(it)] = round(float(spearmanr(per_variant["miou"], per_variant["params"]).statistic), 3)
    return out


def _shown(path: str | Path) -> str:
    """``path`` relative to the repository when inside it (two tables may share a file name)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=None, help="default: the demo sweep YAML's proxy.fidelity")
    ap.add_argument("--reference", default=None,
                    help="longer-budget table of the same variants (default: the demo's proxy.fidelity_reference "
                         "when --table is not given)")
    ap.add_argument("--rung", type=int, default=None,
                    help="the proxy budget (iterations); default: proxy.iterations of the demo sweep YAML")
    ap.add_argument("--seeds-per-trial", type=int, default=1, metavar="K",
                    help="score a variant by the mean of K seeds (the table's seeds in groups of K)")
    ap.add_argument("--json", default=None, help="output (default: <table dir>/proxy_fidelity_<table stem>.json)")
    args = ap.parse_args(argv)

    from topnas.platform.sweep import load_sweep_config
    from topnas.platform.sweep.fidelity import measure_fidelity
    from topnas.platform.sweep.replay import read_table

    demo = load_sweep_config(DEMO_YAML).proxy  # its tables resolved against the YAML's folder
    rung = args.rung or demo.iterations
    if args.table is None:  # the demo's own figure
        args.table = demo.fidelity
        if args.reference is None and demo.fidelity_reference:
            args.reference = demo.fidelity_reference
    curves, _ = read_table(args.table)
    longest = max(max(c) for c in curves.values())
    finished = [c for c in curves.values() if longest in c]
    rungs = sorted(set.intersection(*(set(c) for c in finished)))
    capacity = params_spearman(args.table)
    k = args.seeds_per_trial
    rows = [dict(measure_fidelity(args.table, r, reference=args.reference, seeds_per_trial=k).to_dict(),
                 vs_params=capacity[r]) for r in rungs]
    proxy = measure_fidelity(args.table, rung, reference=args.reference, seeds_per_trial=k)
    against = f"the longest rung of {_shown(args.reference)}" if args.reference else "the longest rung"
    score = f"; a variant's score is the mean of {k} seeds" if k > 1 else ""
    print(f"{_shown(args.table)}: {proxy.variants} finished variants, {proxy.noise_variants} with "
          f"{proxy.seed_range()} seeds{score}; Spearman against {against} ({proxy.longest_rung})")
    print(f"{'rung':>6} {'mean':>7} {'spread':>7} {'noise':>7} {'ratio':>6} {'spearman':>8} {'ties':>5} "
          f"{'vs_params':>9} {'net':>5}")
    for r in rows:
        mark = "  <- proxy" if r["proxy_rung"] == rung else ""
        print(f"{r['proxy_rung']:>6} {r['mean_mIoU']:>7.4f} {r['spread']:>7.4f} {r['seed_noise']:>7.4f} "
              f"{r['spread_to_noise']:>6.2f} {r['spearman']:>8.3f} {r['tied_at_mode']:>5} {r['vs_params']:>9.3f} {r['net_ratio']:>5.2f}{mark}")
    print(proxy.summary())
    print(proxy.components())
    out = Path(args.json) if args.json else Path(args.table).with_name(f"proxy_fidelity_{Path(args.table).stem}.json")
    names = {"table": Path(args.table).name, "reference": Path(args.reference).name if args.reference else None}
    table = dict(proxy.to_dict(), **names)
    out.write_text(json.dumps({"proxy": table, "target_spread_to_noise": 3.0, "meets_target":
                               bool(proxy.spread_to_noise >= 3.0), "rungs": [dict(r, **names)
                                                                              for r in rows]}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
