"""Latency predictor speed: predictions per second once loaded (it runs inside the sampler).

Measures, in one run: loading the packaged predictor JSON; predictions of NEW variants (the
analytic kernel path runs for each: what a sampler sees); repeated predictions of the same variants
(cached features); and, as the baseline, counting MACs by building each model and running torch's
FLOP counter (what a FLOPs proxy costs). Prints absolute numbers and the ratio to the baseline.

    python benchmarks/predictor_speed.py [--n 500] [--predictor snapdragon865_tnn_1core] [--baseline-n 10]
"""
from __future__ import annotations

import argparse
import os
import random
import time

from topnas.platform.latency.predictor import PACKAGED, LatencyPredictor
from topnas.search_spaces import default_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="new variants to predict")
    ap.add_argument("--predictor", default="snapdragon865_tnn_1core")
    ap.add_argument("--baseline-n", type=int, default=10, help="variants for the FLOP-counter baseline")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    space = default_space()
    rng = random.Random(args.seed)
    variants = [space.sample(rng) for _ in range(args.n)]

    t0 = time.perf_counter()
    p = LatencyPredictor.load(PACKAGED / f"{args.predictor}.json")
    load_s = time.perf_counter() - t0

    # wall time and this thread's CPU time: on a shared host the difference is other processes
    t0, c0 = time.perf_counter(), time.thread_time()
    for v in variants:
        p.predict(v)
    cold = (time.perf_counter() - t0) / len(variants)
    cold_cpu = (time.thread_time() - c0) / len(variants)

    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(3):
        for v in variants:
            p.predict(v)
    warm = (time.perf_counter() - t0) / (3 * len(variants))
    warm_cpu = (time.thread_time() - c0) / (3 * len(variants))

    from topnas.topformer.complexity import count_complexity

    base_vs = variants[: args.baseline_n]
    t0 = time.perf_counter()
    for v in base_vs:
        count_complexity(v.model, v.input_size)
    flops = (time.perf_counter() - t0) / len(base_vs)

    print(f"predictor {args.predictor}: load {1e3 * load_s:.1f} ms")
    print(f"  new variants      {1e6 * cold:8.1f} us/prediction  {1 / cold:10.0f} predictions/s  "
          f"(CPU {1e6 * cold_cpu:.1f} us, {1 / cold_cpu:.0f}/s)")
    print(f"  cached variants   {1e6 * warm:8.1f} us/prediction  {1 / warm:10.0f} predictions/s  "
          f"(CPU {1e6 * warm_cpu:.1f} us, {1 / warm_cpu:.0f}/s)")
    print(f"  baseline: FLOP counter on the built model {1e3 * flops:.1f} ms/variant "
          f"({1 / flops:.1f} variants/s)")
    print(f"  ratio new-variant predictions / FLOP counting: {flops / cold:.0f}x faster")
    print(f"  under 1 ms per prediction (new variants, wall / CPU): {'yes' if cold < 1e-3 else 'NO'} / "
          f"{'yes' if cold_cpu < 1e-3 else 'NO'}")
    print(f"  host load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
