"""`topnas latency evaluate|plan`: few-shot transfer scored on real phone data; which variants to measure."""
from __future__ import annotations

import argparse
import json
import sys

from topnas.errors import ConfigError


def _evaluate(args: argparse.Namespace) -> int:
    from topnas.platform.latency.arch_table import read_arch_table
    from topnas.platform.latency.fewshot import evaluate
    from topnas.platform.latency.predictor import packaged_predictor

    if args.shots < 2:
        raise ConfigError("--shots", args.shots, "an integer >= 2")
    if args.repeats < 1:
        raise ConfigError("--repeats", args.repeats, "an integer >= 1")
    target = read_arch_table(args.target, args.space)
    sources = [read_arch_table(p, args.space) for p in args.source]
    host = None if sources else packaged_predictor(args.host_predictor)

    def progress(i: int, n: int) -> None:
        if not args.json:
            print(f"\r  repeat {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)

    res = evaluate(target, sources, shots=args.shots, repeats=args.repeats, seed=args.seed,
                   input_hw=args.input_size, host=host, progress=progress)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['space']} -> {res['target']}  ({res['shots']} shots x {res['repeats']} repeats, "
          f"{res['n_eval']} rows scored; sources: {', '.join(res['sources'])})")
    print(f"  transfer  Spearman {res['spearman_mean']:.3f} (min {res['spearman_min']:.3f})  "
          f"Kendall {res['kendall_mean']:.3f}  within 10% {100 * res['within10_mean']:.1f}%  "
          f"MAPE {res['mape_mean']:.1f}%")
    print(f"  FLOPs     Spearman {res['flops_spearman_mean']:.3f}  within 10% {100 * res['flops_within10_mean']:.1f}%")
    print(f"  scratch   Spearman {res['scratch_spearman_mean']:.3f}  within 10% "
          f"{100 * res['scratch_within10_mean']:.1f}%")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from topnas.platform.latency.plan import plan_variants, write_plan
    from topnas.search_spaces import SearchSpace

    space = SearchSpace.from_yaml(args.space_yaml)
    chosen = plan_variants(space, n=args.n, pool=args.pool, seed=args.seed)
    out = write_plan(chosen, args.out)
    print(f"{len(chosen)} variants spanning the kernel mix of {args.space_yaml} -> {out}")
    for v in chosen:
        print(f"  {v.id}  {v.name or ''}")
    print(f"measure them: topnas latency measure --variants {out}/*.yaml --device adb --adb-config phone.yaml "
          f"--out phone.csv")
    return 0


def register_verbs(lsub: argparse._SubParsersAction) -> None:
    """Add `evaluate` and `plan` to the `topnas latency` verbs."""
    s = lsub.add_parser("evaluate", help="score few-shot transfer onto a measured device (public NAS spaces)")
    s.add_argument("--space", required=True, choices=("nb201", "fbnet"), help="the target table's NAS space")
    s.add_argument("--target", required=True, help="CSV arch,latency_ms of the target device")
    s.add_argument("--source", nargs="*", default=[],
                   help="CSVs of other devices, same space (the prior); none = this host's predictor only")
    s.add_argument("--shots", type=int, default=10, help="target rows the transfer may see (>= 2)")
    s.add_argument("--repeats", type=int, default=20, help="random draws of the shots")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--input-size", type=int, default=None, help="input side in pixels (default: the space's, 32)")
    s.add_argument("--host-predictor", default="local_cpu_ort", help="prior when no --source is given")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_evaluate)

    s = lsub.add_parser("plan", help="pick variants to measure on your phone so they span the space's kernel mix")
    s.add_argument("--space-yaml", default="topnas/search_spaces/default.yaml", help="search-space YAML")
    s.add_argument("-n", "--num-samples", "--n", dest="n", type=int, default=12, help="variants to pick")
    s.add_argument("--pool", type=int, default=500, help="random candidates to choose from")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="runs/latency_plan", help="folder for the chosen variant YAML files")
    s.set_defaults(func=_plan)
    register_fit_phone(lsub)


def _fit_phone(args: argparse.Namespace) -> int:
    import numpy as np

    from topnas.platform.latency.arch_table import read_arch_table
    from topnas.platform.latency.predictor import LatencyPredictor, packaged_predictor
    from topnas.platform.latency.measurements import Sample, check_single_target, read_calibration
    from topnas.platform.latency.snapdragon import build_phone_predictor, compare
    from topnas.search_spaces import Variant, default_space

    tables = []
    for path in args.arm_data:
        stem = path.rsplit("/", 1)[-1]
        space = stem.split("_", 1)[0]
        if space not in ("nb201", "fbnet"):
            raise ConfigError("--arm-data", path, "files named <space>_<device>.csv with space nb201 or fbnet")
        tables.append(read_arch_table(path, space))
    df = read_calibration(args.published)
    device = check_single_target(df, args.published)
    published = [Sample(Variant.from_json(r.variant_json), float(r.median_ms), 1) for r in df.itertuples()]
    host = LatencyPredictor.load(args.host) if args.host else packaged_predictor("local_cpu_ort")
    print(f"fitting the shared ARM kernel model on {len(tables)} phone tables ...", flush=True)
    pred, report = build_phone_predictor(tables, published, host, device, args.published.rsplit("/", 1)[-1])
    pred.save(args.out)
    loo = pred.fit_info["leave_one_out"]
    print(f"wrote {args.out}: leave-one-published-model-out MAPE {loo['mape']:.1f}% (worst {loo['max_ape']:.1f}%)")
    for r in loo["rows"]:
        print(f"  {r['model']:<6} {r['input_size'][0]}x{r['input_size'][1]}  measured {r['measured_ms']:6.1f}  "
              f"predicted {r['predicted_ms']:6.1f}  ({r['error_pct']:+.1f}%)")
    if args.compare:
        import random

        old = LatencyPredictor.load(args.compare)
        rng = random.Random(0)
        space = default_space()
        variants = [space.sample(rng) for _ in range(args.n)]
        cmp = compare(pred, old, variants)
        print(f"rank correlation with {args.compare} over {cmp['n']} default-space variants: "
              f"Spearman {cmp['spearman']:.4f}")
        for r in cmp["top_disagreements"]:
            ks = ", ".join(f"{k} {v['new_share']:.2f} vs {v['old_share']:.2f}" for k, v in r["kernels"].items())
            print(f"  {r['variant_id']}  rank {r['new_rank']} vs {r['old_rank']}  {r['new_ms']:.1f} vs "
                  f"{r['old_ms']:.1f} ms  shares: {ks}")
        report["compare"] = cmp
    if args.report:
        import json
        from pathlib import Path

        from topnas.platform.latency.snapdragon import report_markdown

        out = Path(args.report)
        if out.suffix == ".md":
            out.write_text(report_markdown(pred, report, " ".join(["topnas latency fit-phone", *sys.argv[3:]])))
        else:
            out.write_text(json.dumps(report, indent=1, default=lambda o: np.asarray(o).tolist()))
        print(f"report -> {out}")
    return 0


def register_fit_phone(lsub: argparse._SubParsersAction) -> None:
    s = lsub.add_parser("fit-phone", help="phone predictor: kernel costs from real ARM phones, level from a few "
                                          "published or measured points")
    s.add_argument("--arm-data", nargs="+", required=True, help="<space>_<device>.csv tables of real phones")
    s.add_argument("--published", required=True, help="calibration CSV of the target phone (published or measured)")
    s.add_argument("--host", default=None, help="host predictor JSON pricing kernels absent from the phone data")
    s.add_argument("--out", required=True, help="predictor JSON to write")
    s.add_argument("--compare", default=None, help="another predictor JSON to rank-compare with")
    s.add_argument("-n", "--num-samples", "--n", dest="n", type=int, default=500,
                   help="default-space variants for --compare")
    s.add_argument("--report", default=None, help="write the full report (.md: markdown, else JSON)")
    s.set_defaults(func=_fit_phone)
