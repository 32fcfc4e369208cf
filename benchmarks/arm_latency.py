"""Few-shot latency transfer on real ARM phones: leave-one-device-out over the public phone data.

For each space (NAS-Bench-201 on 4 phones, FBNet on 3) and each phone, the other phones are the
prior and `shots` random rows of the held-out phone are the only target data; the rest of its rows
are scored. Beside the transfer: FLOPs scaled on the same shots and the kernel model fitted from
scratch on them; for orientation, HELP's published 10-shot NAS-Bench-201 figures (meta-trained on
many more devices): Pixel 2 0.802, Raspberry Pi 4 0.890. Also printed: the reference additive fit
with one coefficient per (layer, op) on 12,000 rows (its within-10% share is the 200-shot target
minus 5 points), which input size fits the data best, and the time of one prediction.

    python benchmarks/arm_latency.py [--data DIR] [--repeats 20] [--json out.json]

``--data``: the public nn-Meter / HELP phone latency tables (default :data:`DEFAULT_DATA`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from topnas.platform.latency.arch_table import read_arch_table
from topnas.platform.latency.fewshot import evaluate, fit_device
from topnas.platform.latency.spaces import get_space

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "arm_latency"
DEVICES = {"nb201": ["pixel3", "samsung_a50", "samsung_s7", "essential_ph_1"],
           "fbnet": ["samsung_a50", "samsung_s7", "essential_ph_1"]}
SHOTS = (10, 20, 50, 200)


def additive_reference(space: str, table, n_fit: int = 12000, seed: int = 0) -> dict[str, float]:
    """One coefficient per (layer position, op), least squares on `n_fit` rows, scored on the rest."""
    mod = get_space(space)
    rows = [i for i, a in enumerate(table.archs) if not mod.is_degenerate(a)]
    archs = [table.archs[i] for i in rows]
    y = table.latency_ms[rows]
    tokens = [_positions(space, a) for a in archs]
    vocab = sorted({t for ts in tokens for t in ts})
    col = {t: j for j, t in enumerate(vocab)}
    X = np.zeros((len(archs), len(vocab) + 1))
    X[:, -1] = 1.0
    for i, ts in enumerate(tokens):
        for t in ts:
            X[i, col[t]] = 1.0
    perm = np.random.default_rng(seed).permutation(len(archs))
    n_fit = min(n_fit, int(0.77 * len(archs)))
    fi, te = perm[:n_fit], perm[n_fit:]
    coef, *_ = np.linalg.lstsq(X[fi], y[fi], rcond=None)
    pred = X[te] @ coef
    from topnas.platform.latency.accuracy import spearman
    return {"n_fit": int(n_fit), "spearman": spearman(pred, y[te]),
            "within10": float(np.mean(np.abs(pred / y[te] - 1) <= 0.10))}


def _positions(space: str, arch: str) -> list[tuple[int, str]]:
    if space == "nb201":
        return [(k, op) for k, (op, _src) in enumerate(e for node in get_space(space).parse(arch) for e in node)]
    return list(enumerate(get_space(space).parse(arch)))


def input_size_check(space: str, table) -> dict[int, float]:
    """Held-out RMSPE of the device's kernel model at 32x32 and 16x16 input."""
    return {hw: fit_device(table, hw).heldout["rmspe"] for hw in (32, 16)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    ap.add_argument("--spaces", nargs="+", default=list(DEVICES))
    ap.add_argument("--json", type=Path, default=None, help="also write all results as JSON")
    args = ap.parse_args()

    results: dict = {"rows": [], "reference": {}, "input_size": {}, "targets": {}}
    for space in args.spaces:
        tables = {d: read_arch_table(args.data / f"{space}_{d}.csv", space) for d in DEVICES[space]}
        print(f"\n== {space}: leave one phone out, {args.repeats} repeats ==")
        print(f"{'target':<16}{'shots':>6}{'Spearman':>10}{'(min)':>8}{'Kendall':>9}{'w10%':>7}{'MAPE%':>7}"
              f"{'FLOPs sp':>10}{'FLOPs w10':>10}{'scratch sp':>11}{'scratch w10':>12}")
        for d, tab in tables.items():
            sources = [t for k, t in tables.items() if k != d]
            ref = additive_reference(space, tab)
            results["reference"][f"{space}/{d}"] = ref
            results["input_size"][f"{space}/{d}"] = input_size_check(space, tab)
            for shots in args.shots:
                r = evaluate(tab, sources, shots=shots, repeats=args.repeats, seed=0)
                results["rows"].append(r)
                print(f"{d:<16}{shots:>6}{r['spearman_mean']:>10.3f}{r['spearman_min']:>8.3f}{r['kendall_mean']:>9.3f}"
                      f"{100 * r['within10_mean']:>7.1f}{r['mape_mean']:>7.1f}{r['flops_spearman_mean']:>10.3f}"
                      f"{100 * r['flops_within10_mean']:>10.1f}{r['scratch_spearman_mean']:>11.3f}"
                      f"{100 * r['scratch_within10_mean']:>12.1f}")
            print(f"{'':<16}additive (layer, op) fit on {ref['n_fit']} rows: Spearman {ref['spearman']:.3f}, "
                  f"within 10% {100 * ref['within10']:.1f}%")
        print("HELP (published, 10 shots, NAS-Bench-201, meta-trained on more devices): Pixel 2 0.802, "
              "Raspberry Pi 4 0.890")

    print("\n== targets ==")
    for space in args.spaces:
        ten = [r for r in results["rows"] if r["space"] == space and r["shots"] == 10]
        if ten:
            mean_sp = float(np.mean([r["spearman_mean"] for r in ten]))
            below = [r["target"] for r in ten if r["spearman_mean"] < r["flops_spearman_mean"]]
            ok = mean_sp >= 0.90 and not below
            results["targets"][f"{space}/10shot"] = {"mean_spearman": mean_sp, "below_flops": below, "met": ok}
            print(f"{space} 10 shots: mean Spearman {mean_sp:.3f} (target >= 0.90); below FLOPs on: "
                  f"{', '.join(below) or 'none'} -> {'MET' if ok else 'MISSED'}")
        two = [r for r in results["rows"] if r["space"] == space and r["shots"] == 200]
        for r in two:
            ref = results["reference"][f"{space}/{r['target']}"]["within10"]
            ok = r["within10_mean"] >= ref - 0.05
            results["targets"][f"{space}/{r['target']}/200shot_w10"] = {"transfer": r["within10_mean"],
                                                                         "additive_ref": ref, "met": ok}
            print(f"{space} {r['target']} 200 shots: within 10% {100 * r['within10_mean']:.1f}% vs additive "
                  f"{100 * ref:.1f}% - 5 -> {'MET' if ok else 'MISSED'}")
        for k, v in results["input_size"].items():
            if k.startswith(space):
                print(f"{k}: held-out RMSPE at 32x32 {v[32]:.1f}%, at 16x16 {v[16]:.1f}%")

    # one prediction of a new architecture with the shipped phone predictor: kernel list + features +
    # dot product (nothing cached), best of 5 x 200; and of a new TopFormer variant (the sweep's case)
    import random

    from topnas.platform.latency.kernels import _kernels_cached
    from topnas.platform.latency.predictor import packaged_predictor
    from topnas.search_spaces import default_space

    phone = packaged_predictor("snapdragon865_tnn_1core")
    mod = get_space("nb201")
    archs = list(read_arch_table(args.data / "nb201_samsung_a50.csv", "nb201").archs[:1000])
    best = float("inf")
    for rep in range(5):
        mod.kernels.cache_clear()
        t0 = time.perf_counter()
        for a in archs[rep * 200:(rep + 1) * 200]:
            phone.predict_kernels(mod.kernels(a))
        best = min(best, (time.perf_counter() - t0) / 200)
    space = default_space()
    variants = [space.sample(random.Random(i)) for i in range(200)]
    _kernels_cached.cache_clear()
    phone._cache.clear()
    t0 = time.perf_counter()
    for v in variants:
        phone.predict(v)
    best_tf = (time.perf_counter() - t0) / len(variants)
    results["prediction_ms"] = {"nb201": 1000 * best, "topformer": 1000 * best_tf}
    print(f"\none prediction of a new architecture: NAS-Bench-201 {1000 * best:.3f} ms, TopFormer variant "
          f"{1000 * best_tf:.3f} ms (target < 1 ms)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
