"""What a sweep costs on this machine: its trials vs the same proxy trainings alone.

Three measurements, all of the demo's proxy budget (experiments/sweep_demo_fixture.yaml), in one process:

1. **in a sweep, one at a time**: a sweep of ``--trials`` trials, ``max_concurrent: 1``, over the demo
   space narrowed to the ``--trials`` points (it varies the cheapest binary dimensions), so trials
   train distinct variants and no proposal is wasted on a duplicate. Wall time per trial = the median
   time between two trials' records in the ledger (``finished_at``), i.e. one whole cycle: the searcher's
   proposal, the Tune trial actor, MLflow child run, latency and MACs, the Ray Train run, the driver's
   recording and Pareto refresh (the per-sweep start-up is excluded: the first trial's; it is printed
   apart as the sweep's time / trials);
2. **alone**: the variants the sweep trained, each through :func:`topnas.platform.train.run_training`
   (Ray Train, 1 worker, MLflow off) on the same warm Ray, median: the baseline (``alone``); and
   through the in-process loop (``LocalSession``, no Ray) for reference;
3. **the demo sweep** as configured (2 concurrent trials): trials per hour, start-up included
   (``--demo-trials 0`` skips it).

``--breakdown`` splits a sweep trial's cycle with the timings each trial reports to Tune (its
``result.json``): before training (MLflow child run, MACs), in ``run_training`` (Ray Train start-up,
training, shutdown), and the rest (Tune's trial start, the driver's recording and the searcher).

Ratios are measured in the same run (absolute numbers are noisy on a shared machine)::

    python benchmarks/sweep_overhead.py [--trials 4] [--demo-trials 4] [--breakdown] [--no-in-process]
                                        [--predictor PATH] [--num-cpus 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "experiments" / "sweep_demo_fixture.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4, help="trials of the one-at-a-time sweep (default 4, >= 2)")
    ap.add_argument("--demo-trials", type=int, default=4, help="trials of the demo sweep (default 4)")
    ap.add_argument("--predictor", help="latency predictor JSON (default: the shipped one)")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--breakdown", action="store_true", help="also print where a sweep trial's time goes")
    ap.add_argument("--no-in-process", action="store_true",
                    help="skip the in-process reference trainings (no Ray; minutes on a busy machine)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="sweep-config override for every run, e.g. proxy.iterations=20 (repeatable)")
    args = ap.parse_args()
    if args.trials < 2:
        ap.error("--trials: at least 2 (the time per trial is the time between two trials' records)")
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="topnas_sweep_bench_"))
    os.environ["TOPNAS_HOME"] = str(work)
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    import ray

    from topnas.platform.sweep import Ledger, load_sweep_config, run_sweep
    from topnas.platform.sweep.fidelity import FIDELITY_KEYS
    from topnas.platform.train import run_training
    from topnas.platform.train.trainer import check_ready
    from topnas.search_spaces import Variant

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
        raw["proxy"] = {**raw["proxy"], **dict.fromkeys(FIDELITY_KEYS)}  # the demo's tables cover the whole space only
        seq = type(seq).from_dict(raw)
        t = time.perf_counter()
        run_sweep(seq)
        with_startup = (time.perf_counter() - t) / args.trials
        records = sorted(Ledger(seq.sweep_dir).records(), key=lambda r: r.finished_at)
        if len(records) != args.trials or any(r.status != "completed" for r in records):
            raise SystemExit(f"the sweep recorded {[r.status for r in records]}, not {args.trials} completed "
                             "trials: the per-trial time would not be comparable")
        cycles = [b.finished_at - a.finished_at for a, b in zip(records, records[1:])]
        per_trial = statistics.median(cycles)
        timings = [_trial_timings(seq.sweep_dir, r.trial_id) for r in records[1:]] if args.breakdown else []

        # 2. the variants the sweep trained, alone: Ray Train (warm Ray, MLflow off), then the in-process loop
        import ray.train.torch  # noqa: F401 - warm like the sweep's reused trial actor: imports done

        variants = [Variant.from_dict(r.config) for r in records]
        alone, local = [], []
        for i, v in enumerate(variants):
            tc = demo.train_config(v, f"bench-alone-{i}")
            tc = dataclasses.replace(tc, tracking=dataclasses.replace(tc.tracking, enabled=False))
            check_ready(tc)
            t = time.perf_counter()
            run_training(tc, run_name=f"bench-alone-{i}", resume="never")
            alone.append(time.perf_counter() - t)
            if not args.no_in_process:
                local.append(_local(tc, work / f"local-{i}"))
        alone_s = statistics.median(alone)
        local_s = statistics.median(local) if local else float("nan")

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
    distinct = len({v.id for v in variants})
    print(f"{'proxy training alone (Ray Train, no MLflow)':<48}{alone_s:8.1f} s   (median of {len(alone)} variants: "
          f"{_seconds(alone)})")
    if local:
        print(f"{'proxy training in-process (no Ray)':<48}{local_s:8.1f} s")
    vs_local = f", {per_trial / local_s:.2f}x vs in-process" if local else ""
    print(f"{'one trial inside a sweep (1 at a time)':<48}{per_trial:8.1f} s   ratio {per_trial / alone_s:.2f}x "
          f"vs Ray Train alone{vs_local}   (median of {len(cycles)} cycles: "
          f"{_seconds(cycles)}; {args.trials} trials, {distinct} distinct variants)")
    print(f"{'  the same, sweep start-up included':<48}{with_startup:8.1f} s   (sweep time / {args.trials} trials)")
    if args.breakdown:
        _print_breakdown(cycles, timings, alone_s)
    if dem_result is not None:
        n_demo = int((dem_result.trials["status"] != "infeasible").sum())
        print(f"{'demo sweep, ' + str(dem.max_concurrent) + ' concurrent, start-up included':<48}{demo_s:8.1f} s   "
              f"{n_demo / demo_s * 3600:.0f} trials/hour   ({n_demo} trials)")
    print(f"(work folder {work})")


def _seconds(values: list[float]) -> str:
    return " ".join(f"{v:.1f}" for v in values)


def _trial_timings(sweep_dir: Path, trial_id: str) -> dict[str, float]:
    """The timings a trial reported with its last result (``trial.TIMING_KEYS``), from Tune's result.json."""
    from topnas.platform.sweep.layout import TUNE_DIR
    from topnas.platform.sweep.trial import TIMING_KEYS

    path = sweep_dir / TUNE_DIR / trial_id / "result.json"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    last = lines[-1] if lines else {}
    return {k: float(last[k]) for k in TIMING_KEYS if k in last}


def _print_breakdown(cycles: list[float], timings: list[dict[str, float]], alone_s: float) -> None:
    """Medians over the trials after the first (the cycles measured): trial cycle = parts below."""
    rows = [(c, t) for c, t in zip(cycles, timings) if {"setup_s", "train_s"} <= set(t)]
    if not rows:
        print("breakdown: no trial reported its timings (see topnas.platform.sweep.trial.TIMING_KEYS)")
        return
    setup = statistics.median(t["setup_s"] for _, t in rows)
    train = statistics.median(t["train_s"] for _, t in rows)
    rest = statistics.median(c - t["setup_s"] - t["train_s"] for c, t in rows)
    print(f"breakdown of a sweep trial's cycle (median of {len(rows)}):")
    print(f"{'  before training (MLflow child run, MACs)':<48}{setup:8.1f} s")
    print(f"{'  run_training (Ray Train, MLflow logging)':<48}{train:8.1f} s   ({train - alone_s:+.1f} s vs alone)")
    print(f"{'  the rest (Tune trial start, driver recording)':<48}{rest:8.1f} s")


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
