"""`topnas demo`: the main job on this machine (fixture -> sweep -> front -> promotion -> full run)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole platform in minutes: sweep, Pareto front, promotion",
                       description="Generate the fixture dataset, run the demo sweep on an embedded Ray with a "
                                   "local MLflow store, print the Pareto front and how to open the MLflow UI, "
                                   "promote the knee variant and run its scaled-down full training.")
    p.add_argument("--out", default="runs/demo", help="demo folder: run folder + MLflow store (default runs/demo)")
    p.add_argument("--trials", type=int, default=8, help="trained sweep trials (default 8)")
    p.add_argument("--full-iters", type=int, default=None,
                   help="iterations of the scaled-down full run (default: experiments/demo_tiny_fixture.yaml's)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded Ray (default: all)")
    p.add_argument("--fresh", action="store_true", help="delete an earlier demo folder first")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from topnas.platform.demo import run_demo

    run_demo(args.out, args.trials, full_iters=args.full_iters, fresh=args.fresh, num_cpus=args.num_cpus)
    return 0
