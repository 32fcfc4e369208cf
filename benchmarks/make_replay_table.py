"""Train many variants of a sweep's search space at a long budget and write the replay table.

The table is the benchmark task behind sweep replay and ``benchmarks/search_quality.py``: every
variant trained once (seed = the sweep's seed) with val mIoU at every rung, and a few variants
trained with 3 seeds, so seed noise can be set against the spread between variants
(``benchmarks/proxy_fidelity.py``). Training is the platform's own loop
(:func:`topnas.platform.train.run_loop` with a ``LocalSession``: no Ray, one thread), on the proxy
settings of the sweep YAML (fixture, crop, batch, learning rate); only ``--iterations`` and the
evaluation interval differ from the sweep's proxy.

Outputs, under ``--out`` (``<space>`` is the search space's name):

* ``replay_<space>.csv``: ``variant_id,seed,iteration,val_mIoU,latency_ms,macs,params``, one row per
  evaluation, appended (and flushed) as soon as it is measured;
* ``replay_<space>_variants.jsonl``: one :meth:`Variant.to_json` per line, in training order;
* ``replay_<space>_meta.json``: budget, rungs, seeds, proxy settings, sweep YAML, git commit (and
  ``extensions``: the commands and commits that later added seeds, ``--seeds`` / ``--all-seeds``).

Killing it loses nothing: rows already written stay, every run checkpoints at each evaluation
(under ``--work``) and a restart resumes the unfinished run from its last checkpoint, skipping rows
already in the CSV. Several processes may fill one table at once (same arguments): each claims a
run with a lock file in ``--work`` before training it. Progress goes to stdout and
``<work>/progress.log``.

    nice -n 10 python benchmarks/make_replay_table.py                     # 48 variants + 3 seeds of 6
    python benchmarks/make_replay_table.py --variants 4 --noise-variants 2 --iterations 40 --out /tmp/t
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse
import csv
import json
import logging
import random
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLUMNS = ("variant_id", "seed", "iteration", "val_mIoU", "latency_ms", "macs", "params")


def table_paths(out: Path, space_name: str) -> dict[str, Path]:
    """Where the table of search space ``space_name`` lives under ``out``."""
    stem = f"replay_{space_name}"
    return {"csv": out / f"{stem}.csv", "variants": out / f"{stem}_variants.jsonl", "meta": out / f"{stem}_meta.json"}


def choose_variants(space: Any, n: int, seed: int) -> list[Any]:
    """The space's official presets that lie in it, then distinct random samples (fixed seed) up to ``n``."""
    from topnas.search_spaces.variant import preset_variant
    from topnas.topformer.arch_config import PRESETS

    chosen: dict[str, Any] = {}
    for name in PRESETS:
        for size in space.input_sizes:
            v = preset_variant(name, input_size=tuple(size), num_classes=space.num_classes)
            if space.contains(v) and len(chosen) < n:
                chosen.setdefault(v.id, v)
    rng = random.Random(seed)
    tries = 0
    while len(chosen) < n:
        v = space.sample(rng)
        chosen.setdefault(v.id, v)
        tries += 1
        if tries > 100 * n:
            raise SystemExit(f"--variants: the space has fewer than {n} distinct variants ({len(chosen)} found)")
    return list(chosen.values())


def noise_variants(variants: list[Any], latencies: dict[str, float], k: int) -> list[Any]:
    """``k`` variants spread evenly over the predicted-latency range (seed noise across model sizes)."""
    if k <= 0:
        return []
    ranked = sorted(variants, key=lambda v: (latencies[v.id], v.id))
    if k >= len(ranked):
        return ranked
    idx = sorted({round(i * (len(ranked) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [len(ranked) // 2]
    return [ranked[i] for i in idx]


def read_done(path: Path) -> set[tuple[str, int, int]]:
    """(variant_id, seed, iteration) of the rows already in the CSV."""
    if not path.is_file():
        return set()
    with path.open(newline="") as f:
        return {(r["variant_id"], int(r["seed"]), int(r["iteration"])) for r in csv.DictReader(f)}


class TableWriter:
    """Appends one row per evaluation and flushes it to disk at once (a kill loses nothing written)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.is_file() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("a", newline="")
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(COLUMNS)
            self._flush()

    def _flush(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def write(self, row: Iterable[Any]) -> None:
        self._w.writerow(list(row))
        self._flush()

    def close(self) -> None:
        self._f.close()


def _claim(lock: Path) -> bool:
    """Take the run ``lock`` names unless a live process holds it (several processes may share a table)."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(lock.read_text().strip() or 0)
            os.kill(pid, 0)
            return pid == os.getpid()
        except (ValueError, ProcessLookupError, PermissionError, FileNotFoundError):
            lock.write_text(str(os.getpid()))  # its process is gone: resume its checkpoint
            return True
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "topnas", "benchmarks",
                                "experiments"], capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (a table's meta must read on any clone)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _ensure_fixture(cfg: Any, work: Path) -> str:
    """The dataset folder: the proxy's fixture generated under ``work`` (byte-identical for its seed)."""
    from topnas.platform.train.train_config import FixtureSpec

    spec = dict(cfg.proxy.fixture or {})
    if not spec:
        return cfg.proxy.dataset
    out = work / "fixture"
    FixtureSpec.from_dict(spec, "proxy.fixture").ensure(out)
    return str(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", default=str(ROOT / "experiments" / "sweep_demo_fixture.yaml"),
                    help="sweep YAML: search space and proxy settings (default: the demo sweep)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="sweep-config override, e.g. latency.predictor=path.json (repeatable)")
    ap.add_argument("--variants", type=int, default=48, help="variants trained at the sweep seed")
    ap.add_argument("--noise-variants", type=int, default=6, help="of those, how many get extra seeds")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per noise variant (the sweep seed + the next ones)")
    ap.add_argument("--all-seeds", type=int, default=1,
                    help="seeds of every other variant (the first of the noise variants' seeds)")
    ap.add_argument("--iterations", type=int, default=240, help="the long budget (iterations)")
    ap.add_argument("--rungs", type=int, default=8, help="evaluations per run, every iterations/rungs")
    ap.add_argument("--sample-seed", type=int, default=0, help="seed of the variant sample")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "data"))
    ap.add_argument("--work", default=None, help="checkpoints + fixture (default: <tmp>/topnas_replay_<space>)")
    args = ap.parse_args(argv)
    if args.iterations % args.rungs:
        raise SystemExit(f"--rungs: {args.rungs} does not divide --iterations {args.iterations}")
    if not 1 <= args.noise_variants <= args.variants or args.seeds < 1:
        raise SystemExit("--noise-variants: 1..--variants; --seeds: >= 1")
    if not 1 <= args.all_seeds <= args.seeds:
        raise SystemExit(f"--all-seeds: 1..--seeds ({args.seeds})")

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    from topnas.platform.sweep import load_sweep_config
    from topnas.platform.sweep.estimates import complexity_of, load_predictor, predict
    from topnas.platform.train.loop import LocalSession, TrainJob, run_loop

    every = args.iterations // args.rungs
    from topnas.platform.sweep.fidelity import FIDELITY_KEYS, NO_FIDELITY
    from topnas.platform.train.train_config import parse_override

    # the table the sweep YAML may name as its fidelity table is the one being made here
    sets = {**NO_FIDELITY, **dict(parse_override(o) for o in args.set)}
    cfg0 = load_sweep_config(args.sweep, sets)
    space = cfg0.space
    out = Path(args.out).absolute()
    paths = table_paths(out, space.name)
    work = Path(args.work or Path(tempfile.gettempdir()) / f"topnas_replay_{space.name}").absolute()
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    log_file = (work / "progress.log").open("a")

    def say(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    dataset = _ensure_fixture(cfg0, work)
    cfg = load_sweep_config(args.sweep, {**sets, "proxy.dataset": dataset, "proxy.iterations": args.iterations,
                                         "proxy.eval_interval": every})
    variants = choose_variants(space, args.variants, args.sample_seed)
    predictor = load_predictor(cfg.latency.predictor)
    latency = {v.id: predict(predictor, v).latency_ms for v in variants}
    noisy = noise_variants(variants, latency, args.noise_variants)
    seeds = [cfg.seed + k for k in range(args.seeds)]

    meta = {"space": space.name, "num_classes": space.num_classes, "sweep_yaml": _repo_relative(Path(args.sweep)),
            "iterations": args.iterations, "eval_interval": every,
            "rungs": list(range(every, args.iterations + 1, every)), "seed": cfg.seed, "seeds": seeds,
            "all_seeds": seeds[:args.all_seeds],
            "noise_variants": [v.id for v in noisy], "variants": [v.id for v in variants],
            "sample_seed": args.sample_seed, "threads": args.threads,
            "proxy": {k: v for k, v in cfg.to_dict()["proxy"].items() if k not in ("dataset", *FIDELITY_KEYS)},
            "latency_predictor": cfg.latency.predictor or "shipped default", "command": " ".join(sys.argv),
            "git_commit": _git_commit()}
    if paths["meta"].is_file():
        old = json.loads(paths["meta"].read_text())
        same = ("space", "iterations", "eval_interval", "variants", "noise_variants", "proxy")
        diff = [k for k in same if old.get(k) != meta[k]]
        # more seeds extend a table: its runs stay valid (a table from before --all-seeds had the sweep seed)
        had = {k: old.get(k, [cfg.seed]) for k in ("seeds", "all_seeds")}
        diff += [k for k, seeds_had in had.items() if meta[k][:len(seeds_had)] != seeds_had]
        if diff:
            raise SystemExit(f"{paths['meta']}: an existing table was made with other settings ({', '.join(diff)}); "
                             "choose another --out or delete it")
        meta["git_commit"] = old.get("git_commit", meta["git_commit"])
        meta["command"] = old.get("command", meta["command"])
        meta["extensions"] = old.get("extensions", [])
        if any(meta[k] != seeds_had for k, seeds_had in had.items()):
            meta["extensions"].append({"seeds": meta["seeds"], "all_seeds": meta["all_seeds"],
                                       "command": " ".join(sys.argv), "git_commit": _git_commit()})
    out.mkdir(parents=True, exist_ok=True)
    paths["meta"].write_text(json.dumps(meta, indent=2) + "\n")
    paths["variants"].write_text("".join(v.to_json() + "\n" for v in variants))

    # the noise variants at every seed first, then the rest at the sweep seed (and --all-seeds more)
    jobs = [(v, s) for v in noisy for s in seeds] + [(v, s) for s in meta["all_seeds"] for v in variants
                                                     if v.id not in {x.id for x in noisy}]
    done = read_done(paths["csv"])
    writer = TableWriter(paths["csv"])
    complexity: dict[str, dict[str, int]] = {}
    t_start, trained = time.perf_counter(), 0
    say(f"{len(jobs)} runs of {args.iterations} iterations (rungs every {every}) -> {paths['csv']}")
    for n, (variant, seed) in enumerate(jobs, 1):
        done |= read_done(paths["csv"])  # another process may have finished it meanwhile
        if (variant.id, seed, args.iterations) in done or not _claim(work / f"{variant.id}_s{seed}.lock"):
            continue
        if variant.id not in complexity:
            complexity[variant.id] = complexity_of(variant)
        c = complexity[variant.id]
        run_dir = work / f"{variant.id}_s{seed}"
        tc = cfg.train_config(variant, f"replay_{variant.id}_s{seed}")
        tc = replace(tc, runtime=replace(tc.runtime, seed=seed, log_interval=args.iterations,
                                         checkpoint_interval=every))

        class RowSession(LocalSession):
            def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
                it = int(metrics["iteration"])
                if "val_mIoU" in metrics and (variant.id, seed, it) not in done:
                    writer.write([variant.id, seed, it, f"{metrics['val_mIoU']:.6f}", f"{latency[variant.id]:.4f}",
                                  c["macs"], c["params"]])
                    done.add((variant.id, seed, it))
                super().report(metrics, checkpoint_dir)
                for old in sorted(self.directory.glob("checkpoint_*"))[:-1]:
                    shutil.rmtree(old, ignore_errors=True)

        t0 = time.perf_counter()
        session = RowSession(run_dir)
        run_loop(tc, TrainJob(tc.name, str(run_dir)), session)
        shutil.rmtree(run_dir, ignore_errors=True)
        (work / f"{variant.id}_s{seed}.lock").unlink(missing_ok=True)
        trained += 1
        dt = time.perf_counter() - t0
        final = session.reports[-1].get("val_mIoU", float("nan")) if session.reports else float("nan")
        rate = (time.perf_counter() - t_start) / trained
        left = sum(1 for v, s in jobs[n:] if (v.id, s, args.iterations) not in done)
        say(f"[{n}/{len(jobs)}] {variant.id} seed {seed}: mIoU {final:.4f} at {args.iterations} "
            f"({latency[variant.id]:.1f} ms, {dt:.0f} s); ~{left * rate / 60:.0f} min left")
    writer.close()
    say(f"done: {len(read_done(paths['csv']))} rows in {paths['csv']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
