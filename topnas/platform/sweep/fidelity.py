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

The proxy rung is a rung of the table's long runs (what ASHA-style schedulers and replay see): the
learning-rate schedule there spans the long budget, not the proxy's own ``iterations``.

A sweep YAML that sets ``proxy.fidelity: <table.csv>`` gets these numbers measured at
``proxy.iterations`` when its config loads (one error if the table does not fit the sweep) and
logged on its MLflow parent run (:func:`fidelity_params`, :func:`fidelity_metrics`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from topnas.errors import ConfigError

if TYPE_CHECKING:
    from topnas.platform.sweep.sweep_config import SweepConfig
    from topnas.search_spaces import SearchSpace

__all__ = ["Fidelity", "fidelity_metrics", "fidelity_of", "fidelity_params", "measure_fidelity", "table_meta"]

FIELD = "proxy.fidelity"
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for people (the demo prints it)."""
        return (f"proxy fidelity at {self.proxy_rung} iterations ({self.variants} variants, {self.noise_variants} x "
                f"{self.seeds} seeds): spread between variants {self.spread:.4f} = {self.spread_to_noise:.1f}x seed "
                f"noise {self.seed_noise:.4f}; Spearman vs {self.longest_rung} iterations {self.spearman:.2f}; "
                f"{self.tied_at_mode} variants tied at one mIoU")


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def measure_fidelity(table: str | Path, proxy_rung: int | None = None, space: SearchSpace | None = None,
                     field: str = FIELD) -> Fidelity:
    """Fidelity of ``proxy_rung`` (default: the table's middle rung) against the table's longest rung.

    Only finished runs count (those evaluated at the longest rung), so a table still being written
    can be read.

    ``space``: every variant of the table must lie in it (else ConfigError naming ``field``).
    """
    from topnas.platform.sweep.replay import read_table

    path = Path(table)
    try:
        curves, variants = read_table(path)
    except ConfigError as exc:
        raise ConfigError(field, exc.value, exc.allowed, hint=exc.hint) from None
    longest = max(max(c) for c in curves.values())
    curves = {k: c for k, c in curves.items() if longest in c}  # finished runs (a table still being made)
    rungs = sorted(set.intersection(*(set(c) for c in curves.values())))
    rung = rungs[len(rungs) // 2 - 1] if proxy_rung is None else int(proxy_rung)
    if rung not in rungs:
        raise ConfigError(field, str(path), f"a table evaluated at iteration {rung} (proxy.iterations)",
                          hint=f"every run of this table has rows at {rungs}")
    if space is not None:
        outside = sorted(vid for vid in {v for v, _ in curves} if not space.contains(variants[vid]))
        if outside:
            raise ConfigError(field, str(path), f"a table of the sweep's search space ({space.name})",
                              hint=f"{len(outside)} of its variants are not in it, e.g. {outside[:2]}")
    at_proxy: dict[str, list[float]] = {}
    at_long: dict[str, list[float]] = {}
    for (vid, _seed), curve in sorted(curves.items()):
        at_proxy.setdefault(vid, []).append(curve[rung])
        at_long.setdefault(vid, []).append(curve[longest])
    noisy = [np.asarray(v) for v in at_proxy.values() if len(v) >= 2]
    if not noisy:
        raise ConfigError(field, str(path), "a table with >= 2 seeds of at least one variant (seed noise)")
    ids = sorted(at_proxy)
    proxy_means = np.array([np.mean(at_proxy[v]) for v in ids])
    long_means = np.array([np.mean(at_long[v]) for v in ids])
    noise = float(np.mean([_std(v) for v in noisy]))
    spread = _std(proxy_means)
    _, counts = np.unique(np.round(proxy_means, 4), return_counts=True)
    return Fidelity(
        table=str(path), proxy_rung=rung, longest_rung=longest, variants=len(ids), noise_variants=len(noisy),
        seeds=max(len(v) for v in noisy), seed_noise=noise, spread=spread,
        spread_to_noise=spread / noise if noise > 0 else float("inf"),
        spearman=_spearman(proxy_means, long_means), tied_at_mode=int(counts.max()),
        mean_mIoU=float(proxy_means.mean()),
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


def fidelity_of(cfg: SweepConfig) -> Fidelity | None:
    """The fidelity of ``cfg``'s proxy from the table its YAML names (None when it names none).

    Checked: the table's variants lie in the sweep's space, it has a rung at ``proxy.iterations``,
    and, when the table records its settings, it was trained with this sweep's proxy settings.
    """
    table = getattr(cfg.proxy, "fidelity", None)
    if not table:
        return None
    meta = table_meta(table)
    if meta is not None:
        theirs: Mapping[str, Any] = meta.get("proxy") or {}
        ours = cfg.to_dict()["proxy"]
        differ = [k for k in _SAME_PROXY if k in theirs and _norm(theirs[k]) != _norm(ours.get(k))]
        if meta.get("space") not in (None, cfg.space.name):
            raise ConfigError(FIELD, str(table), f"a table of search space {cfg.space.name!r}",
                              hint=f"it was made for {meta.get('space')!r}")
        if differ:
            raise ConfigError(FIELD, str(table), "a table trained with this sweep's proxy settings",
                              hint=f"proxy.{', proxy.'.join(differ)} differ from the table's")
    return measure_fidelity(table, cfg.proxy.iterations, cfg.space)


def _norm(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def fidelity_params(f: Fidelity) -> dict[str, str]:
    """MLflow params of the sweep's parent run."""
    return {"proxy.fidelity.table": Path(f.table).name, "proxy.fidelity.proxy_rung": str(f.proxy_rung),
            "proxy.fidelity.longest_rung": str(f.longest_rung), "proxy.fidelity.variants": str(f.variants),
            "proxy.fidelity.noise_variants": str(f.noise_variants), "proxy.fidelity.seeds": str(f.seeds)}


def fidelity_metrics(f: Fidelity) -> dict[str, float]:
    """MLflow metrics of the sweep's parent run (non-finite values left out)."""
    values = {"proxy_seed_noise": f.seed_noise, "proxy_spread": f.spread, "proxy_spread_to_noise": f.spread_to_noise,
              "proxy_spearman": f.spearman, "proxy_tied_at_mode": float(f.tied_at_mode)}
    return {k: float(v) for k, v in values.items() if math.isfinite(v)}
