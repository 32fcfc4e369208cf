"""`topnas sweep`: run or resume a multi-objective architecture sweep (Ray Tune + Optuna + MLflow)."""
from __future__ import annotations

import argparse

from topnas.errors import ConfigError
from topnas.platform.cli.options import add_config_options, add_verbose_option

EPILOG = """examples:
  topnas sweep experiments/sweep_demo_fixture.yaml --num-cpus 2
  topnas sweep experiments/sweep_ade20k_cluster.yaml --address auto --set num_samples=200
  topnas sweep --resume sweep_demo_fixture          # after a crash or kill: finishes the same sweep
  topnas sweep experiments/sweep_demo_fixture.yaml --print-config
"""



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="search TopFormer variants: mIoU vs predicted latency",
                       description="Ray Tune + Optuna multi-objective sweep; the Pareto front goes to MLflow.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p, "sweep YAML (optional with --resume: the sweep's saved config)", "latency.budget_ms=60")
    p.add_argument("--address", help="Ray cluster: 'auto' (this machine's cluster) or ray://host:10001; "
                                     "default: start a local Ray")
    p.add_argument("--resume", metavar="SWEEP", help="finish sweep SWEEP (a name under <runs>/sweeps or a folder)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started here (default: all)")
    add_verbose_option(p)
    p.set_defaults(func=_sweep)


def _load(args: argparse.Namespace):
    from topnas.platform.sweep.sweep_config import load_sweep_config
    from topnas.platform.sweep.runner import load_saved_config

    if args.resume:
        if args.overrides:
            raise ConfigError("--set", args.overrides, "no overrides with --resume",
                              hint="a resumed sweep keeps its saved config")
        saved = load_saved_config(args.resume)  # the one parse: the YAML given too is only checked for its name
        if args.config:
            given = _sweep_name_of(args.config)
            if given != saved.name:
                raise ConfigError("--resume", args.resume, [given], hint=f"{args.config} is sweep {given!r}")
        return saved
    if not args.config:
        raise ConfigError("config", None, "a sweep YAML file, or --resume SWEEP")
    return load_sweep_config(args.config, args.overrides)


def _sweep_name_of(path: str) -> str:
    """The name of the sweep a YAML file defines (its ``name``, else the file stem), without parsing it."""
    from pathlib import Path

    from topnas.yamlio import read_yaml_mapping

    name = read_yaml_mapping(path, "sweep config").get("name")
    return name if isinstance(name, str) else Path(path).stem


def _sweep(args: argparse.Namespace) -> int:
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ConfigError("--num-cpus", args.num_cpus, "an int >= 1")
    cfg = _load(args)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        print(f"# sweep folder {cfg.sweep_dir}; search space {cfg.space.size} variants; "
              f"{cfg.num_samples} trials, {cfg.max_concurrent} at a time")
        return 0
    from topnas.platform.console import LOG_DIR, session
    from topnas.platform.liveview import watch_sweep
    from topnas.platform.sweep.runner import run_sweep

    with session("sweep", cfg.sweep_dir / LOG_DIR, args.verbose) as console, \
            watch_sweep(console, cfg.sweep_dir, cfg.name, cfg.num_samples):
        result = run_sweep(cfg, address=args.address, resume=bool(args.resume), num_cpus=args.num_cpus)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items())) or "no trial"
    print(f"sweep {result.name}: {counts}; hypervolume {result.hypervolume:.4g} "
          f"(reference {result.reference_point['latency_ms']:.1f} ms) in {result.elapsed_s:.0f} s")
    print(result.table())
    print(f"  folder      {result.sweep_dir}")
    print(f"  MLflow      parent run {result.parent_run_id} (experiment {result.experiment_id}) at {result.tracking_uri}")
    print(f"  next        topnas pareto show {result.name} --sort val_mIoU")
    return 0
