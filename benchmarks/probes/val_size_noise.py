"""Proxy probe: how much of the demo proxy's seed noise is the validation set's sampling error?

With 4 classes most images are learned well by every seed, and 48 validation images of 128x160
are a small sample: two seeds of one variant that are equally good can still score differently on
those 48 images. This probe trains variants at the demo proxy (exactly: ``proxy.*`` of the sweep
YAML) with several seeds and evaluates each run's final weights on the first ``--small`` and on all
``--large`` validation images of the same fixture (its images are seeded per index, so the first
48 are the demo's). It prints every run's two scores and, per set, the seed noise (std over seeds,
mean over variants): if the noise falls with more images, the proxy should validate on more.

    python benchmarks/probes/val_size_noise.py --work /tmp/vsn       # the demo table's 6 noise variants

Result: benchmarks/data/README.md ("Proxy changes tried").
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TABLE = ROOT / "benchmarks" / "data" / "demo_proxy_4class" / "replay_fixture-small"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="*", help="variant ids of the table (default: its noise variants)")
    ap.add_argument("--table", default=str(TABLE), help="replay table stem: <stem>_variants.jsonl, <stem>_meta.json")
    ap.add_argument("--sweep", default=str(ROOT / "experiments" / "sweep_demo_fixture.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="sweep-config override")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--small", type=int, default=48, help="the proxy's validation images")
    ap.add_argument("--large", type=int, default=480)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shard", default="0/1", help="i/n: this process trains runs i, i+n, ... (share the work)")
    ap.add_argument("--work", required=True, help="fixture + checkpoints + results.jsonl")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.probes.proxy_setup import proxy_config, read_variants
    from topnas.platform.train import loop as L

    stem = Path(args.table)
    found = read_variants(f"{stem}_variants.jsonl")
    ids = args.variants or json.loads(Path(f"{stem}_meta.json").read_text())["noise_variants"]
    work = Path(args.work).absolute()
    cfg = proxy_config(args.sweep, args.set, work, fixture={"val": args.large})
    results = work / "results.jsonl"
    done = {(r["variant"], r["seed"]) for r in map(json.loads, results.read_text().splitlines())} \
        if results.exists() else set()
    index, count = map(int, args.shard.split("/"))
    runs = [(vid, seed) for vid in ids for seed in args.seeds]
    evaluate = L.evaluate
    for vid, seed in runs[index::count]:
        if (vid, seed) in done:
            continue
        tc = cfg.train_config(found[vid], f"vsn_{vid}_s{seed}")
        tc = replace(tc, runtime=replace(tc.runtime, seed=seed, log_interval=10 ** 9,
                                         eval_interval=cfg.proxy.iterations))  # the last one only
        scores: dict[str, float] = {}

        def scored(model, dataset, *a, _scores=scores, **k):
            for name, n in (("small", args.small), ("large", args.large)):
                _scores[name] = evaluate(model, dataset, *a, **{**k, "max_samples": n})["mIoU"]
            return evaluate(model, dataset, *a, **{**k, "max_samples": args.small})

        L.evaluate = scored
        run_dir = work / f"{vid}_s{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)
        try:
            L.run_loop(tc, L.TrainJob(tc.name, str(run_dir)), L.LocalSession(run_dir))
        finally:
            L.evaluate = evaluate
        shutil.rmtree(run_dir, ignore_errors=True)
        row = {"variant": vid, "seed": seed, **scores}
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"RESULT {vid} seed {seed} small {scores['small']:.4f} large {scores['large']:.4f}", flush=True)

    rows = [json.loads(ln) for ln in results.read_text().splitlines()]
    for name, n in (("small", args.small), ("large", args.large)):
        stds = []
        for vid in ids:
            vals = [r[name] for r in rows if r["variant"] == vid]
            if len(vals) >= 2:
                stds.append(statistics.stdev(vals))
        if stds:
            print(f"{n} validation images: seed noise {statistics.mean(stds):.4f} "
                  f"({len(stds)} variants; per variant {' '.join(f'{s:.4f}' for s in stds)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
