"""A phone predictor whose relative kernel costs come from real ARM phones, not from this host.

1. Relative costs: ONE kernel model shared by every phone of the public data (both spaces), with a
   level per (space, phone) and each phone's graph convention (``fewshot.fit_device``), fitted by
   alternating non-negative least squares on relative error. Convolutions (dense, grouped,
   depthwise k3/k5), pooling, global pooling, linear, element-wise and layout kernels are priced
   from the phones.
2. Kernels the phone data never contain (attention ``matmul`` and ``softmax``, bilinear ``resize``)
   are priced from the host predictor, converted with the ARM/host ratio of pointwise-convolution
   cost on the same variant (the dense kernel closest to a matmul). This part is NOT phone evidence
   and the predictor says so in its calibration sources.
3. Absolute level: one scale fitted on the published measurements of the target phone (relative
   error); leave-one-published-model-out error and the figure-reading uncertainty widen the
   interval. The kernel-mix ranges for the out-of-range flag cover the phone data and the
   published models.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from topnas.errors import ConfigError
from topnas.platform.latency.arch_table import ArchTable
from topnas.platform.latency.fewshot import ARM_GROUPS, feature_matrix, fit_device
from topnas.platform.latency.kernels import kernels_from_config
from topnas.platform.latency.predictor import LatencyPredictor, featurize, nnls_relative
from topnas.platform.latency.spaces import get_space

__all__ = ["fit_shared", "build_phone_predictor", "HOST_PRICED_GROUPS"]

HOST_PRICED_GROUPS = ("matmul", "softmax", "resize")
ROWS_PER_TABLE = 2000
READING_ERROR = 0.01      # figure readings: about +-1 %
MIX_MARGIN = 0.05         # absolute widening of each group's share range


def _rows(table: ArchTable, n: int, seed: int) -> tuple[tuple[str, ...], np.ndarray]:
    mod = get_space(table.space)
    keep = [i for i, a in enumerate(table.archs) if not mod.is_degenerate(a)]
    pick = np.random.default_rng(seed).permutation(keep)[:n]
    return tuple(table.archs[i] for i in pick), table.latency_ms[pick]


def fit_shared(tables: Sequence[ArchTable], input_hw: int = 32, rows: int = ROWS_PER_TABLE, seed: int = 0,
               iterations: int = 8) -> dict[str, Any]:
    """Shared coefficients (``[intercept, features...]``) and a level per table."""
    blocks = []
    for t in tables:
        prune = fit_device(t, input_hw, seed=seed).prune_dead
        archs, y = _rows(t, rows, seed)
        blocks.append((t, prune, feature_matrix(t.space, archs, input_hw, prune), y))
    levels = np.ones(len(blocks))
    coef = np.zeros(blocks[0][2].shape[1])
    for _ in range(iterations):
        X = np.vstack([F * s for (_, _, F, _), s in zip(blocks, levels)])
        y = np.concatenate([b[3] for b in blocks])
        coef = nnls_relative(X, y, 1e-4)
        for i, (_, _, F, yy) in enumerate(blocks):
            r = (F @ coef) / yy
            levels[i] = float(r.sum() / (r @ r))
        levels /= levels[0]
    per_table = []
    for (t, prune, F, yy), s in zip(blocks, levels):
        p = s * (F @ coef)
        per_table.append({"space": t.space, "device": t.device, "file": t.path.split("/")[-1], "rows": int(len(yy)),
                          "level": float(s), "graph": "prune_dead" if prune else "full_graph",
                          "rmspe": float(100 * np.sqrt(np.mean((p / yy - 1) ** 2)))})
    shares = _shares(np.vstack([b[2] for b in blocks]), coef)
    return {"coef": coef, "tables": per_table, "shares": shares}


def _group_times(F: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Per-row time of each ARM group (columns aligned with ARM_GROUPS)."""
    G = len(ARM_GROUPS)
    return np.column_stack([F[:, 1 + 3 * g:4 + 3 * g] @ coef[1 + 3 * g:4 + 3 * g] for g in range(G)])


def _shares(F: np.ndarray, coef: np.ndarray) -> np.ndarray:
    T = _group_times(F, coef)
    return T / (T.sum(axis=1, keepdims=True) + coef[0])


def _host_group_ms(host: LatencyPredictor, variant: Any, group: str) -> float:
    return host.contributions(variant).get(group, 0.0)


def build_phone_predictor(tables: Sequence[ArchTable], published: Sequence[Any], host: LatencyPredictor,
                          device: dict[str, Any], published_file: str, input_hw: int = 32,
                          seed: int = 0) -> tuple[LatencyPredictor, dict[str, Any]]:
    """The phone predictor and a report dict (see module docstring).

    `published`: :class:`~topnas.platform.latency.measurements.Sample` rows of the target phone, one per
    reading (two readings of one model are two noisy observations).
    """
    if not tables:
        raise ConfigError("arm data", "no tables", "at least one arch,latency_ms table of real phones")
    if len(published) < 2:
        raise ConfigError("published", len(published), ">= 2 measured points of the target phone")
    shared = fit_shared(tables, input_hw, seed=seed)
    coef = shared["coef"].copy()
    names = [g.name for g in ARM_GROUPS]
    # host-priced groups: ARM/host ratio of pointwise-convolution time on the published variants
    ratios = []
    for s in published:
        f = featurize(kernels_from_config(s.variant), ARM_GROUPS)
        arm_c11 = sum(coef[1 + 3 * names.index("conv1x1") + t] * f[3 * names.index("conv1x1") + t] for t in range(3))
        host_c11 = _host_group_ms(host, s.variant, "conv1x1")
        if host_c11 > 0:
            ratios.append(arm_c11 / host_c11)
    ratio = float(np.median(ratios))
    host_names = [g.name for g in host.groups]
    for g in HOST_PRICED_GROUPS:
        gi, hi = names.index(g), host_names.index(g)
        for t in range(3):
            coef[1 + 3 * gi + t] = ratio * host.coef[3 * hi + t]
    coef[0] = 0.0  # a CIFAR network's fixed overhead says nothing about a 512x512 segmentor's

    X = np.array([[1.0] + featurize(kernels_from_config(s.variant), ARM_GROUPS) for s in published])
    y = np.array([s.latency_ms for s in published])
    base = X @ coef

    def scale_of(idx: np.ndarray) -> float:
        r = base[idx] / y[idx]
        return float(r.sum() / (r @ r))

    level = scale_of(np.arange(len(y)))
    models = sorted({(s.variant.id, s.variant.name or "") for s in published})
    loo = []
    for vid, name in models:
        held = np.array([s.variant.id == vid for s in published])
        sc = scale_of(np.where(~held)[0])
        for i in np.where(held)[0]:
            loo.append({"model": name, "input_size": list(published[i].variant.input_size),
                        "measured_ms": float(y[i]), "predicted_ms": float(sc * base[i]),
                        "error_pct": float(100 * (sc * base[i] / y[i] - 1))})
    errs = [abs(r["error_pct"]) for r in loo]
    worst = max(errs) / 100
    log_w = math.sqrt(math.log1p(worst) ** 2 + READING_ERROR ** 2)
    final = coef * level

    pub_shares = _shares(X, final)
    lo = np.minimum(shared["shares"].min(axis=0), pub_shares.min(axis=0))
    hi = np.maximum(shared["shares"].max(axis=0), pub_shares.max(axis=0))
    mix = {n: [float(max(0.0, lo[g] - MIX_MARGIN)), float(min(1.0, hi[g] + MIX_MARGIN))]
           for g, n in enumerate(names) if final[1 + 3 * g:4 + 3 * g].any()}
    sources = [{"device": t["device"], "space": t["space"], "file": t["file"], "runtime": "public phone data",
                "points": t["rows"], "kind": "measured", "role": "relative kernel costs"} for t in shared["tables"]]
    sources.append({"device": device.get("device"), "file": published_file, "runtime": device.get("runtime"),
                    "points": len(published), "kind": "read off published figures (about +-1 %)",
                    "role": "absolute level"})
    sources.append({"device": host.device.get("device"), "file": "host predictor", "runtime": host.device.get("runtime"),
                    "points": host.fit_info.get("n_variants"), "kind": "measured on this host",
                    "role": f"relative cost of {', '.join(HOST_PRICED_GROUPS)} (no phone data), "
                            f"x {ratio * level:.3f} = phone/host pointwise-conv time ratio"})
    calibration = {"sources": sources, "variant_ids": [m[0] for m in models], "input_hw_of_phone_data": input_hw}
    fit_info = {"method": "shared ARM kernel model (alternating NNLS, level per phone) + host-priced attention "
                          "kernels + one level from the published points",
                "n_variants": len(models), "leave_one_out": {"rows": loo, "mape": float(np.mean(errs)),
                                                            "max_ape": float(max(errs)),
                                                            "unit": "leave one published MODEL out"},
                "phone_tables": shared["tables"], "host_ratio": ratio * level, "level": level}
    interval = {"level": 0.9, "log_lo": -log_w, "log_hi": log_w,
                "source": "worst leave-one-published-model-out error combined with the +-1 % reading error"}
    feats = X[:, 1:]
    ranges: dict[str, list[float]] = {}
    pred = LatencyPredictor(ARM_GROUPS, [float(c) for c in final[1:]], float(final[0]), interval, ranges,
                            dict(device), calibration, fit_info, None, _now(), mix)
    report = {"loo": loo, "tables": shared["tables"], "ratio": ratio * level, "mix_ranges": mix,
              "published_features": feats.tolist()}
    return pred, report


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _type_shares(p: LatencyPredictor, variant: Any, total: float) -> dict[str, float]:
    """Share of the predicted time per kernel TYPE (groups of two predictors may be cut differently)."""
    kind = {g.name: g.type for g in p.groups}
    out: dict[str, float] = {}
    for name, ms in p.contributions(variant).items():
        t = kind.get(name, name)
        out[t] = out.get(t, 0.0) + ms / total
    return out


def compare(new: LatencyPredictor, old: LatencyPredictor, variants: Sequence[Any], top: int = 10) -> dict[str, Any]:
    """Rank agreement of two predictors over `variants` and the largest disagreements, with the
    kernel groups whose predicted time differs most (each predictor's share of its own total)."""
    from topnas.platform.latency.accuracy import spearman

    a = np.array([new.predict(v).ms for v in variants])
    b = np.array([old.predict(v).ms for v in variants])
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    gap = np.abs(ra - rb)
    rows = []
    for i in np.argsort(-gap)[:top]:
        v = variants[int(i)]
        sn, so = _type_shares(new, v, a[i]), _type_shares(old, v, b[i])
        diff = sorted(set(sn) | set(so), key=lambda k: -abs(sn.get(k, 0.0) - so.get(k, 0.0)))[:3]
        rows.append({"variant_id": v.id, "new_ms": float(a[i]), "old_ms": float(b[i]), "new_rank": int(ra[i]),
                     "old_rank": int(rb[i]),
                     "kernels": {k: {"new_share": round(sn.get(k, 0.0), 3), "old_share": round(so.get(k, 0.0), 3)}
                                 for k in diff}})
    return {"n": len(variants), "spearman": spearman(a, b), "top_disagreements": rows}


def report_markdown(pred: LatencyPredictor, report: dict[str, Any], command: str) -> str:
    """The predictor's report as markdown: sources, phone fit, published-point errors, comparison."""
    lines = [f"# {pred.device.get('device')} latency predictor ({pred.device.get('runtime')})", "",
             f"Made by `{command}`.", "", "## Calibration sources", "",
             "| device | space / file | points | kind | role |", "|---|---|---|---|---|"]
    for s in pred.calibration["sources"]:
        lines.append(f"| {s['device']} | {s.get('space', '')} {s['file']} | {s['points']} | {s['kind']} | {s['role']} |")
    lines += ["", "## Shared ARM kernel model: fit per phone table", "",
              "| phone | space | rows | graph convention | level | RMSPE % |", "|---|---|---|---|---|---|"]
    for t in report["tables"]:
        lines.append(f"| {t['device']} | {t['space']} | {t['rows']} | {t['graph']} | {t['level']:.3f} | {t['rmspe']:.1f} |")
    loo = pred.fit_info["leave_one_out"]
    lines += ["", "## Published points, leave one published model out", "",
              f"MAPE {loo['mape']:.1f}%, worst {loo['max_ape']:.1f}%. The readings themselves carry about +-1% "
              "(read off figures), and two figures disagree by up to 6% for the same model.", "",
              "| model | input | published ms | predicted ms | error % |", "|---|---|---|---|---|"]
    for r in loo["rows"]:
        lines.append(f"| {r['model']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['measured_ms']:.1f} | "
                     f"{r['predicted_ms']:.1f} | {r['error_pct']:+.1f} |")
    iv = pred.interval
    lines += ["", f"Prediction interval: x{math.exp(iv['log_lo']):.3f} .. x{math.exp(iv['log_hi']):.3f} ({iv['source']}).",
              "", "## What the number does not cover", "",
              f"- Attention kernels ({', '.join(HOST_PRICED_GROUPS)}) never occur in the phone data. They are priced "
              f"from the host predictor times the phone/host ratio of pointwise-convolution time "
              f"({report['ratio']:.3f}, on the published variants); "
              "their share of a default-space variant is small (see the mix ranges), but it is host evidence, not phone "
              "evidence.",
              "- The phone data are CIFAR-size networks (32x32 inputs): kernels at 512x512 have larger working sets; "
              "the published points set the level but only four models at two input sizes.",
              "- One runtime (TNN) on one core of one phone; other cores, governors or runtimes differ by 30% or more.",
              "", "## Kernel-mix ranges (out-of-range flag)", "", "| group | share of predicted time |", "|---|---|"]
    for g, (lo, hi) in pred.mix_ranges.items():
        lines.append(f"| {g} | {lo:.3f} .. {hi:.3f} |")
    cmp = report.get("compare")
    if cmp:
        lines += ["", "## Against the previous (x86-transferred) predictor", "",
                  f"Spearman over {cmp['n']} default-space variants: **{cmp['spearman']:.4f}**. The 10 largest rank "
                  "disagreements and the kernel types whose share of the predicted time differs most "
                  "(new vs old):", "", "| variant | rank new / old | ms new / old | kernels (share new vs old) |",
                  "|---|---|---|---|"]
        for r in cmp["top_disagreements"]:
            ks = "; ".join(f"{k} {v['new_share']:.2f} vs {v['old_share']:.2f}" for k, v in r["kernels"].items())
            lines.append(f"| {r['variant_id']} | {r['new_rank']} / {r['old_rank']} | {r['new_ms']:.1f} / "
                         f"{r['old_ms']:.1f} | {ks} |")
    return "\n".join(lines) + "\n"
