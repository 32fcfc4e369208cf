"""`topnas demo`: the main job on this machine (fixture -> sweep -> front -> promotion -> full run)."""
from __future__ import annotations

import argparse

from topnas.platform.cli.options import add_verbose_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole platform in minutes: sweep, Pareto front, promotion",
                       description="Generate the fixture dataset, run the demo sweep on an embedded Ray with a "
                                   "local MLflow store, print the Pareto front and how to open the MLflow UI, "
                                   "promote the knee variant and run its scaled-down full training.")
    p.add_argument("--out", default="runs/demo", help="demo folder: run folder + MLflow store (default runs/demo)")
    p.add_argument("-n", "--num-samples", "--trials", dest="trials", type=int, default=8,
                   help="trained sweep trials, the sweep's num_samples (default 8)")
    p.add_argument("--full-iters", type=int, default=None,
                   help="iterations of the scaled-down full run (default: experiments/demo_tiny_fixture.yaml's)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded Ray (default: all)")
    p.add_argument("--fresh", action="store_true", help="delete an earlier demo folder first")
    add_verbose_option(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from topnas.platform.console import LOG_DIR, session
    from topnas.platform.demo import run_demo

    with session("demo", Path(args.out).absolute() / LOG_DIR, args.verbose) as console:
        console.announce_log()
        run_demo(args.out, args.trials, full_iters=args.full_iters, fresh=args.fresh, num_cpus=args.num_cpus,
                 echo=console.echo, console=console)
    return 0
