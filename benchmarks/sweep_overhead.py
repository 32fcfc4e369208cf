"""What a sweep costs on this machine: its trials vs the same proxy trainings alone.

Three measurements, all of the demo's proxy budget (experiments/sweep_demo_fixture.yaml), in one process:

1. **in a sweep, one at a time**: a sweep of ``--trials`` trials, ``max_concurrent: 1``, over the demo
   space narrowed to exactly ``--trials`` points (it varies the cheapest binary dimensions), so every
   trial trains a distinct variant and no proposal is wasted on a duplicate. Wall time per trial =
   sweep time / trials (Tune trial actor, MLflow child run, latency and MACs, the Pareto refresh and its
   artifacts included; Ray start excluded);
2. **alone**: the same variants' proxy trainings through :func:`topnas.platform.train.run_training`
   (Ray Train, 1 worker, MLflow off) on a warm Ray: the baseline (``alone``), and through the
   in-process loop (``LocalSession``, no Ray) for reference;
3. **the demo sweep** as configured (2 concurrent trials): trials per hour, start-up included
   (``--demo-trials 0`` skips it).

Ratios are measured in the same run (absolute numbers are noisy on a shared machine)::

    python benchmarks/sweep_overhead.py [--trials 3] [--demo-trials 4] [--predictor PATH] [--num-cpus 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "experiments" / "sweep_demo_fixture.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3, help="trials of the one-at-a-time sweep (default 3)")
    ap.add_argument("--demo-trials", type=int, default=4, help="trials of the demo sweep (default 4)")
    ap.add_argument("--predictor", help="latency predictor JSON (default: the shipped one)")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="sweep-config override for every run, e.g. proxy.iterations=20 (repeatable)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="topnas_sweep_bench_"))
    os.environ["TOPNAS_HOME"] = str(work)
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    import ray

    from topnas.platform.sweep import load_sweep_config, run_sweep
    from topnas.platform.train import run_training
    from topnas.platform.train.trainer import check_ready

    common = ([f"latency.predictor={args.predictor}"] if args.predictor else []) + list(args.set)
    demo = load_sweep_config(DEMO, common)
    points = _points(demo.space, args.trials)
    narrowed = {"search_space": {**demo.space.to_dict(), **_narrowed(demo.space.to_dict(), points)}}

    ray.init(num_cpus=args.num_cpus, log_to_driver=False)
    try:
        # 1. the proxy trainings as trials of a sweep, one at a time, each a distinct variant
        seq = load_sweep_config(DEMO, [*common, "name=bench_sequential", f"num_samples={args.trials}",
                                       "max_concurrent=1"])
        raw = {**seq.to_dict(), **narrowed}
        raw["proxy"] = {**raw["proxy"], "fidelity": None}  # the demo's fidelity table covers the whole space only
        seq = type(seq).from_dict(raw)
        t = time.perf_counter()
        seq_result = run_sweep(seq)
        per_trial = (time.perf_counter() - t) / args.trials
        trained = seq_result.trials[seq_result.trials["status"] == "completed"]
        ids = list(dict.fromkeys(trained["variant_id"]))
        if len(trained) != args.trials or len(ids) != args.trials:
            raise SystemExit(f"the sweep trained {len(trained)} trials of {len(ids)} distinct variants, "
                             f"not {args.trials}: the per-trial time would not be comparable")

        # 2. the same variants alone: Ray Train (warm Ray, MLflow off), then the in-process loop
        variants = [demo.space.build(p) for p in points]
        variants = [next(v for v in variants if v.id == vid) for vid in ids]
        alone, local = [], []
        for i, v in enumerate(variants):
            tc = demo.train_config(v, f"bench-alone-{i}")
            tc = dataclasses.replace(tc, tracking=dataclasses.replace(tc.tracking, enabled=False))
            check_ready(tc)
            t = time.perf_counter()
            run_training(tc, run_name=f"bench-alone-{i}", resume="never")
            alone.append(time.perf_counter() - t)
            local.append(_local(tc, work / f"local-{i}"))
        alone_s, local_s = sum(alone) / len(alone), sum(local) / len(local)

        # 3. the demo sweep itself
        ray.shutdown()
        dem_result, demo_s = None, float("nan")
        if args.demo_trials:
            dem = load_sweep_config(DEMO, [*common, "name=bench_demo", f"num_samples={args.demo_trials}"])
            t = time.perf_counter()
            dem_result = run_sweep(dem, num_cpus=args.num_cpus)
            demo_s = time.perf_counter() - t
    finally:
        if ray.is_initialized():
            ray.shutdown()

    print(f"proxy budget: {demo.proxy.iterations} iterations of {demo.proxy.crop_size[0]}x{demo.proxy.crop_size[1]} "
          f"crops, {demo.proxy.evaluations} evaluation(s), {demo.proxy.workers_per_trial} worker(s) per trial; "
          f"{args.num_cpus} CPUs")
    print(f"{'proxy training alone (Ray Train, no MLflow)':<48}{alone_s:8.1f} s   (mean of {len(alone)} variants)")
    print(f"{'proxy training in-process (no Ray)':<48}{local_s:8.1f} s")
    print(f"{'one trial inside a sweep (1 at a time)':<48}{per_trial:8.1f} s   ratio {per_trial / alone_s:.2f}x "
          f"vs Ray Train alone, {per_trial / local_s:.2f}x vs in-process   ({len(trained)} distinct trials)")
    if dem_result is not None:
        n_demo = int((dem_result.trials["status"] != "infeasible").sum())
        print(f"{'demo sweep, ' + str(dem.max_concurrent) + ' concurrent, start-up included':<48}{demo_s:8.1f} s   "
              f"{n_demo / demo_s * 3600:.0f} trials/hour   ({n_demo} trials)")
    print(f"(work folder {work})")


def _points(space, n: int) -> list[dict]:
    """``n`` distinct points: the space's first choices, varying its binary dimensions (cheapest first)."""
    dims = space.parameters()
    base = {k: v[0] for k, v in dims.items()}
    prefer = ("head.channels", "transformer.num_heads", "transformer.depths", "stage1.depth", "stage2.depth")
    free = [k for k in prefer if len(dims.get(k, ())) >= 2] + \
           [k for k, v in dims.items() if len(v) >= 2 and k not in prefer]
    points: list[dict] = []
    for i in range(n):
        if i >= 2 ** len(free):
            raise SystemExit(f"--trials: the demo space has fewer than {n} points to vary")
        p = dict(base)
        for bit, key in enumerate(free):
            p[key] = dims[key][(i >> bit) & 1]
        points.append(p)
    return points


def _local(tc, folder: Path) -> float:
    """Seconds of the same training in-process (no Ray, no MLflow)."""
    from topnas.platform.train.loop import LocalSession, TrainJob, run_loop

    t = time.perf_counter()
    run_loop(tc, TrainJob(tc.name, str(folder)), LocalSession(folder))
    return time.perf_counter() - t


def _narrowed(space: dict, points: list[dict]) -> dict:
    """The space's mapping with every dimension narrowed to the values the points use."""
    def used(key: str) -> list:
        return list(dict.fromkeys(p[key] for p in points))

    out = {"input_size": [[int(v) for v in str(s).split("x")] for s in used("input_size")]}
    stages = [dict(s) for s in space["stages"]]
    for i, s in enumerate(stages):
        s["depth"] = used(f"stage{i + 1}.depth")
        if f"stage{i + 1}.channels" in points[0]:
            s["channels"] = used(f"stage{i + 1}.channels")
    out["stages"] = stages
    out["transformer"] = {**space["transformer"], **{k.split(".", 1)[1]: used(k) for k in points[0]
                                                      if k.startswith("transformer.")}}
    out["head"] = {**space["head"], **{k.split(".", 1)[1]: used(k) for k in points[0] if k.startswith("head.")}}
    if space.get("width_mult"):
        out["width_mult"] = used("width_mult")
    return out


if __name__ == "__main__":
    main()
