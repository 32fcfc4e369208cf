"""`topnas train`: run, resume or print a training config (Ray Train + MLflow)."""
from __future__ import annotations

import argparse
import time

from topnas.errors import ConfigError
from topnas.platform.cli.options import add_config_options, add_verbose_option

EPILOG = """examples:
  topnas train experiments/demo_tiny_fixture.yaml
  topnas train experiments/topformer_tiny_512x512_160k_ade20k.yaml --set scaling.num_workers=4 \\
      --set model.pretrained=null --print-config
  topnas train --resume demo_tiny_fixture-20250101-120000     # continue a stopped job
"""



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a TopFormer variant on Ray Train",
                       description="Train from an experiment YAML (mmseg-style _base_ composition).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p, "experiment YAML (optional with --resume: the run's saved config)", "optimizer.lr=1.2e-4")
    p.add_argument("--resume", metavar="RUN", help="continue run RUN from its latest checkpoint")
    p.add_argument("--run-name", help="run name (default: <config name>-<timestamp>)")
    p.add_argument("--storage", help="Ray Train storage folder holding runs (default: <runs>/train); "
                                     "used to find --resume runs without a config")
    add_verbose_option(p)
    p.set_defaults(func=_train)


def _load(args: argparse.Namespace):
    from topnas.platform.train.train_config import TrainConfig, load_config
    from topnas.platform.train.trainer import CONFIG_SNAPSHOT, list_runs

    overrides = list(args.overrides)
    if args.storage:
        overrides.append(f"scaling.storage_path={args.storage}")
    if args.config:
        return load_config(args.config, overrides)
    if not args.resume:
        raise ConfigError("config", None, "an experiment YAML file, or --resume RUN")
    from topnas.platform.paths import train_root

    storage = train_root(args.storage)
    saved = storage / args.resume / CONFIG_SNAPSHOT
    if not saved.is_file():
        raise ConfigError("--resume", args.resume, list_runs(storage) or f"a run under {storage}",
                          hint=f"{saved} not found; pass the experiment YAML too")
    return TrainConfig.from_yaml_text(saved.read_text()).with_overrides(overrides)


def _train(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        print(f"# variant {cfg.variant.id} ({cfg.variant.preset or 'custom'}), norm {cfg.resolved_norm()}, "
              f"total batch {cfg.total_batch_size}")
        return 0
    from topnas.platform.console import LOG_DIR, session
    from topnas.platform.liveview import watch_train
    from topnas.platform.paths import runs_root
    from topnas.platform.train.trainer import run_dir_for, run_training

    if args.resume:
        run_name, mode = args.resume, "must"
    else:
        run_name, mode = args.run_name or f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}", "never"
    try:
        with session("train", runs_root() / LOG_DIR, args.verbose) as console, \
                watch_train(console, run_dir_for(cfg, run_name), run_name, cfg.schedule.max_iters):
            result = run_training(cfg, run_name=run_name, resume=mode)
    except KeyboardInterrupt:
        print(f"continue the run with: topnas train --resume {run_name}", flush=True)
        raise
    m = result.metrics
    print(f"run {result.run_name}: {result.iteration}/{cfg.schedule.max_iters} iterations in {result.elapsed_s:.0f} s")
    if "val_mIoU" in m:
        print(f"  val mIoU {m['val_mIoU']:.4f}  mAcc {m['val_mAcc']:.4f}  aAcc {m['val_aAcc']:.4f}")
    print(f"  checkpoint {result.checkpoint}")
    if result.mlflow_run_id:
        print(f"  MLflow run {result.mlflow_run_id} at {result.tracking_uri}")
    return 0
