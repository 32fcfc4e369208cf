"""How much a proxy budget can be trusted: seed noise vs spread between variants, and rank fidelity.

A sweep ranks variants by their mIoU after a short proxy training. That ranking means something
only if (a) the differences between variants are larger than what changing the training seed does
to one variant, and (b) the proxy ranks variants like a longer training does. Both are measured on
a replay table (``benchmarks/make_replay_table.py``: many variants with val mIoU at every rung of a
long budget, a few of them trained with several seeds):

* ``seed_noise``: for each variant with >= 2 seeds, the standard deviation over its seeds at the
  proxy rung; the mean over those variants;
* ``spread``: the standard deviation, over all variants, of each variant's mean over its seeds;
* ``spread_to_noise`` = spread / seed_noise (the demo proxy's target is >= 3);
* ``spearman``: rank correlation of the proxy-rung mIoU against the longest-budget mIoU (per-variant
  means, average ranks for ties);
* ``tied_at_mode``: how many variants share the most common proxy mIoU (4 decimals); a degenerate
  proxy leaves many at the background-only prediction.

The mean of per-variant standard deviations is low for variants with 2 seeds (for normal noise 0.8 of the
true noise), and a spread of seed means still holds part of the seed noise, so both flatter a
proxy. A one-way random-effects analysis of variance gives the same two quantities without either bias:

* ``seed_noise_pooled``: the square root of the pooled within-variant variance (every variant
  with >= 2 seeds, weighted by its degrees of freedom);
* ``spread_net``: the spread between variants with the seed noise of their means removed,
  ``sqrt(max(0, spread**2 - pooled_variance * mean(1 / seeds of a variant)))``;
* ``net_ratio`` = spread_net / seed_noise_pooled, and ``architecture_share`` = the part of one trial's
  score variance that the architecture explains, ``spread_net**2 / (spread_net**2 + pooled_variance)``
  (an intraclass correlation: 0.9 at a net ratio of 3, 0.5 at 1).

``seeds_per_trial`` k > 1 measures a proxy whose score is the mean of k seeds (less noise for k
times the training): the table's seeds of a variant are taken in order in groups of k; the seed
noise is the std of the group means of variants with >= 2 groups, and a variant's score is the mean
of its whole groups (a variant with fewer than k seeds is left out).

Two kinds of table answer this, and ``exact`` says which one was read:

* a long-budget table (the replay table): the proxy rung is an evaluation inside longer runs (what
  ASHA-style schedulers and replay see), whose learning-rate schedule has not decayed there, so it is
  an approximation of the proxy (``exact`` False);
* a table of runs that end at the proxy budget (``make_replay_table.py --iterations <proxy>``): the
  proxy exactly as a sweep trains it (``exact`` True). Its own longest rung is the proxy, so the
  Spearman is taken against a ``reference`` table of the same variants at a longer budget (the
  replay table), over the variants both hold.

A sweep YAML that sets ``proxy.fidelity: <table.csv>`` (and optionally ``proxy.fidelity_reference``)
gets these numbers measured at ``proxy.iterations`` when its config loads (one error if a table does
not fit the sweep) and logged on its MLflow parent run (:func:`fidelity_params`, :func:`fidelity_metrics`).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from topnas.errors import ConfigError

if TYPE_CHECKING:
    from topnas.platform.sweep.sweep_config import SweepConfig
    from topnas.search_spaces import SearchSpace

__all__ = ["FIDELITY_KEYS", "NO_FIDELITY", "Fidelity", "fidelity_metrics", "fidelity_of", "fidelity_params",
           "front_resolution", "load_fidelity", "measure_fidelity", "score_statistics", "table_meta"]

log = logging.getLogger(__name__)

FIELD = "proxy.fidelity"
REFERENCE_FIELD = "proxy.fidelity_reference"
# the proxy keys naming tables (paths relative to the sweep YAML); a copy of a sweep elsewhere drops them
FIDELITY_KEYS = ("fidelity", "fidelity_reference")
NO_FIDELITY = {f"proxy.{k}": None for k in FIDELITY_KEYS}  # overrides for a sweep that measures none
# proxy settings that must match between the table's training and the sweep's (the rest is budget)
_SAME_PROXY = ("fixture", "crop_size", "samples_per_gpu", "val_max_samples", "train")


@dataclass(frozen=True)
class Fidelity:
    table: str
    proxy_rung: int
    longest_rung: int
    variants: int  # variants with a value at both rungs
    noise_variants: int  # variants with >= 2 seeds at the proxy rung
    seeds: int  # most seeds of one variant
    seed_noise: float
    spread: float
    spread_to_noise: float
    spearman: float
    tied_at_mode: int
    mean_mIoU: float
    exact: bool = False  # the table's runs end at the proxy budget (see module docstring)
    reference: str | None = None  # the longer-budget table the Spearman is taken against
    reference_variants: int = 0  # variants of the table the reference also holds (the Spearman's sample)
    seeds_per_trial: int = 1  # a variant's score is the mean of this many seeds
    min_seeds: int = 0  # fewest seeds of a variant counted in the noise (0: unknown)
    seed_noise_pooled: float = math.nan  # variance components (module docstring)
    spread_net: float = math.nan
    net_ratio: float = math.nan
    architecture_share: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def seed_range(self) -> str:
        """"3" or "2-6": how many seeds the variants counted in the noise have."""
        return f"{self.min_seeds}-{self.seeds}" if 0 < self.min_seeds < self.seeds else str(self.seeds)

    def summary(self) -> str:
        """One line for people (the demo prints it)."""
        kind = "runs ending there" if self.exact else f"a rung of {self.longest_rung}-iteration runs"
        partial = self.reference and self.reference_variants != self.variants
        shared = f" ({self.reference_variants} variants in both tables)" if partial else ""
        score = f"; score = mean of {self.seeds_per_trial} seeds" if self.seeds_per_trial > 1 else ""
        return (f"proxy fidelity at {self.proxy_rung} iterations ({kind}; {self.variants} variants, "
                f"{self.noise_variants} x {self.seed_range()} seeds{score}): spread between variants {self.spread:.4f} = "
                f"{self.spread_to_noise:.1f}x seed noise {self.seed_noise:.4f}; Spearman vs {self.longest_rung} "
                f"iterations {self.spearman:.2f}{shared}; {self.tied_at_mode} variants tied at one mIoU")

    def components(self) -> str:
        """The same spread and noise without the biases of small seed counts (module docstring)."""
        return (f"without the seed noise in the means: spread {self.spread_net:.4f} = {self.net_ratio:.1f}x pooled "
                f"seed noise {self.seed_noise_pooled:.4f}; the architecture explains {self.architecture_share:.0%} "
                "of a trial's score variance")


def load_fidelity(path: str | Path) -> Fidelity | None:
    """The fidelity a sweep recorded when it started (its folder's ``proxy_fidelity.json``), or None.

    A file this version cannot read (damaged, or written by a version with other fields) is None with
    a warning: it only annotates fronts, and must not stop them being shown.
    """
    path = Path(path)
    if not path.is_file():
        return None
    known = set(Fidelity.__dataclass_fields__)
    try:
        data = json.loads(path.read_text())
        return Fidelity(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def front_resolution(values: Sequence[float], seed_noise: float) -> str | None:
    """One line: how far apart the front's mIoU values lie, in units of the proxy's seed noise.

    A front whose members differ by less than one trial's seed noise has no measured mIoU order:
    its latency order is then the only one the sweep resolved. None for fewer than two members or
    no finite noise.
    """
    vals = [float(v) for v in values if math.isfinite(float(v))]
    if len(vals) < 2 or not (math.isfinite(seed_noise) and seed_noise > 0):
        return None
    span = max(vals) - min(vals)
    line = (f"the front's {len(vals)} members span {span:.4f} mIoU = {span / seed_noise:.1f}x the proxy's seed noise "
            f"{seed_noise:.4f}")
    if span < seed_noise:
        line += ": their mIoU order is within the noise, so only their latency order is measured"
    return line


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


def score_statistics(scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Seed noise and spread of per-variant proxy scores, plain and as variance components.

    ``scores``: each variant's scores (one per seed, or per group of seeds); at least one variant
    needs two. Keys: ``seed_noise``, ``spread``, ``spread_to_noise``, ``seed_noise_pooled``,
    ``spread_net``, ``net_ratio``, ``architecture_share`` (module docstring).
    """
    groups = [np.asarray(g, dtype=float) for g in scores.values()]
    means = np.array([g.mean() for g in groups])
    noise = float(np.mean([_std(g) for g in groups if len(g) >= 2]))
    spread = _std(means)
    # one-way random effects: pooled within-variant variance; the spread of the means less their noise
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / sum(len(g) - 1 for g in groups)
    between = float(np.var(means, ddof=1)) - within * float(np.mean([1.0 / len(g) for g in groups]))
    pooled, net = math.sqrt(within), math.sqrt(max(between, 0.0))
    return {"seed_noise": noise, "spread": spread, "spread_to_noise": spread / noise if noise > 0 else float("inf"),
            "seed_noise_pooled": pooled, "spread_net": net, "net_ratio": net / pooled if pooled > 0 else float("inf"),
            "architecture_share": net ** 2 / (net ** 2 + pooled ** 2) if net > 0 or pooled > 0 else float("nan")}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _per_variant(path: Path, field: str, space: SearchSpace | None) -> tuple[dict, int]:
    """``({variant: {rung: [mIoU per seed]}}, longest rung)`` of a table's finished runs."""
    from topnas.platform.sweep.replay import read_table

    try:
        curves, variants = read_table(path)
    except ConfigError as exc:
        raise ConfigError(field, exc.value, exc.allowed, hint=exc.hint) from None
    longest = max(max(c) for c in curves.values())
    curves = {k: c for k, c in curves.items() if longest in c}  # finished runs (a table still being made)
    if space is not None:
        outside = sorted(vid for vid in {v for v, _ in curves} if not space.contains(variants[vid]))
        if outside:
            raise ConfigError(field, str(path), f"a table of the sweep's search space ({space.name})",
                              hint=f"{len(outside)} of its variants are not in it, e.g. {outside[:2]}")
        # contains() compares architectures; the regularization the space trains them with must match too
        ours = {"drop_path_rate": space.drop_path_rate, "dropout_ratio": space.dropout_ratio}
        for vid in sorted({v for v, _ in curves}):
            theirs = {k: getattr(variants[vid].model, k) for k in ours}
            if theirs != ours:
                raise ConfigError(field, str(path), "a table trained with the search space's "
                                  + " and ".join(f"{k} {v}" for k, v in ours.items()),
                                  hint=f"variant {vid} was trained with "
                                  + ", ".join(f"{k} {v}" for k, v in theirs.items()))
    out: dict[str, dict[int, list[float]]] = {}
    for (vid, _seed), curve in sorted(curves.items()):
        for it, value in curve.items():
            out.setdefault(vid, {}).setdefault(it, []).append(value)
    return out, longest


def measure_fidelity(table: str | Path, proxy_rung: int | None = None, space: SearchSpace | None = None,
                     field: str = FIELD, reference: str | Path | None = None, seeds_per_trial: int = 1) -> Fidelity:
    """Fidelity of ``proxy_rung`` (default: the table's middle rung) against the longest budget.

    The Spearman is taken against the table's own longest rung, or with ``reference`` against that
    table's longest rung (the variants both hold); a proxy rung that is the table's longest with no
    reference has nothing to be ranked against (Spearman NaN). Only finished runs count (those
    evaluated at their table's longest rung), so a table still being written can be read.

    ``space``: every variant of the tables must lie in it (else ConfigError naming the field).
    ``seeds_per_trial``: see the module docstring.
    """
    k = int(seeds_per_trial)
    if k < 1:
        raise ConfigError("seeds_per_trial", seeds_per_trial, "an integer >= 1")
    path = Path(table)
    per_variant, longest = _per_variant(path, field, space)
    rungs = sorted(set.intersection(*(set(c) for c in per_variant.values())))
    rung = rungs[len(rungs) // 2 - 1] if proxy_rung is None else int(proxy_rung)
    if rung not in rungs:
        raise ConfigError(field, str(path), f"a table evaluated at iteration {rung} (proxy.iterations)",
                          hint=f"every run of this table has rows at {rungs}")
    # a variant's scores: the means of its whole groups of k seeds (k = 1: its seeds)
    at_proxy = {vid: np.asarray(values[rung][:len(values[rung]) // k * k]).reshape(-1, k).mean(axis=1)
                for vid, values in per_variant.items() if len(values[rung]) >= k}
    noisy = [g for g in at_proxy.values() if len(g) >= 2]
    if not noisy:
        most = max(len(values[rung]) for values in per_variant.values())
        raise ConfigError(field, str(path), f"a table with >= {2 * k} seeds of at least one variant (seed noise"
                          + (f" of a mean of {k} seeds)" if k > 1 else ")"),
                          hint=f"its variants have at most {most} seeds")
    if reference is not None:
        ref_rows, ref_longest = _per_variant(Path(reference), REFERENCE_FIELD, space)
        if ref_longest <= rung:
            raise ConfigError(REFERENCE_FIELD, str(reference), f"a table trained longer than {rung} iterations",
                              hint=f"its longest rung is {ref_longest}")
        at_long = {vid: values[ref_longest] for vid, values in ref_rows.items()}
    else:
        ref_longest = longest
        at_long = {vid: values[longest] for vid, values in per_variant.items()} if rung < longest else {}
    ids = sorted(at_proxy)
    shared = [v for v in ids if v in at_long]
    if reference is not None and len(shared) < 3:
        raise ConfigError(REFERENCE_FIELD, str(reference), f"a table holding the variants of {path.name}",
                          hint=f"it holds {len(shared)} of its {len(ids)} variants")
    proxy_means = np.array([np.mean(at_proxy[v]) for v in ids])
    stats = score_statistics({v: at_proxy[v] for v in ids})
    _, counts = np.unique(np.round(proxy_means, 4), return_counts=True)
    spearman = _spearman(np.array([np.mean(at_proxy[v]) for v in shared]),
                         np.array([np.mean(at_long[v]) for v in shared]))
    return Fidelity(
        table=str(path), proxy_rung=rung, longest_rung=ref_longest, variants=len(ids), noise_variants=len(noisy),
        seeds=max(len(per_variant[v][rung]) for v in at_proxy), spearman=spearman,
        tied_at_mode=int(counts.max()), mean_mIoU=float(proxy_means.mean()),
        exact=rung == longest, reference=str(reference) if reference is not None else None,
        reference_variants=len(shared) if reference is not None else 0, seeds_per_trial=k,
        min_seeds=min(len(per_variant[v][rung]) for v, g in at_proxy.items() if len(g) >= 2), **stats,
    )


def table_meta(table: str | Path) -> dict[str, Any] | None:
    """``<stem>_meta.json`` next to the table (written by ``benchmarks/make_replay_table.py``), if any."""
    p = Path(table)
    meta = p.with_name(p.stem + "_meta.json")
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
    except ValueError:
        raise ConfigError(FIELD, str(meta), "a JSON file (the table's settings)") from None
    return data if isinstance(data, dict) else None


def _check_meta(table: str | Path, cfg: SweepConfig, field: str) -> None:
    """A table that records its settings must be of this sweep's space and proxy settings."""
    meta = table_meta(table)
    if meta is None:
        return
    theirs: Mapping[str, Any] = meta.get("proxy") or {}
    ours = cfg.to_dict()["proxy"]
    differ = [k for k in _SAME_PROXY if k in theirs and _norm(theirs[k]) != _norm(ours.get(k))]
    if meta.get("space") not in (None, cfg.space.name):
        raise ConfigError(field, str(table), f"a table of search space {cfg.space.name!r}",
                          hint=f"it was made for {meta.get('space')!r}")
    if differ:
        raise ConfigError(field, str(table), "a table trained with this sweep's proxy settings",
                          hint=f"proxy.{', proxy.'.join(differ)} differ from the table's")


def fidelity_of(cfg: SweepConfig) -> Fidelity | None:
    """The fidelity of ``cfg``'s proxy from the table its YAML names (None when it names none).

    Checked for ``proxy.fidelity`` and ``proxy.fidelity_reference``: the table's variants lie in the
    sweep's space, and, when the table records its settings, it was trained with this sweep's proxy
    settings; the fidelity table has a rung at ``proxy.iterations``, the reference a longer one.
    A proxy of ``proxy.seeds`` k > 1 is measured as the mean of k seeds (``seeds_per_trial``).
    """
    table = getattr(cfg.proxy, "fidelity", None)
    reference = getattr(cfg.proxy, "fidelity_reference", None)
    if not table:
        if reference:
            raise ConfigError(REFERENCE_FIELD, reference, "null unless proxy.fidelity names a table",
                              hint="the reference only ranks the variants of a fidelity table")
        return None
    _check_meta(table, cfg, FIELD)
    if reference:
        _check_meta(reference, cfg, REFERENCE_FIELD)
    return measure_fidelity(table, cfg.proxy.iterations, cfg.space, reference=reference or None,
                            seeds_per_trial=cfg.proxy.seeds)


def _norm(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def fidelity_params(f: Fidelity) -> dict[str, str]:
    """MLflow params of the sweep's parent run."""
    return {"proxy.fidelity.table": Path(f.table).name, "proxy.fidelity.proxy_rung": str(f.proxy_rung),
            "proxy.fidelity.longest_rung": str(f.longest_rung), "proxy.fidelity.variants": str(f.variants),
            "proxy.fidelity.noise_variants": str(f.noise_variants), "proxy.fidelity.seeds": str(f.seeds),
            "proxy.fidelity.exact": str(f.exact).lower(), "proxy.fidelity.seeds_per_trial": str(f.seeds_per_trial),
            "proxy.fidelity.reference": Path(f.reference).name if f.reference else "none"}


def fidelity_metrics(f: Fidelity) -> dict[str, float]:
    """MLflow metrics of the sweep's parent run (non-finite values left out)."""
    values = {"proxy_seed_noise": f.seed_noise, "proxy_spread": f.spread, "proxy_spread_to_noise": f.spread_to_noise,
              "proxy_spearman": f.spearman, "proxy_tied_at_mode": float(f.tied_at_mode),
              "proxy_seed_noise_pooled": f.seed_noise_pooled, "proxy_spread_net": f.spread_net,
              "proxy_net_ratio": f.net_ratio, "proxy_architecture_share": f.architecture_share}
    return {k: float(v) for k, v in values.items() if math.isfinite(v)}
