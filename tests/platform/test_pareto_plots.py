"""Front artifacts: PNG/HTML files written and readable, terminal table sorted."""
from __future__ import annotations

import html
import json
import math
import re

import pandas as pd
import pytest
from PIL import Image

from topnas.errors import ConfigError
from topnas.platform import pareto
from topnas.platform.pareto_plots import (
    COLUMNS,
    add_pareto_column,
    front_table,
    write_front_html,
    write_front_png,
    write_hypervolume_png,
)

NAN = math.nan


def _config(i: int) -> str:
    return json.dumps({"channels": [16, 32, 64 + i], "embed_dim": 128 + 32 * i, "name": f"v'{i}\""})


@pytest.fixture
def trials() -> pd.DataFrame:
    rows = [
        # trial, variant, status, mIoU, latency, lo, hi, params, macs, run, preset
        ("t0", "v-fast", "completed", 0.30, 10.0, 9.0, 11.0, 1.1e6, 0.5e9, "run0", ""),
        ("t1", "v-mid", "completed", 0.35, 20.0, 18.0, 22.0, 2.0e6, 1.0e9, "run1", ""),
        ("t2", "v-slow", "completed", 0.40, 40.0, NAN, NAN, 5.0e6, 2.0e9, "run2", ""),
        ("t3", "v-bad", "completed", 0.25, 30.0, 28.0, 32.0, 3.0e6, 1.5e9, "run3", ""),
        ("t4", "v-tiny", "completed", 0.33, 15.0, 14.0, 16.0, 1.4e6, 0.6e9, "run4", "topformer_tiny"),
        ("t5", "v-stop", "early_stopped", 0.20, 12.0, 11.0, 13.0, 1.2e6, 0.5e9, "run5", ""),
        ("t6", "v-inf", "infeasible", NAN, 80.0, 75.0, 85.0, 9.0e6, 4.0e9, "", ""),
        ("t7", "v-fail", "failed", NAN, NAN, NAN, NAN, 2.0e6, 1.0e9, "run7", ""),
        ("t8", "v-inf2", "infeasible", 0.45, 90.0, 80.0, 95.0, 9.5e6, 4.5e9, "run8", ""),
    ]
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("config", "pareto")])
    df["config"] = [_config(i) for i in range(len(df))]
    return add_pareto_column(df)


def test_add_pareto_column(trials):
    assert trials.loc[trials["pareto"], "variant_id"].tolist() == ["v-fast", "v-mid", "v-slow", "v-tiny"]


def test_write_front_png(tmp_path, trials):
    out = write_front_png(trials, tmp_path / "sub" / "front.png", latency_budget=60, dpi=100)
    assert out.exists() and out.stat().st_size > 0
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG"
        assert img.size == (900, 600)


def test_write_front_png_label_all_and_empty(tmp_path, trials):
    write_front_png(trials, tmp_path / "all.png", label_all=True, dpi=50)
    empty = trials.iloc[0:0]
    out = write_front_png(empty, tmp_path / "empty.png", dpi=50)
    with Image.open(out) as img:
        assert img.size == (450, 300)


def test_write_front_html(tmp_path, trials):
    out = write_front_html(trials, tmp_path / "front.html")
    text = out.read_text(encoding="utf-8")
    drawn = trials[trials["val_mIoU"].notna() & trials["latency_ms"].notna()]
    for _, row in drawn.iterrows():
        assert row["variant_id"] in text
        assert html.escape(row["config"], quote=False) in text
    assert "v-fail" not in text  # no objectives -> not drawn
    assert "topformer_tiny" in text
    # Self-contained: plotly.js inlined, nothing fetched from a CDN.
    assert re.search(r"<script[^>]*\bsrc=", text) is None
    assert len(text) > 1_000_000


def test_write_hypervolume_png(tmp_path, trials):
    objs = {"val_mIoU": "max", "latency_ms": "min"}
    pts = pareto.points_from_records(trials.to_dict("records"), objs)
    ref = pareto.default_reference_point(pts, objs, budgets={"latency_ms": 60})
    history = pareto.hypervolume_history(pts, ref, objs)
    assert [n for n, _ in history] == list(range(1, 10))
    out = write_hypervolume_png(history, tmp_path / "hv.png", dpi=50)
    with Image.open(out) as img:
        img.load()
        assert img.size == (350, 225)
    hist_df = pd.DataFrame(history, columns=["n_finished", "hypervolume"])
    assert write_hypervolume_png(hist_df, tmp_path / "hv2.png", dpi=50).stat().st_size > 0
    assert write_hypervolume_png([], tmp_path / "hv3.png", dpi=50).stat().st_size > 0


def _variant_order(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[2:]]


def test_front_table_sorted_by_each_objective(trials):
    by_latency = front_table(trials, sort_by="latency_ms")
    assert _variant_order(by_latency) == ["v-fast", "v-tiny", "v-mid", "v-slow"]
    by_miou = front_table(trials, sort_by="val_mIoU")
    assert _variant_order(by_miou) == ["v-slow", "v-mid", "v-tiny", "v-fast"]
    for run in ("run0", "run1", "run2", "run4"):
        assert run in by_latency and run in by_miou
    assert "run3" not in by_latency  # dominated
    header = by_latency.splitlines()[0].split()
    assert header[:3] == ["variant", "mIoU", "latency"]
    assert "[9.0, 11.0]" in by_latency and "1.10M" in by_latency and "500.00M" in by_latency
    assert "topformer_tiny" in by_latency
    # Columns are aligned: every row is as wide as the separator or narrower.
    lines = by_latency.splitlines()
    assert all(len(line) <= len(lines[1]) for line in lines)


def test_front_table_all_trials(trials):
    table = front_table(trials, sort_by="latency_ms", front_only=False)
    order = _variant_order(table)
    assert order[:3] == ["v-fast", "v-stop", "v-tiny"]
    assert order[-1] == "v-fail"  # NaN latency last
    assert "early_stopped" in table


def test_front_table_errors(trials):
    with pytest.raises(ConfigError, match="sort_by"):
        front_table(trials, sort_by="params")
    with pytest.raises(ConfigError, match="df.columns"):
        front_table(trials.drop(columns=["run_id"]))
    empty = front_table(trials.iloc[0:0])
    assert "(no trials)" in empty


def test_the_proxys_seed_noise_is_drawn_on_the_completed_trials(tmp_path, trials):
    def error_bars(text: str) -> list[dict]:
        found = map(json.loads, re.findall(r"\"error_y\":(\{[^{}]*\})", text))
        return [b for b in found if "type" in b]  # not the template's default style

    plain = write_front_html(trials, tmp_path / "plain.html").read_text(encoding="utf-8")
    assert error_bars(plain) == []
    noisy = write_front_html(trials, tmp_path / "noisy.html", miou_noise=0.05).read_text(encoding="utf-8")
    bars = error_bars(noisy)
    assert len(bars) == 2  # the front and the other completed trials; not stopped, infeasible or presets
    assert all(b["type"] == "constant" and b["value"] == pytest.approx(0.05) for b in bars)

    a = write_front_png(trials, tmp_path / "a.png", dpi=50)
    b = write_front_png(trials, tmp_path / "b.png", dpi=50, miou_noise=float("nan"))  # unknown: not drawn
    c = write_front_png(trials, tmp_path / "c.png", dpi=50, miou_noise=0.05)
    with Image.open(a) as ia, Image.open(b) as ib, Image.open(c) as ic:
        assert ia.tobytes() == ib.tobytes()
        assert ia.tobytes() != ic.tobytes()
