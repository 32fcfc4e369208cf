"""Replay mode: a sweep whose trials read ``val_mIoU`` per evaluation from a benchmark table.

The searcher, the scheduler, the Tune callback, the ledger and the MLflow layout are the ones a
training sweep uses; only the trial function differs (:func:`run_replay_trial`), so a whole sweep
costs seconds and search methods can be compared on this project's own training curves.

Table (two files with one stem, e.g. ``benchmarks/data/fixture_curves``)::

    <stem>.csv            variant_id,seed,iteration,val_mIoU   (one row per evaluation; more columns ignored)
    <stem>.variants.json  {"variants": {"<variant_id>": <Variant.to_dict()>, ...}, "search_space": {...}}
      or <stem>_variants.jsonl (one Variant JSON per line; benchmarks/make_replay_table.py writes it)

Checked when the sweep config loads (before Ray starts), one error each: the files exist and have
the columns; every variant of the CSV is defined and lies in the sweep's search space; for the seed
replayed (``replay.seed``, default the lowest seed of each variant) every variant has a row at every
evaluation of the proxy (``eval_interval, 2 x eval_interval, ..., iterations``).

Proposals outside the table (or of a variant this sweep already evaluated): the searcher snaps them
to the nearest table variant not evaluated yet (fewest differing search-space dimensions, then the
smallest sum of choice-index differences, then the variant id), tells Optuna the original proposal
FAIL (``topnas.snapped_to``) and enqueues the table variant, so the sampler only ever holds values
measured for its own parameters; the search ends when every table variant was evaluated.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from topnas.errors import ConfigError
from topnas.platform.objectives import TrialStatus

if TYPE_CHECKING:
    from topnas.platform.sweep.sweep_config import SweepConfig
    from topnas.search_spaces import SearchSpace, Variant

__all__ = ["COLUMNS", "ReplayTable", "eval_iterations", "load_replay", "read_table", "run_replay_trial",
           "variants_path", "write_synthetic_table"]

COLUMNS = ("variant_id", "seed", "iteration", "val_mIoU")


def variants_path(table: str | Path) -> Path:
    """The companion file holding the variant definitions of ``<stem>.csv``.

    ``<stem>.variants.json`` (``{"variants": {id: Variant.to_dict()}}``) or, as
    ``benchmarks/make_replay_table.py`` writes it, ``<stem>_variants.jsonl`` (one ``Variant.to_json()``
    per line); the first that exists (the JSON name when neither does).
    """
    p = Path(table)
    jsonl = p.with_name(p.stem + "_variants.jsonl")
    return jsonl if jsonl.is_file() and not p.with_name(p.stem + ".variants.json").is_file() else \
        p.with_name(p.stem + ".variants.json")


def _read_variant_defs(vpath: Path) -> dict[str, Any]:
    if vpath.suffix == ".jsonl":
        lines = [json.loads(line) for line in vpath.read_text().splitlines() if line.strip()]
        return {d.get("id", f"line{i + 1}"): d for i, d in enumerate(lines)}
    data = json.loads(vpath.read_text())
    defs = data.get("variants") if isinstance(data, Mapping) else None
    if not isinstance(defs, Mapping):
        raise ConfigError(f"replay.table ({vpath.name})", str(vpath), 'a JSON object {"variants": {id: variant}}')
    return dict(defs)


def eval_iterations(iterations: int, eval_interval: int | None) -> list[int]:
    """Iterations at which a proxy training evaluates (the last one always does)."""
    every = eval_interval or iterations
    its = list(range(every, iterations + 1, every))
    return its if its and its[-1] == iterations else [*its, iterations]


def read_table(path: str | Path) -> tuple[dict[tuple[str, int], dict[int, float]], dict[str, Variant]]:
    """``({(variant_id, seed): {iteration: val_mIoU}}, {variant_id: Variant})``; ConfigError on bad files."""
    from topnas.search_spaces import Variant

    path = Path(path)
    if not path.is_file():
        raise ConfigError("replay.table", str(path), "an existing CSV file with columns " + ",".join(COLUMNS))
    curves: dict[tuple[str, int], dict[int, float]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError("replay.table", str(path), "a CSV with columns " + ",".join(COLUMNS),
                              hint=f"missing {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                key = (row["variant_id"], int(row["seed"]))
                value = float(row["val_mIoU"])
                it = int(row["iteration"])
            except (TypeError, ValueError):
                raise ConfigError("replay.table", f"{path}:{line}", "numbers in seed, iteration, val_mIoU") from None
            if not math.isfinite(value):
                raise ConfigError("replay.table", f"{path}:{line}", "a finite val_mIoU")
            curves.setdefault(key, {})[it] = value
    if not curves:
        raise ConfigError("replay.table", str(path), "a CSV with at least one row")
    vpath = variants_path(path)
    if not vpath.is_file():
        raise ConfigError("replay.table", str(path), f"a companion {vpath.name} with the variant definitions")
    defs = _read_variant_defs(vpath)
    variants = {vid: Variant.from_dict(d, field=f"{vpath.name}.variants.{vid}") for vid, d in defs.items()}
    undefined = sorted({vid for vid, _ in curves} - set(variants))
    if undefined:
        raise ConfigError("replay.table", str(path), f"variants defined in {vpath.name}",
                          hint=f"{len(undefined)} undefined, e.g. {undefined[:3]}")
    return curves, variants


@dataclass(frozen=True)
class ReplayTable:
    """One seed's curve per variant of the table, restricted to a sweep's evaluations."""

    curves: dict[str, dict[int, float]]  # variant id -> iteration -> val_mIoU
    variants: dict[str, Variant]
    points: dict[str, dict[str, Any]]  # variant id -> search-space point
    dims: tuple[tuple[str, tuple[Any, ...]], ...]  # the space's dimensions, for snapping

    def nearest(self, point: Mapping[str, Any], among: Iterable[str] | None = None) -> str:
        """The table variant (of ``among``, default all) closest to ``point`` (see module docstring)."""
        idx = {k: {v: i for i, v in enumerate(choices)} for k, choices in self.dims}

        def distance(vid: str) -> tuple[int, int, str]:
            other = self.points[vid]
            diff = [abs(idx[k][point[k]] - idx[k][other[k]]) for k, _ in self.dims]
            return sum(d > 0 for d in diff), sum(diff), vid

        return min(self.points if among is None else among, key=distance)


def load_replay(cfg: SweepConfig) -> ReplayTable:
    """The replay table of ``cfg`` checked against its space and proxy evaluations (cached per file version)."""
    assert cfg.replay is not None
    path = Path(cfg.replay.table)
    stamp = tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in (path, variants_path(path)))
    return _load(str(path), stamp, cfg.replay.seed, json.dumps(cfg.space.to_dict(), sort_keys=True, default=str),
                 cfg.proxy.iterations, cfg.proxy.eval_interval)


@lru_cache(maxsize=8)
def _load(path: str, stamp: tuple[int, ...], seed: int | None, space_json: str, iterations: int,
          eval_interval: int | None) -> ReplayTable:
    from topnas.search_spaces import SearchSpace

    space: SearchSpace = SearchSpace.from_dict(json.loads(space_json))
    curves, variants = read_table(path)
    need = eval_iterations(iterations, eval_interval)
    chosen: dict[str, dict[int, float]] = {}
    for vid in sorted({v for v, _ in curves}):
        seeds = sorted(s for v, s in curves if v == vid)
        s = seed if seed is not None else seeds[0]
        if (vid, s) not in curves:
            raise ConfigError("replay.seed", seed, f"a seed every variant has (variant {vid} has {seeds})")
        missing = [it for it in need if it not in curves[(vid, s)]]
        if missing:
            raise ConfigError("replay.table", path, f"rows at iterations {need} for every variant",
                              hint=f"variant {vid} seed {s} misses iteration(s) {missing} (the proxy evaluates "
                                   "there: change proxy.iterations / eval_interval or the table)")
        chosen[vid] = {it: curves[(vid, s)][it] for it in need}
    points = {}
    for vid in chosen:
        point = space.point_of(variants[vid])
        if point is None:
            raise ConfigError("replay.table", path, f"variants of the sweep's search space ({space.name})",
                              hint=f"variant {vid} is not in it")
        points[vid] = point
    return ReplayTable(chosen, {v: variants[v] for v in chosen}, points, tuple(space.parameters().items()))


def run_replay_trial(trial_id: str, cfg: SweepConfig, meta: Mapping[str, Any], point: Mapping[str, Any],
                     variant: Variant, extra: Mapping[str, Any], tracker: Any, predictor_id: str,
                     predictor_provenance: str = "") -> None:
    """The trial function's body in replay mode: report the table's evaluations to Tune, as training would."""
    from ray import tune

    from topnas.platform.sweep.tags import FINAL_ITERATION_TAG, REPLAY_TAG
    from topnas.platform.sweep.mlflow_runs import child_metrics, child_params, child_tags
    from topnas.platform.sweep.trial import run_name_of

    table = load_replay(cfg)
    curve = table.curves.get(variant.id)
    if curve is None:  # the searcher snaps proposals to the table; anything else is a bug
        raise RuntimeError(f"trial {trial_id}: variant {variant.id} is not in the replay table {cfg.replay.table}")
    tags = {**child_tags(cfg.name, trial_id, meta.get("optuna_trial"), variant, TrialStatus.RUNNING), REPLAY_TAG: "true"}
    run_id, reused = tracker.create_child(f"sweep:{cfg.name}:trial:{trial_id}", run_name_of(trial_id, variant.id),
                                          tags, child_params(point, variant, meta, predictor_id, predictor_provenance), child_metrics(meta))
    logged = {int(m.step) for m in tracker.client.get_metric_history(run_id, "val_mIoU")} if reused else set()
    delay = cfg.replay.delay_s if cfg.replay else 0.0
    for it, value in curve.items():
        if it not in logged:
            tracker.log_metrics(run_id, {"val_mIoU": value}, step=it)
        if delay:
            time.sleep(delay)
        tune.report({"val_mIoU": value, "iteration": it, "replayed_table": True, **extra})
    tracker.client.set_tag(run_id, FINAL_ITERATION_TAG, str(max(curve)))  # the status is the callback's


def write_synthetic_table(path: str | Path, space: SearchSpace, predictor: Any, n_variants: int, iterations: int,
                          eval_interval: int, seeds: tuple[int, ...] = (0,), seed: int = 0) -> Path:
    """A made-up table in the replay format (tests, and trying a benchmark before a trained one exists).

    mIoU grows with predicted latency (a trade-off with a real front) plus variant noise, and each
    variant learns at its own rate, so early rungs rank imperfectly, as in real training.
    """
    import random

    rng = random.Random(seed)
    variants: dict[str, Variant] = {}
    for _ in range(50 * n_variants):
        v = space.sample(rng)
        variants.setdefault(v.id, v)
        if len(variants) == n_variants:
            break
    lat = {vid: predictor.predict(v).ms for vid, v in variants.items()}
    lo, hi = math.log(min(lat.values())), math.log(max(lat.values()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for vid in variants:
            x = (math.log(lat[vid]) - lo) / max(hi - lo, 1e-9)
            final, rate = 0.2 + 0.2 * x + rng.gauss(0, 0.03), rng.uniform(1.0, 6.0)
            for s in seeds:
                noise = rng.gauss(0, 0.005) if s != seeds[0] else 0.0
                for it in eval_iterations(iterations, eval_interval):
                    w.writerow([vid, s, it, round((final + noise) * (1 - math.exp(-rate * it / iterations)), 5)])
    variants_path(path).write_text(json.dumps({"search_space": space.to_dict(),
                                               "variants": {k: v.to_dict() for k, v in variants.items()}},
                                              default=str))
    return path
