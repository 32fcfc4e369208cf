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
