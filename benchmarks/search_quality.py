"""Search quality on the replay task: hypervolume against consumed training iterations, per method.

Methods (sampler + scheduler of a sweep): ``random`` (random search, every trial trained to the full
budget), ``nsga2``, ``nsga2_asha`` (mIoU-only ASHA), ``nsga2_moasha`` (MO-ASHA), ``tpe`` and, unless
``--quick``, ``gp`` (each GP proposal refits Gaussian processes on every finished trial, about ten
times NSGA-II's CPU per trial - compare ``--methods gp --seeds 1`` with ``--methods nsga2 --seeds 1``
- so its ten seeds alone overrun the quick run's 3 minutes on 2 cores); ``--seeds`` sampler seeds each. Each run replays the benchmark table
(default: ``benchmarks/data/replay_4class/``, the demo space trained 960 iterations with an evaluation every 60, 16
rungs for the rung schedulers; ``<t>.csv`` + its variants file, see
``topnas/platform/sweep/replay.py``):
a trial's ``val_mIoU`` at every evaluation comes from the table, latency from the predictor.

Compute is counted in training iterations (a stopped trial costs the iterations it ran). The
budget ``B`` is ``--budget-trials`` full trainings (default: a third of the table); random search's
final hypervolume ``HV_r`` is its hypervolume at ``B`` (mean over seeds); every method, random
included, runs until ``--cap x B`` or until the table is used up.

Printed per method, against random search's final hypervolume ``HV_r`` (mean over its seeds):

* ``compute_to_random_final``: fraction of ``B`` at which the method first reaches ``HV_r`` (mean
  over seeds; a seed that never does within ``cap x B`` counts as ``cap``; ``never`` counts them);
* ``hv_ratio_at_B``: its hypervolume at compute ``B`` / ``HV_r`` (equal compute);
* ``true_front_dropped``: true-front variants (the front of every table variant at the full
  budget) the method started and early-stopped (mean count);
* ``true_front_found``: true-front variants it trained to the full budget within ``B``;
* ``compute_to_random_final_se``: standard error of that mean over the seeds (10 seeds: ~0.1-0.2,
  so differences below ~0.3 between two settings are not evidence).

``--diagnose`` separates the causes when a rung scheduler saves little (same seeds, same budget, same
rungs; only what the named part sees changes):

* ``random_moasha``: random proposals + MO-ASHA: what the NSGA-II searcher adds over random order;
* ``<method>_oracle_rungs``: the method whose rung scheduler is shown each variant's full-budget
  mIoU at every rung (a perfect-fidelity proxy); what is left above 0.5 there is the cost of the
  rung schedule and of the search order, not of the rungs' information;
* the Spearman correlation, across the table's variants, of the replayed mIoU at each evaluation
  with the full-budget mIoU: how much a decision at that rung can know.

``--rungs`` sets the rung iterations of both ASHA schedulers alike (default: the scheduler's own,
``grace_period x reduction_factor^k`` from the first evaluation).

The runs do NOT start Ray: a Ray Tune replay sweep of 8 trials took 80 s of Tune time plus Ray's
start (measured on this 2-core machine, busy: ~3 min per sweep), far too slow for 50 sweeps. A thin
in-process driver (:func:`simulate`) drives the sweep's own classes instead - ``SweepSearch`` (the
OptunaSearch subclass, replay snapping included; in-memory Optuna storage), the
``RungScheduler`` of ``make_scheduler`` (ASHA / MO-ASHA rung decisions and ``rungs.jsonl``), the
``trial_status`` rule and the ledger - with ``--workers`` trials running at once on a clock that
counts iterations.

    python benchmarks/search_quality.py [--table benchmarks/data/<t>.csv] [--seeds 10] [--quick] [--json]
    python benchmarks/search_quality.py --synthetic 48   # a made-up table (replay.write_synthetic_table)

``--json`` prints one object on stdout: method -> {compute_to_random_final, true_front_dropped, ...}
(the table, budget and seeds as a second JSON object on stderr).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT / "benchmarks" / "data" / "replay_4class" / "replay_fixture-small.csv"
sys.path.insert(0, str(ROOT))

METHODS: dict[str, tuple[str, str]] = {  # name -> (sampler, scheduler)
    "random": ("random", "fifo"),
    "nsga2": ("nsga2", "fifo"),
    "nsga2_asha": ("nsga2", "asha"),
    "nsga2_moasha": ("nsga2", "moasha"),
    "tpe": ("tpe", "fifo"),
    "gp": ("gp", "fifo"),
    "random_moasha": ("random", "moasha"),
}
QUICK_SKIP = ("gp",)  # seconds per proposal on 2 cores
ON_REQUEST = ("random_moasha",)  # run when named by --methods or by --diagnose (the searcher's share)
ORACLE_SUFFIX = "_oracle_rungs"  # --diagnose: the method with perfect-fidelity rungs (simulate's ``oracle``)


@dataclass
class Run:
    """One method, one seed: hypervolume after each completed trial, and what it stopped."""

    events: list[tuple[float, float]] = field(default_factory=list)  # (consumed iterations, hypervolume)
    stopped: set[str] = field(default_factory=set)  # variant ids early-stopped
    completed: list[tuple[float, str]] = field(default_factory=list)  # (consumed, variant id)
    consumed: float = 0.0
    started: int = 0

    def hv_at(self, compute: float) -> float:
        return max([hv for c, hv in self.events if c <= compute], default=0.0)

    def first_reach(self, target: float) -> float | None:
        return next((c for c, hv in self.events if hv >= target - 1e-12), None)


class _NoTracker:
    """The benchmark has no latency budget, so the searcher never makes an MLflow run."""

    def create_child(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no proposal is over a latency budget here")


def sweep_config(table: Path, space: dict, method: str, seed: int, work: Path, iterations: int, every: int,
                 predictor: str | None, population: int, reduction_factor: float, rungs: list[int] | None = None):
    from topnas.platform.sweep import SweepConfig

    sampler, scheduler = METHODS[method]
    options = {"population_size": population} if sampler == "nsga2" else {}
    return SweepConfig.from_dict({
        "name": f"{method}-{seed}", "search_space": space, "seed": seed,
        "sampler": {"name": sampler, "options": options}, "num_samples": 100000, "max_concurrent": 2,
        "latency": {"predictor": predictor},
        "proxy": {"iterations": iterations, "eval_interval": every},
        "scheduler": {"name": scheduler, "reduction_factor": reduction_factor, "rungs": rungs}
        if scheduler != "fifo" else {},
        "replay": {"table": str(table)}, "storage": str(work / method / str(seed)),
    })


def simulate(cfg, reference: dict[str, float], compute_cap: float, workers: int, oracle: bool = False) -> Run:
    """Drive the sweep's searcher and scheduler with replayed evaluations (see module docstring).

    ``oracle``: the rung scheduler is shown each variant's mIoU at the full budget instead of its mIoU
    at the rung (a perfect-fidelity proxy; ``--diagnose``); the searcher and the front still get the
    replayed values, so only the rung decisions change.
    """
    import optuna
    from ray.tune.search import Searcher

    from topnas.platform import pareto as P
    from topnas.platform.sweep.sweep_config import OBJECTIVES
    from topnas.platform.sweep.ledger import Ledger, TrialRecord, trial_status
    from topnas.platform.sweep.replay import eval_iterations, load_replay
    from topnas.platform.sweep.scheduler import make_scheduler
    from topnas.platform.sweep.searcher import META_KEY, SweepSearch

    table = load_replay(cfg)
    evals = eval_iterations(cfg.proxy.iterations, cfg.proxy.eval_interval)
    searcher = SweepSearch(cfg, _NoTracker(), "replay", storage=optuna.storages.InMemoryStorage())
    scheduler = make_scheduler(cfg, reference)
    ledger = Ledger(cfg.sweep_dir)
    run, running, points = Run(), {}, []
    clock, done_iters, exhausted = 0.0, 0.0, False

    def consumed(t: float) -> float:
        return done_iters + sum(t - r["start"] for r in running.values())

    while True:
        while not exhausted and len(running) < workers and consumed(clock) < compute_cap:
            tid = f"t{run.started:04d}"
            config = searcher.suggest(tid)
            if config is None or config == Searcher.FINISHED:
                exhausted = True
                break
            meta = config[META_KEY]
            running[tid] = {"vid": meta["variant_id"], "lat": meta["latency_ms"], "start": clock, "k": 0}
            run.started += 1
        if not running:
            break
        tid, r = min(running.items(), key=lambda kv: (kv[1]["start"] + evals[kv[1]["k"]], kv[0]))
        clock = r["start"] + evals[r["k"]]
        if consumed(clock) > compute_cap:
            break
        it = evals[r["k"]]
        result = {"val_mIoU": table.curves[r["vid"]][it], "iteration": it, "latency_ms": r["lat"],
                  "variant_id": r["vid"]}
        shown = {**result, "val_mIoU": table.curves[r["vid"]][cfg.proxy.iterations]} if oracle else result
        decision = scheduler.decide(tid, shown) if scheduler is not None else "continue"
        if decision == "stop" or it >= cfg.proxy.iterations:
            searcher.on_trial_complete(tid, result)
            status, reason = trial_status(result, False, cfg.proxy.iterations)
            ledger.append(TrialRecord(trial_id=tid, variant_id=r["vid"], status=status, reason=reason,
                                        val_mIoU=result["val_mIoU"], iteration=it, latency_ms=r["lat"]))
            done_iters += it
            del running[tid]
            if status == "completed":
                points.append(P.ParetoPoint(tid, {"val_mIoU": result["val_mIoU"], "latency_ms": r["lat"]}))
                run.events.append((consumed(clock), P.hypervolume(points, reference, OBJECTIVES)))
                run.completed.append((consumed(clock), r["vid"]))
            else:
                run.stopped.add(r["vid"])
        else:
            r["k"] += 1
    run.consumed = min(consumed(clock), compute_cap)  # the run stops at the cap, mid-trial if need be
    return run


def _one(job: tuple) -> Run:
    """One (method, seed) run in a worker process."""
    method, seed, table, space, work, iterations, every, predictor, population, rf, rungs, reference, cap, workers = job
    _quiet()
    oracle = method.endswith(ORACLE_SUFFIX)
    method = method.removesuffix(ORACLE_SUFFIX)
    work = work / "oracle_rungs" if oracle else work  # a sweep folder of its own (its ledger is its state)
    cfg = sweep_config(table, space, method, seed, work, iterations, every, predictor, population, rf, rungs)
    return simulate(cfg, reference, cap, workers, oracle)


def _quiet() -> None:
    import warnings

    import optuna

    logging.basicConfig(level=logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")


def true_front(cfg, reference: dict[str, float]) -> tuple[set[str], float, dict[str, float]]:
    """Front of every table variant at the full budget, its hypervolume, and each variant's latency."""
    from topnas.platform import pareto as P
    from topnas.platform.sweep import estimates
    from topnas.platform.sweep.sweep_config import OBJECTIVES
    from topnas.platform.sweep.replay import load_replay

    table = load_replay(cfg)
    predictor = estimates.load_predictor(cfg.latency.predictor)
    lat = {vid: estimates.predict(predictor, v).latency_ms for vid, v in table.variants.items()}
    pts = [P.ParetoPoint(vid, {"val_mIoU": c[cfg.proxy.iterations], "latency_ms": lat[vid]})
           for vid, c in table.curves.items()]
    return {p.id for p in P.non_dominated(pts, OBJECTIVES)}, P.hypervolume(pts, reference, OBJECTIVES), lat


def rung_spearman(curves: dict[str, dict[int, float]], final: int) -> dict[int, float]:
    """Rank correlation, across the replayed variants, of the mIoU at each evaluation with the final one:
    how much a rung decision there can know about the front at the full budget."""
    from scipy.stats import spearmanr

    vids = sorted(curves)
    return {it: round(float(spearmanr([curves[v][it] for v in vids], [curves[v][final] for v in vids]).statistic), 3)
            for it in sorted(next(iter(curves.values()))) if it < final}


def _table_space(table: Path) -> dict:
    """The search space the table was trained in: ``<t>.variants.json`` holds it, or ``<t>_meta.json``
    names the sweep YAML (benchmarks/make_replay_table.py)."""
    from topnas.errors import ConfigError
    from topnas.platform.sweep.replay import variants_path
    from topnas.yamlio import read_yaml_mapping

    vpath, meta = variants_path(table), table.with_name(table.stem + "_meta.json")
    if vpath.suffix == ".json" and vpath.is_file():
        space = json.loads(vpath.read_text()).get("search_space")
        if isinstance(space, dict):
            return space
    if meta.is_file():
        sweep = read_yaml_mapping(ROOT / json.loads(meta.read_text())["sweep_yaml"], "sweep YAML of the table")
        space = sweep.get("search_space")
        if isinstance(space, str):
            return read_yaml_mapping(Path(space), "search space").get("search_space", {})
        if isinstance(space, dict):
            return space
    raise ConfigError("--table", str(table), f"{vpath.name} with `search_space`, or {meta.name} naming the sweep YAML")


def _table_layout(table: Path) -> tuple[dict, int, int]:
    """The table's search space, full budget and evaluation step (uniform steps required)."""
    from topnas.errors import ConfigError
    from topnas.platform.sweep.replay import read_table

    curves, _ = read_table(table)
    its = sorted(set.intersection(*(set(c) for c in curves.values())))
    steps = {b - a for a, b in zip([0, *its], its)}
    if len(steps) != 1:
        raise ConfigError("--table", str(table), "evaluations every k iterations, shared by every variant",
                          hint=f"common iterations {its[:8]}...")
    return _table_space(table), its[-1], steps.pop()


def _complete_subset(table: Path, work: Path) -> tuple[Path, int, int]:
    """The table restricted to variants with every evaluation up to the longest budget.

    A table still being written (benchmarks/make_replay_table.py appends row by row) holds variants
    part-way; replay rejects those, so the benchmark runs on the finished ones (and says how many).
    Returns (table path, variants kept, variants in the file).
    """
    import csv

    from topnas.platform.sweep.replay import COLUMNS, read_table, variants_path

    curves, _ = read_table(table)
    its = sorted(set().union(*(set(c) for c in curves.values())))
    done = {(v, s) for (v, s), c in curves.items() if all(it in c for it in its)}
    keep = {v for v, _ in done}
    n_all = len({v for v, _ in curves})
    if len(keep) == n_all:
        return table, n_all, n_all
    out = work / table.name
    with open(table, newline="") as f, open(out, "w", newline="") as g:
        w = csv.writer(g)
        w.writerow(COLUMNS)
        for row in csv.DictReader(f):
            if (row["variant_id"], int(row["seed"])) in done:
                w.writerow([row[c] for c in COLUMNS])
    shutil.copy(variants_path(table), out.with_name(variants_path(table).name))
    meta = table.with_name(table.stem + "_meta.json")
    if meta.is_file():
        shutil.copy(meta, out.with_name(meta.name))
    return out, len(keep), n_all


def _default_table() -> Path | None:
    """The replay benchmark's table: the demo's search space and fixture at 960 iterations, 16 rungs.

    Not the demo's ``proxy.fidelity_reference``: that table only needs its last evaluation and is
    tested like the demo's proxy (sliding windows); this one was made for rung schedulers, and the
    search-quality figures in the README were measured on it.
    """
    from topnas.platform.sweep.replay import variants_path

    return DEFAULT_TABLE if DEFAULT_TABLE.is_file() and variants_path(DEFAULT_TABLE).is_file() else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", help="replay table CSV (default: benchmarks/data/replay_4class/, 960 iterations, 16 rungs)")
    ap.add_argument("--synthetic", type=int, metavar="N", help="use a made-up table of N variants instead")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), help="default: all (--quick: all but gp)")
    ap.add_argument("--budget-trials", type=int, help="B in full trainings (default: a third of the table)")
    ap.add_argument("--cap", type=float, default=2.0, help="each method runs until cap x B (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="trials running at once (default 2)")
    ap.add_argument("--population", type=int, default=8, help="NSGA-II population size (default 8)")
    ap.add_argument("--reduction-factor", type=float, default=2.0, help="ASHA / MO-ASHA eta (default 2)")
    ap.add_argument("--rungs", type=int, nargs="+", help="ASHA / MO-ASHA rung iterations (default: the "
                    "scheduler's, grace period x eta^k)")
    ap.add_argument("--predictor", help="latency predictor JSON (default: the shipped one)")
    ap.add_argument("--diagnose", action="store_true", help="also run random + MO-ASHA, each early-stopping "
                    "method with perfect-fidelity rungs (<method>_oracle_rungs), and print the rung-vs-final Spearman")
    ap.add_argument("--quick", action="store_true", help="skip gp (seconds per proposal here)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel processes (default 2)")
    args = ap.parse_args(argv)
    _quiet()
    t0 = time.perf_counter()
    # The runs' ledgers and rungs.jsonl fsync every line: on tmpfs that costs nothing.
    shm = Path("/dev/shm")
    work = Path(tempfile.mkdtemp(prefix="topnas_search_quality_", dir=shm if shm.is_dir() else None))
    if args.synthetic:
        from topnas.platform.sweep import estimates
        from topnas.platform.sweep.replay import write_synthetic_table
        from topnas.search_spaces import SearchSpace
        from topnas.yamlio import read_yaml_mapping

        demo = read_yaml_mapping(ROOT / "experiments" / "sweep_demo_fixture.yaml", "demo sweep")
        table = write_synthetic_table(work / "synthetic.csv", SearchSpace.from_dict(demo["search_space"]),
                                      estimates.load_predictor(args.predictor), args.synthetic, 600, 100)
    else:
        table = Path(args.table) if args.table else _default_table()
        if table is None:
            sys.exit(f"{DEFAULT_TABLE} is missing: give --table or --synthetic N")
    source = table
    table, _, n_in_file = _complete_subset(table, work)
    space, iterations, every = _table_layout(table)
    methods = args.methods or [m for m in METHODS if not (args.quick and m in QUICK_SKIP) and m not in ON_REQUEST]
    if "random" not in methods:
        methods = ["random", *methods]
    if args.diagnose:
        methods += [m for m in ON_REQUEST if m not in methods]
        methods += [m + ORACLE_SUFFIX for m in methods if METHODS[m][1] != "fifo"]
    first = sweep_config(table, space, "random", 0, work, iterations, every, args.predictor, args.population,
                         args.reduction_factor)
    from topnas.platform.sweep.replay import load_replay

    n_variants = len(load_replay(first).curves)
    probe_ref = {"val_mIoU": 0.0, "latency_ms": 1.0}
    _, _, lat = true_front(first, probe_ref)
    reference = {"val_mIoU": 0.0, "latency_ms": 1.1 * max(lat.values())}
    front, front_hv, _ = true_front(first, reference)
    budget = float((args.budget_trials or max(2, n_variants // 3)) * iterations)
    runs: dict[str, list[Run]] = {}
    # random too runs to cap x B: its own seeds are measured against the mean of their values at B
    jobs = [(method, seed) for method in methods for seed in range(args.seeds)]
    common = (table, space, work, iterations, every, args.predictor, args.population, args.reduction_factor,
              args.rungs, reference, args.cap * budget, args.workers)
    if args.jobs <= 1:
        done = [_one((m, s, *common)) for m, s in jobs]
    else:  # spawn, not fork: the driver process already runs Optuna / Ray threads
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(_one, [(m, s, *common) for m, s in jobs]))
    for (method, _), run in zip(jobs, done):
        runs.setdefault(method, []).append(run)
    target = statistics.mean(r.hv_at(budget) for r in runs["random"])
    out: dict[str, Any] = {}
    for method, rs in runs.items():
        reach = [r.first_reach(target) for r in rs]
        fractions = [args.cap if c is None else c / budget for c in reach]
        out[method] = {
            "compute_to_random_final": round(statistics.mean(fractions), 3),
            "compute_to_random_final_se": round(statistics.stdev(fractions) / math.sqrt(len(fractions)), 3)
            if len(fractions) > 1 else math.nan,
            "never": sum(c is None for c in reach),
            "hv_ratio_at_B": round(statistics.mean(r.hv_at(budget) for r in rs) / target, 3) if target else math.nan,
            "true_front_dropped": round(statistics.mean(len(r.stopped & front) for r in rs), 2),
            "true_front_found": round(statistics.mean(len({v for c, v in r.completed if c <= budget} & front)
                                                      for r in rs), 2),
            "trials_started": round(statistics.mean(r.started for r in rs), 1),
        }
    meta = {"table": str(source.relative_to(ROOT) if source.is_relative_to(ROOT) else source),
            "variants": n_variants, "variants_in_file": n_in_file, "iterations": iterations, "eval_interval": every, "seeds": args.seeds,
            "budget_iterations": budget, "cap": args.cap, "workers": args.workers,
            "true_front_size": len(front), "true_front_hv": round(front_hv, 4), "random_final_hv": round(target, 4),
            "elapsed_s": round(time.perf_counter() - t0, 1)}
    if args.diagnose:
        meta["rung_spearman"] = rung_spearman(load_replay(first).curves, iterations)
    if args.json:
        print(json.dumps(out))  # method -> values only; the run's settings go to stderr
        print(json.dumps(meta), file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return
    if n_variants < n_in_file:
        print(f"{n_in_file - n_variants} of the table's {n_in_file} variants are not trained to the full budget "
              "yet: left out")
    print(f"replay table {meta['table']}: {n_variants} variants, {iterations} iterations (eval every {every}); "
          f"true front {len(front)} variants, hypervolume {front_hv:.4g}")
    print(f"budget B = {budget:g} iterations ({budget / iterations:g} full trainings), {args.seeds} seeds, "
          f"{args.workers} workers; random search's final hypervolume {target:.4g}")
    w = max(14, *map(len, out))
    print(f"{'method':{w}s} {'compute_to_random_final (se)':>29s} {'never':>6s} {'HV at B / random':>17s} "
          f"{'front dropped':>14s} {'front found by B':>17s} {'trials':>7s}")
    for method, o in out.items():
        ctr = f"{o['compute_to_random_final']:.3f} ({o['compute_to_random_final_se']:.3f})"
        print(f"{method:{w}s} {ctr:>29s} {o['never']:6d} {o['hv_ratio_at_B']:17.3f} "
              f"{o['true_front_dropped']:14.2f} {o['true_front_found']:17.2f} {o['trials_started']:7.1f}")
    if args.diagnose:
        print("Spearman of the replayed mIoU at each evaluation vs at the full budget (variants of the table): "
              + ", ".join(f"{it}: {rho:.2f}" for it, rho in meta["rung_spearman"].items()))
        print(f"<method>{ORACLE_SUFFIX}: the same method whose rung scheduler sees each variant's full-budget mIoU")
    print(f"({meta['elapsed_s']} s)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
