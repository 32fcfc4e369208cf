"""What a sweep costs on this machine: one trial inside the sweep vs the same proxy training alone.

Three runs, all of the demo's proxy budget (experiments/sweep_demo_fixture.yaml), in one process:

1. **alone**: the proxy training of one variant through :func:`topnas.platform.train.run_training`
   (Ray Train, 1 worker) - the baseline;
2. **in a sweep, one at a time**: a sweep over a one-point space (that same variant), ``--trials``
   trials, ``max_concurrent: 1``: wall time per trial = sweep time / trials (Tune trial actor, MLflow
   child run, latency and MACs, the Pareto refresh and its artifacts included; Ray start excluded);
3. **the demo sweep** as configured (2 concurrent trials): trials per hour, start-up included.

Ratios are measured in the same run (absolute numbers are noisy on a shared machine)::

    python benchmarks/sweep_overhead.py [--trials 3] [--demo-trials 4] [--predictor PATH] [--num-cpus 2]
"""
from __future__ import annotations

import argparse
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
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="topnas_sweep_bench_"))
    os.environ["TOPNAS_HOME"] = str(work)
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    import ray

    from topnas.platform.sweep import load_sweep_config, run_sweep
    from topnas.platform.train import run_training
    from topnas.platform.train.trainer import check_ready

    common = [f"latency.predictor={args.predictor}"] if args.predictor else []
    demo = load_sweep_config(DEMO, common)
    variant = demo.first_variant()
    point = {k: v[0] for k, v in demo.space.parameters().items()}
    one_point = {"search_space": {**demo.space.to_dict(), **_fixed(demo.space.to_dict(), point)}}

    ray.init(num_cpus=args.num_cpus, log_to_driver=False)
    try:
        # 1. the proxy training alone (warm Ray: the sweep runs below also start on a warm Ray)
        tc = demo.train_config(variant, "bench-alone", tracking_uri=demo.resolved_tracking_uri())
        check_ready(tc)
        t = time.perf_counter()
        run_training(tc, run_name="bench-alone", resume="never")
        alone = time.perf_counter() - t

        # 2. the same training as trials of a sweep, one at a time
        seq = load_sweep_config(DEMO, [*common, "name=bench_sequential", f"num_samples={args.trials}",
                                       "max_concurrent=1"])
        seq = type(seq).from_dict({**seq.to_dict(), **one_point})
        t = time.perf_counter()
        seq_result = run_sweep(seq)
        per_trial = (time.perf_counter() - t) / args.trials

        # 3. the demo sweep itself
        ray.shutdown()
        dem = load_sweep_config(DEMO, [*common, "name=bench_demo", f"num_samples={args.demo_trials}"])
        t = time.perf_counter()
        dem_result = run_sweep(dem, num_cpus=args.num_cpus)
        demo_s = time.perf_counter() - t
    finally:
        if ray.is_initialized():
            ray.shutdown()

    n_demo = int((dem_result.trials["status"] != "infeasible").sum())
    print(f"proxy budget: {demo.proxy.iterations} iterations of {demo.proxy.crop_size[0]}x{demo.proxy.crop_size[1]} "
          f"crops, {demo.proxy.evaluations} evaluation(s), {demo.proxy.workers_per_trial} worker(s) per trial; "
          f"{args.num_cpus} CPUs")
    print(f"{'proxy training alone (Ray Train)':<44}{alone:8.1f} s")
    print(f"{'one trial inside a sweep (1 at a time)':<44}{per_trial:8.1f} s   "
          f"ratio {per_trial / alone:.2f}x   ({len(seq_result.trials)} trials)")
    print(f"{'demo sweep, ' + str(dem.max_concurrent) + ' concurrent, start-up included':<44}{demo_s:8.1f} s   "
          f"{n_demo / demo_s * 3600:.0f} trials/hour   ({n_demo} trials)")
    print(f"(work folder {work})")


def _fixed(space: dict, point: dict) -> dict:
    """The space's mapping with every dimension narrowed to the point's value."""
    out = {"input_size": [[int(v) for v in str(point["input_size"]).split("x")]]}
    stages = [dict(s) for s in space["stages"]]
    for i, s in enumerate(stages):
        s["depth"] = [point[f"stage{i + 1}.depth"]]
        if f"stage{i + 1}.channels" in point:
            s["channels"] = [point[f"stage{i + 1}.channels"]]
    out["stages"] = stages
    out["transformer"] = {**space["transformer"], **{k.split(".", 1)[1]: [v] for k, v in point.items()
                                                      if k.startswith("transformer.")}}
    out["head"] = {**space["head"], **{k.split(".", 1)[1]: [v] for k, v in point.items() if k.startswith("head.")}}
    if space.get("width_mult"):
        out["width_mult"] = [point["width_mult"]]
    return out


if __name__ == "__main__":
    main()
