"""Proxy probe: where the seed noise lives. Trains one table variant at the demo proxy with several
seeds and prints the per-class IoU at every evaluation, one line per (seed, iteration).

The seed noise of the demo proxy (benchmarks/data/README.md) is a mean over classes; this shows
whether it is spread over all classes or sits in a few that one seed learns late. Example (the
three seeds of the table's fastest noise variant, 480 validation images):

    python benchmarks/probes/per_class_seeds.py tf-892d1c4abb --seeds 0 1 2 --work /tmp/pc_work \
        --set proxy.fixture.val=480 --set proxy.val_max_samples=480

Result: benchmarks/data/README.md ("Where the seed noise lives").
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

VARIANTS = ROOT / "benchmarks" / "data" / "replay_fixture-small_variants.jsonl"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variant", help="a variant id of --variants")
    ap.add_argument("--variants", default=str(VARIANTS), help="Variant JSON lines (a replay table's)")
    ap.add_argument("--sweep", default=str(ROOT / "experiments" / "sweep_demo_fixture.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="sweep-config override")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", required=True, help="fixture + checkpoints")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.probes.proxy_setup import proxy_config, read_variants
    from topnas.platform.train import loop as L

    found = read_variants(args.variants)
    variant = found.get(args.variant)
    if variant is None:
        raise SystemExit(f"variant: {args.variant!r} is not in {args.variants} ({len(found)} variants)")
    work = Path(args.work).absolute()
    cfg = proxy_config(args.sweep, args.set, work)

    evaluate = L.evaluate
    names: list[str] = []
    for seed in args.seeds:
        evals = [0]

        def per_class(*a, _seed=seed, _evals=evals, **k):
            result = evaluate(*a, **k)
            _evals[0] += 1
            it = min(_evals[0] * cfg.proxy.eval_interval, cfg.proxy.iterations)
            print(f"seed {_seed}  it {it:4d}  mIoU {result['mIoU']:.3f}  "
                  + " ".join(f"{x:.2f}" for x in result["IoU_per_class"]), flush=True)
            return result

        L.evaluate = per_class  # the loop looks it up at every evaluation
        tc = cfg.train_config(variant, f"per_class_{variant.id}_s{seed}")
        tc = replace(tc, runtime=replace(tc.runtime, seed=seed, log_interval=10 ** 9))
        if not names:
            from topnas.platform.data.fixture import fixture_class_names

            names = fixture_class_names(cfg.space.num_classes)
            print("columns: " + " ".join(f"{i}={n}" for i, n in enumerate(names)), flush=True)
        run_dir = work / f"{variant.id}_s{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)  # train from scratch: a checkpoint there would be resumed
        L.run_loop(tc, L.TrainJob(tc.name, str(run_dir)), L.LocalSession(run_dir))
    L.evaluate = evaluate
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
