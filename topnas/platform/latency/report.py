"""How good is a latency predictor? Held-out accuracy against a FLOPs-only baseline.

:func:`evaluate` splits a calibration set by VARIANT (every pass of a held-out variant is held out),
fits the predictor and the FLOPs baseline (``latency = a * MACs + b``) on the training part only,
and reports on the held-out part: the share within +-5% and +-10%, RMSPE, Spearman and Kendall rank
correlation, interval coverage and out-of-range count, plus k-fold cross-validation over the whole
set (every variant predicted by a model that never saw it) as a less split-dependent estimate.
:func:`write_report` adds a predicted-vs-measured PNG and logs everything to MLflow when a tracking
URI is set (``--tracking-uri`` or ``$MLFLOW_TRACKING_URI``).

The bar of the latency issue: held-out >= 90% within +-10% and Spearman >= 0.95, and better than
the FLOPs baseline on both.
"""
from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from topnas.errors import ConfigError
from topnas.platform.latency.accuracy import accuracy
from topnas.platform.latency.predictor import DEFAULT_GROUPS, LatencyPredictor, flops_baseline

__all__ = ["BAR", "split_holdout", "evaluate", "plot_predicted_vs_measured", "write_report"]

log = logging.getLogger(__name__)
BAR = {"within_10": 0.90, "spearman": 0.95}


def split_holdout(samples: Sequence[Any], fraction: float = 0.25, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """Random split by variant: (train, held-out). The held-out part is never used in fitting."""
    if not 0 < fraction < 1:
        raise ConfigError("holdout", fraction, "a fraction in (0, 1)")
    idx = list(range(len(samples)))
    random.Random(seed).shuffle(idx)
    n_test = max(1, round(fraction * len(samples)))
    test = set(idx[:n_test])
    return [s for i, s in enumerate(samples) if i not in test], [s for i, s in enumerate(samples) if i in test]


def _predict_all(p: LatencyPredictor, samples: Sequence[Any]) -> list[Any]:
    return [p.predict(s.variant) for s in samples]


def evaluate(
    samples: Sequence[Any],
    device: Mapping[str, Any],
    *,
    holdout: float = 0.25,
    seed: int = 0,
    ridge: float = 1e-3,
    folds: int = 5,
    groups=DEFAULT_GROUPS,
) -> dict[str, Any]:
    """Held-out and k-fold accuracy of the predictor and of the FLOPs baseline (see module doc)."""
    train, test = split_holdout(samples, holdout, seed)
    p = LatencyPredictor.fit(train, device, ridge=ridge, groups=groups)
    b = flops_baseline(train)
    meas = [s.latency_ms for s in test]
    preds = _predict_all(p, test)
    pm = [q.ms for q in preds]
    bm = [b.predict_ms(s.variant) for s in test]
    held = {
        "predictor": accuracy(pm, meas),
        "flops_baseline": accuracy(bm, meas),
        "interval_coverage": sum(q.lo <= m <= q.hi for q, m in zip(preds, meas)) / len(meas),
        "interval_level": p.interval["level"],
        "out_of_range": sum(q.out_of_range for q in preds),
    }
    held["beats_baseline"] = {
        "within_10": held["predictor"]["within_10"] > held["flops_baseline"]["within_10"],
        "spearman": held["predictor"]["spearman"] > held["flops_baseline"]["spearman"],
    }
    held["bar_met"] = bool(held["predictor"]["within_10"] >= BAR["within_10"]
                           and held["predictor"]["spearman"] >= BAR["spearman"]
                           and all(held["beats_baseline"].values()))
    rows = [{"variant_id": s.variant.id, "name": s.variant.name or "", "input_size": "x".join(map(str, s.variant.input_size)),
             "measured_ms": s.latency_ms, "predicted_ms": q.ms, "lo_ms": q.lo, "hi_ms": q.hi,
             "out_of_range": q.out_of_range, "flops_baseline_ms": f}
            for s, q, f in zip(test, preds, bm)]

    # k-fold over everything: each variant predicted by a model that never saw it
    cv_p, cv_b, cv_m = [], [], []
    idx = list(range(len(samples)))
    random.Random(seed + 1).shuffle(idx)
    for k in range(folds):
        te = set(idx[k::folds])
        tr = [s for i, s in enumerate(samples) if i not in te]
        ts = [s for i, s in enumerate(samples) if i in te]
        pk = LatencyPredictor.fit(tr, device, ridge=ridge, groups=groups, loo=False)
        bk = flops_baseline(tr)
        cv_p += [pk.predict(s.variant).ms for s in ts]
        cv_b += [bk.predict_ms(s.variant) for s in ts]
        cv_m += [s.latency_ms for s in ts]
    return {
        "n_variants": len(samples), "n_train": len(train), "n_heldout": len(test), "seed": seed,
        "holdout_fraction": holdout, "ridge": ridge, "device": dict(device),
        "heldout": held,
        "kfold": {"folds": folds, "predictor": accuracy(cv_p, cv_m), "flops_baseline": accuracy(cv_b, cv_m)},
        "heldout_rows": rows,
        "predictor": p.to_dict(),
        "flops_baseline_fit": {"ms_per_mmac": b.a_ms_per_mmac, "intercept_ms": b.b_ms},
    }


def plot_predicted_vs_measured(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str],
                               title: str = "") -> Path:
    """Left: predicted vs measured (log-log, +-10% band, predictor intervals, FLOPs baseline).
    Right: relative error vs measured latency for both, with the +-5% / +-10% bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.array([r["measured_ms"] for r in rows])
    p = np.array([r["predicted_ms"] for r in rows])
    f = np.array([r["flops_baseline_ms"] for r in rows])
    lo = np.array([r["lo_ms"] for r in rows])
    hi = np.array([r["hi_ms"] for r in rows])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 5), dpi=110)
    a, b = 0.8 * min(m.min(), p.min(), f.min()), 1.25 * max(m.max(), p.max(), f.max())
    xs = np.geomspace(a, b, 20)
    ax.plot(xs, xs, "k-", lw=1, label="y = x")
    ax.fill_between(xs, 0.9 * xs, 1.1 * xs, color="0.88", label="+-10%")
    ax.scatter(m, f, s=22, marker="x", color="tab:orange", label="FLOPs-only baseline")
    ax.errorbar(m, p, yerr=[p - lo, hi - p], fmt="o", ms=4, color="tab:blue", ecolor="tab:blue", alpha=0.85,
                elinewidth=0.7, label="kernel predictor (interval)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(a, b)
    ax.set_ylim(a, b)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("predicted vs measured (held-out)", fontsize=10)

    ax2.axhspan(-10, 10, color="0.92")
    ax2.axhspan(-5, 5, color="0.84")
    ax2.axhline(0, color="k", lw=1)
    ax2.scatter(m, 100 * (f / m - 1), s=22, marker="x", color="tab:orange", label="FLOPs-only baseline")
    ax2.scatter(m, 100 * (p / m - 1), s=18, color="tab:blue", label="kernel predictor")
    ax2.set_xscale("log")
    ax2.set_xlabel("measured latency (ms)")
    ax2.set_ylabel("prediction error (%)")
    ax2.set_title("relative error (bands: +-5%, +-10%)", fontsize=10)
    ax2.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(result: Mapping[str, Any], out_dir: str | os.PathLike[str], *, tracking_uri: str | None = None,
                 experiment: str = "latency", calibration: str = "") -> dict[str, str]:
    """Write report.json, heldout.csv, predicted_vs_measured.png; log to MLflow if a URI is set."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"report": str(out / "report.json"), "heldout": str(out / "heldout.csv"),
             "plot": str(out / "predicted_vs_measured.png")}
    Path(files["report"]).write_text(json.dumps(result, indent=1, default=float) + "\n")
    rows = result["heldout_rows"]
    with open(files["heldout"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    h = result["heldout"]["predictor"]
    f = result["heldout"]["flops_baseline"]
    plot_predicted_vs_measured(
        rows, files["plot"],
        title=f"{result['device'].get('device')} / {result['device'].get('runtime')}: {h['n']} held-out variants; "
              f"predictor {100 * h['within_10']:.0f}% within +-10%, Spearman {h['spearman']:.3f}; FLOPs "
              f"{100 * f['within_10']:.0f}%, {f['spearman']:.3f}")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        files["mlflow_run_id"] = _log_mlflow(result, files, uri, experiment, calibration)
    return files


def _log_mlflow(result: Mapping[str, Any], files: Mapping[str, str], uri: str, experiment: str,
                calibration: str) -> str:
    from topnas.platform import tracking

    client = tracking.get_client(uri)
    exp = tracking.get_or_create_experiment(experiment, client=client)
    dev = result["device"]
    run = client.create_run(exp, run_name=f"latency-report-{dev.get('device')}-{dev.get('runtime')}",
                            tags={"topnas.kind": "latency_report"})
    rid = run.info.run_id
    params = {"calibration": calibration, "n_variants": result["n_variants"], "n_heldout": result["n_heldout"],
              "seed": result["seed"], "ridge": result["ridge"], **{f"device.{k}": v for k, v in dev.items()}}
    tracking.log_params_batched(client, rid, params)
    for section in ("predictor", "flops_baseline"):
        for k, v in result["heldout"][section].items():
            client.log_metric(rid, f"heldout.{section}.{k}", float(v))
        for k, v in result["kfold"][section].items():
            client.log_metric(rid, f"kfold.{section}.{k}", float(v))
    client.log_metric(rid, "heldout.interval_coverage", float(result["heldout"]["interval_coverage"]))
    client.log_metric(rid, "heldout.bar_met", float(result["heldout"]["bar_met"]))
    for key in ("report", "heldout", "plot"):
        client.log_artifact(rid, files[key])
    client.set_terminated(rid)
    return rid
