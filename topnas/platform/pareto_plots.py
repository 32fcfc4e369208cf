"""Pictures and tables of a sweep's Pareto front (MLflow has no Pareto chart; these are artifacts).

Every function takes one pandas DataFrame, one row per trial, with these columns:

============== ======= =====================================================================
column         type    meaning
============== ======= =====================================================================
``trial_id``   str     unique trial id (Ray trial id); the row key
``variant_id`` str     stable id of the sampled TopFormer variant; the label on plots
``status``     str     one of :data:`topnas.platform.pareto.STATUSES` (``completed``,
                       ``failed``, ``early_stopped``, ``infeasible``, ``running``, ``pending``)
``val_mIoU``   float   validation mIoU at the proxy budget (NaN if none)
``latency_ms`` float   predicted latency, ms, Snapdragon 865 (NaN if none)
``latency_lo`` float   lower end of the predictor's interval, ms (NaN if unknown)
``latency_hi`` float   upper end of the predictor's interval, ms (NaN if unknown)
``params``     number  parameter count
``macs``       number  multiply-accumulates at the variant's input size
``run_id``     str     MLflow child run id ("" if none)
``preset``     str     preset name (``topformer_tiny`` ...) or "" for a sampled variant
``config``     str     the variant's config as JSON text
``pareto``     bool    on the non-dominated set (see :func:`add_pareto_column`)
============== ======= =====================================================================

Objectives are fixed to :data:`OBJECTIVES` (``val_mIoU`` max, ``latency_ms`` min). Extra
columns are allowed and ignored. Plots use matplotlib's Agg canvas directly (no pyplot, no global
backend switch) and plotly with plotly.js inlined, because the MLflow UI serves the HTML offline.
"""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from topnas.errors import ConfigError, check_choice
from topnas.platform import pareto as _pareto
from topnas.platform.objectives import OBJECTIVES, TrialStatus

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "LATENCY_LABEL",
    "latency_label",
    "MIOU_LABEL",
    "OBJECTIVES",
    "add_pareto_column",
    "check_columns",
    "front_mious",
    "front_table",
    "write_front_html",
    "write_front_png",
    "write_hypervolume_png",
]

COLUMNS = (
    "trial_id", "variant_id", "status", "val_mIoU", "latency_ms", "latency_lo", "latency_hi",
    "params", "macs", "run_id", "preset", "config", "pareto",
)
LATENCY_LABEL = "predicted latency (ms, Snapdragon 865)"
MIOU_LABEL = "val mIoU"

_FRONT_COLOR = "tab:blue"
_PRESET_COLOR = "tab:orange"
_INFEASIBLE_COLOR = "tab:red"
_OTHER_COLOR = "0.6"  # grey


def latency_label(predictor: str = "") -> str:
    """The latency axis title, naming the predictor that priced the front when it is known."""
    return f"predicted latency (ms; {predictor})" if predictor else LATENCY_LABEL


def check_columns(df: pd.DataFrame, required: Sequence[str] = COLUMNS) -> None:
    """Raise :class:`ConfigError` naming the missing columns of the contract."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ConfigError("df.columns", missing, f"the pareto_plots column contract {list(required)}",
                          hint="missing columns")


def add_pareto_column(df: pd.DataFrame, objectives: Mapping[str, str] = OBJECTIVES) -> pd.DataFrame:
    """A copy of ``df`` with ``pareto`` set from :func:`topnas.platform.pareto.pareto_flags`."""
    check_columns(df, ("trial_id", "status", *objectives))
    points = _pareto.points_from_records(df.to_dict("records"), objectives)
    flags = _pareto.pareto_flags(points, objectives)
    out = df.copy()
    out["pareto"] = [f.pareto for f in flags]
    return out


# --------------------------------------------------------------------------- PNG


def write_front_png(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    latency_budget: float | None = None,
    label_all: bool = False,
    dpi: int = 120,
    predictor: str = "",
    miou_noise: float | None = None,
) -> Path:
    """Scatter of all trials with the front as a step line; returns the written path.

    Grey dots: completed trials off the front; hollow triangles: early-stopped; red crosses:
    infeasible; blue: the front (step line, latency interval as error bars, each labelled with its
    variant id); orange stars: presets, labelled with their name (in bold, below the point). Rows without both objectives
    (failed, running) are not drawn. ``label_all`` also labels the grey points. ``miou_noise``: the
    proxy's measured seed noise, drawn as +- bars on every completed trial's mIoU.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_columns(df)
    path = _prepare_path(path)
    data = _plottable(df)
    fig = Figure(figsize=(9, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    front = data[data["pareto"] & (data["status"] == _pareto.ELIGIBLE_STATUS)]
    front = front.sort_values(["latency_ms", "val_mIoU"])
    others = data[(data["status"] == _pareto.ELIGIBLE_STATUS) & ~data.index.isin(front.index)]
    stopped = data[data["status"] == TrialStatus.EARLY_STOPPED]
    infeasible = data[data["status"] == TrialStatus.INFEASIBLE]
    presets = data[data["preset"].fillna("").astype(str) != ""]

    ax.scatter(others["latency_ms"], others["val_mIoU"], s=18, c=_OTHER_COLOR, alpha=0.7,
               label=f"trials ({len(others)})", zorder=2)
    if len(stopped):
        ax.scatter(stopped["latency_ms"], stopped["val_mIoU"], s=30, marker="v", facecolors="none",
                   edgecolors=_OTHER_COLOR, label=f"early-stopped ({len(stopped)})", zorder=2)
    if len(infeasible):
        ax.scatter(infeasible["latency_ms"], infeasible["val_mIoU"], s=30, marker="x",
                   c=_INFEASIBLE_COLOR, alpha=0.7, label=f"infeasible ({len(infeasible)})", zorder=2)
    completed = data[data["status"] == _pareto.ELIGIBLE_STATUS]
    if _noise_known(miou_noise) and len(completed):
        ax.errorbar(completed["latency_ms"], completed["val_mIoU"], yerr=float(miou_noise), fmt="none",
                    ecolor="0.45", alpha=0.6, capsize=2, zorder=1,
                    label=f"\u00b1 proxy seed noise ({float(miou_noise):.4f} mIoU)")
    if len(front):
        xerr = _xerr(front)
        if xerr is not None:
            ax.errorbar(front["latency_ms"], front["val_mIoU"], xerr=xerr, fmt="none",
                        ecolor=_FRONT_COLOR, alpha=0.35, capsize=2, zorder=3)
        ax.plot(front["latency_ms"], front["val_mIoU"], drawstyle="steps-post", color=_FRONT_COLOR,
                lw=1.5, zorder=3)
        ax.scatter(front["latency_ms"], front["val_mIoU"], s=40, c=_FRONT_COLOR,
                   label=f"Pareto front ({len(front)})", zorder=4)
    if len(presets):
        ax.scatter(presets["latency_ms"], presets["val_mIoU"], s=160, marker="*", c=_PRESET_COLOR,
                   edgecolors="black", linewidths=0.5, label="presets", zorder=5)

    labelled = front if not label_all else data
    for _, row in labelled.iterrows():
        ax.annotate(str(row["variant_id"]), (row["latency_ms"], row["val_mIoU"]),
                    xytext=(4, 4), textcoords="offset points", fontsize=7)
    for _, row in presets.iterrows():
        ax.annotate(str(row["preset"]), (row["latency_ms"], row["val_mIoU"]), xytext=(6, -10),
                    textcoords="offset points", fontsize=8, fontweight="bold", color="black")

    if latency_budget is not None:
        ax.axvline(float(latency_budget), ls="--", color=_INFEASIBLE_COLOR, lw=1,
                   label=f"latency budget {float(latency_budget):g} ms")
    if data.empty:
        ax.text(0.5, 0.5, "no trial with both objectives yet", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    ax.set_xlabel(latency_label(predictor))
    ax.set_ylabel(MIOU_LABEL)
    ax.set_title(title or f"Pareto front: {len(front)} of {len(df)} trials")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=dpi)
    return path


def write_hypervolume_png(
    history: Sequence[tuple[int, float]] | pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Hypervolume vs number of finished trials; returns the written path.

    ``history`` is :func:`topnas.platform.pareto.hypervolume_history`'s list of
    ``(n_finished, hypervolume)`` or a DataFrame with those two columns.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs, ys = _history_xy(history)
    path = _prepare_path(path)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if xs:
        ax.plot(xs, ys, drawstyle="steps-post", color=_FRONT_COLOR, marker="o", ms=3)
    else:
        ax.text(0.5, 0.5, "no finished trial yet", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    ax.set_xlabel("finished trials")
    ax.set_ylabel("hypervolume (val mIoU x ms)")
    ax.set_title(title or "hypervolume of the Pareto front")
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=dpi)
    return path


# --------------------------------------------------------------------------- HTML


def write_front_html(df: pd.DataFrame, path: str | os.PathLike[str], *, title: str | None = None,
                     predictor: str = "", miou_noise: float | None = None) -> Path:
    """Interactive, self-contained plotly page (plotly.js inlined, works offline in MLflow's UI).

    Hovering a point shows its variant id, objectives, run id and config JSON. Below the chart a
    plain table lists every drawn trial (front first) with its config text. ``miou_noise``: the
    proxy's measured seed noise, drawn as +- bars on the completed trials' mIoU.
    """
    import plotly.graph_objects as go

    check_columns(df)
    path = _prepare_path(path)
    data = _plottable(df)
    is_front = data["pareto"] & (data["status"] == _pareto.ELIGIBLE_STATUS)
    is_preset = data["preset"].fillna("").astype(str) != ""
    groups = [
        ("trials", data[(data["status"] == _pareto.ELIGIBLE_STATUS) & ~is_front],
         dict(color="lightgrey", size=7), "markers"),
        ("early-stopped", data[data["status"] == TrialStatus.EARLY_STOPPED],
         dict(color="grey", size=8, symbol="triangle-down-open"), "markers"),
        ("infeasible", data[data["status"] == TrialStatus.INFEASIBLE],
         dict(color="crimson", size=8, symbol="x"), "markers"),
        ("Pareto front", data[is_front].sort_values(["latency_ms", "val_mIoU"]),
         dict(color="royalblue", size=9), "lines+markers"),
        ("presets", data[is_preset], dict(color="orange", size=16, symbol="star",
                                          line=dict(color="black", width=1)), "markers+text"),
    ]
    fig = go.Figure()
    for name, part, marker, mode in groups:
        if part.empty:
            continue
        fig.add_trace(go.Scatter(
            x=part["latency_ms"], y=part["val_mIoU"], mode=mode, name=f"{name} ({len(part)})",
            marker=marker, line=dict(shape="hv") if "lines" in mode else None,
            error_y=(dict(type="constant", value=float(miou_noise), thickness=1, width=3)
                     if _noise_known(miou_noise) and name in ("trials", "Pareto front") else None),
            text=[str(p) for p in part["preset"]] if name == "presets" else None,
            textposition="bottom right",
            hovertext=[_hover(row) for _, row in part.iterrows()],
            hovertemplate="%{hovertext}<extra></extra>",
        ))
    fig.update_layout(
        title=title or f"Pareto front: {int(is_front.sum())} of {len(df)} trials",
        xaxis_title=latency_label(predictor), yaxis_title=MIOU_LABEL, template="plotly_white",
        hoverlabel=dict(align="left", font=dict(family="monospace", size=11)),
    )
    chart = fig.to_html(full_html=False, include_plotlyjs=True)
    ordered = data.assign(_front=is_front).sort_values(["_front", "latency_ms"], ascending=[False, True])
    rows = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td><pre>{}</pre></td></tr>".format(
            _e(r["variant_id"]), "yes" if r["_front"] else "", _e(r["status"]),
            _fmt_miou(r["val_mIoU"]), _fmt_ms(r["latency_ms"]), _e(r["run_id"]), _e(r["preset"]),
            _e(r["config"]))
        for _, r in ordered.iterrows()
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{_e(title or "Pareto front")}</title>
<style>body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;vertical-align:top}} pre{{margin:0;white-space:pre-wrap}}</style>
</head><body>
{chart}
<h3>Trials</h3>
<table><tr><th>variant</th><th>front</th><th>status</th><th>val mIoU</th><th>latency ms</th>
<th>run id</th><th>preset</th><th>config</th></tr>
{rows}
</table></body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- table


def front_table(df: pd.DataFrame, sort_by: str = "latency_ms", *, front_only: bool = True) -> str:
    """Plain aligned text table of the front (or of all trials), best first by ``sort_by``.

    ``sort_by`` is ``"latency_ms"`` (fastest first) or ``"val_mIoU"`` (most accurate first); ties
    go to the other objective. Columns: variant, mIoU, latency, interval, params, MACs, run id
    (plus preset when any row has one, and front/status when ``front_only`` is False).
    """
    check_columns(df)
    check_choice("sort_by", sort_by, list(OBJECTIVES))
    other = next(n for n in OBJECTIVES if n != sort_by)
    rows = df[df["pareto"].astype(bool)] if front_only else df
    ascending = [OBJECTIVES[sort_by] == "min", OBJECTIVES[other] == "min", True]
    rows = rows.sort_values([sort_by, other, "variant_id"], ascending=ascending, na_position="last")

    headers = ["variant", "mIoU", "latency ms", "interval", "params", "MACs", "run id"]
    show_preset = bool((rows["preset"].fillna("").astype(str) != "").any())
    if show_preset:
        headers.append("preset")
    if not front_only:
        headers += ["front", "status"]
    body = []
    for _, r in rows.iterrows():
        line = [
            str(r["variant_id"]), _fmt_miou(r["val_mIoU"]), _fmt_ms(r["latency_ms"]),
            _fmt_interval(r["latency_lo"], r["latency_hi"]), _si(r["params"]), _si(r["macs"]),
            _text(r["run_id"]) or "-",
        ]
        if show_preset:
            line.append(_text(r["preset"]) or "-")
        if not front_only:
            line += ["*" if bool(r["pareto"]) else "", str(r["status"])]
        body.append(line)
    numeric = {"mIoU", "latency ms", "params", "MACs"}
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if h in numeric else c.ljust(w) for c, w, h in zip(cells, widths, headers)
        ).rstrip()

    lines = [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
    if not body:
        lines.append("(no trials)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- internals


def _prepare_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _plottable(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with both objectives finite; ``pareto`` as bool."""
    import numpy as np

    data = df.reset_index(drop=True)
    for col in ("val_mIoU", "latency_ms", "latency_lo", "latency_hi"):
        data[col] = data[col].astype(float)
    data["pareto"] = data["pareto"].fillna(False).astype(bool)
    finite = np.isfinite(data["val_mIoU"]) & np.isfinite(data["latency_ms"])
    return data[finite]


def front_mious(df: pd.DataFrame) -> list[float]:
    """The mIoU of the completed trials on the front (the rows a front table marks with *)."""
    return [float(v) for v in df.loc[df["pareto"] & (df["status"] == _pareto.ELIGIBLE_STATUS), "val_mIoU"]]


def _noise_known(noise: float | None) -> bool:
    return noise is not None and math.isfinite(float(noise)) and float(noise) > 0


def _xerr(front: pd.DataFrame) -> Any:
    import numpy as np

    lo = (front["latency_ms"] - front["latency_lo"]).to_numpy(dtype=float)
    hi = (front["latency_hi"] - front["latency_ms"]).to_numpy(dtype=float)
    if not (np.isfinite(lo).any() or np.isfinite(hi).any()):
        return None
    return np.vstack([np.nan_to_num(lo, nan=0.0).clip(min=0), np.nan_to_num(hi, nan=0.0).clip(min=0)])


def _history_xy(history: Any) -> tuple[list[int], list[float]]:
    if hasattr(history, "columns"):
        check_columns(history, ("n_finished", "hypervolume"))
        pairs = list(zip(history["n_finished"], history["hypervolume"]))
    else:
        pairs = list(history)
    try:
        return [int(n) for n, _ in pairs], [float(h) for _, h in pairs]
    except (TypeError, ValueError):
        raise ConfigError("history", pairs[:3], "(n_finished, hypervolume) pairs") from None


def _hover(row: Any) -> str:
    lines = [
        f"<b>{_e(row['variant_id'])}</b>" + (f" ({_e(row['preset'])})" if _text(row["preset"]) else ""),
        f"val mIoU {_fmt_miou(row['val_mIoU'])}",
        f"latency {_fmt_ms(row['latency_ms'])} ms {_fmt_interval(row['latency_lo'], row['latency_hi'])}",
        f"params {_si(row['params'])}  MACs {_si(row['macs'])}",
        f"trial {_e(row['trial_id'])}  run {_e(row['run_id']) or '-'}",
        "",
        _pretty_config(row["config"]),
    ]
    return "<br>".join(lines)


def _pretty_config(config: Any) -> str:
    text = _text(config)
    try:
        text = json.dumps(json.loads(text), indent=1, sort_keys=False)
    except (TypeError, ValueError):
        pass
    return "<br>".join(_e(line).replace(" ", "&nbsp;") for line in text.splitlines())


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _e(value: Any) -> str:
    return html.escape(_text(value), quote=False)


def _fmt_miou(value: Any) -> str:
    v = _pareto.finite_or_none(value)
    if v is None:
        return "-"
    return f"{v:.4f}" if abs(v) <= 1.0 else f"{v:.2f}"


def _fmt_ms(value: Any) -> str:
    v = _pareto.finite_or_none(value)
    return "-" if v is None else f"{v:.1f}"


def _fmt_interval(lo: Any, hi: Any) -> str:
    lo, hi = _pareto.finite_or_none(lo), _pareto.finite_or_none(hi)
    if lo is None and hi is None:
        return "-"
    return f"[{_fmt_ms(lo)}, {_fmt_ms(hi)}]"


def _si(value: Any) -> str:
    v = _pareto.finite_or_none(value)
    if v is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{suffix}"
    return f"{v:.0f}"
