"""`topnas latency fit|predict|report|kernels` on a synthetic calibration file (no timing needed)."""
from __future__ import annotations

import json
import random

import pytest

from topnas.platform.cli import main
from topnas.platform.latency.predictor import DEFAULT_GROUPS, LatencyPredictor
from topnas.platform.latency.measurements import append_row
from topnas.search_spaces import default_space, preset_variant


def _truth() -> LatencyPredictor:
    flat = []
    for g in DEFAULT_GROUPS:
        flat += {"conv1x1": [0.03, 0.0, 0.002], "dwconv": [0.05, 0.01, 0.0], "resize": [0.1, 0.1, 0.01]}.get(
            g.name, [0.01, 0.05, 0.001])
    return LatencyPredictor(DEFAULT_GROUPS, flat, 0.3, {"level": 0.9, "log_lo": 0.0, "log_hi": 0.0}, {}, {})


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """40 variants x 2 passes of a noisy synthetic device, in the real file format."""
    path = tmp_path_factory.mktemp("calib") / "synthetic.csv"
    truth = _truth()
    rng = random.Random(0)
    space = default_space()
    variants = [preset_variant("tiny"), preset_variant("base")] + [space.sample(rng) for _ in range(38)]
    for p in range(2):
        for v in variants:
            ms = truth.predict(v).ms * (1 + rng.uniform(0, 0.04))
            append_row(path, {"variant_id": v.id, "variant_name": v.name or "", "input_h": v.input_size[0],
                              "input_w": v.input_size[1], "variant_json": v.to_json(), "pass_index": p,
                              "device": "synthetic", "device_kind": "local", "cpu_model": "none", "core_id": 0,
                              "runtime": "onnxruntime", "runtime_version": "0", "intra_threads": 1,
                              "inter_threads": 1, "n_warmup": 1, "n_runs": 1, "median_ms": ms * 1.1, "mean_ms": ms,
                              "min_ms": ms, "cpu_median_ms": ms, "cpu_min_ms": ms,
                              "timestamp": "2026-01-01T00:00:00+00:00"})
    return path


def test_fit_predict_report(calib, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["latency", "fit", "--calib", str(calib), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fitted on 40 variants (cpu_min_ms, passes combined by min)" in text
    meta = json.loads(out.read_text())["calibration"]
    assert meta["passes"] == 2 and meta["stat"] == "cpu_min_ms" and meta["n_variants"] == 40

    assert main(["latency", "predict", "--predictor", str(out), "--preset", "small", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["lo"] <= pred["ms"] <= pred["hi"] and pred["variant_id"] == preset_variant("small").id
    assert set(pred["contributions_ms"]) >= {"conv1x1", "dwconv", "intercept"}
    v = default_space().sample(random.Random(5))
    vfile = v.save(tmp_path / "v.yaml")
    assert main(["latency", "predict", "--predictor", str(out), "--variant", str(vfile)]) == 0
    assert v.id in capsys.readouterr().out

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rc = main(["latency", "report", "--calib", str(calib), "--out-dir", str(tmp_path / "rep"), "--holdout", "0.25",
               "--tracking-uri", uri])
    assert rc == 0
    text = capsys.readouterr().out
    assert "held-out 10 of 40 variants" in text and "flops_baseline" in text
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    h = rep["heldout"]
    assert h["predictor"]["within_10"] >= 0.9 and h["predictor"]["spearman"] > 0.95
    assert h["predictor"]["rmspe"] < h["flops_baseline"]["rmspe"]
    assert (tmp_path / "rep" / "predicted_vs_measured.png").stat().st_size > 10_000
    # held-out variants were never used in fitting
    train_ids = set(rep["predictor"]["calibration"]["variant_ids"])
    assert not train_ids & {r["variant_id"] for r in rep["heldout_rows"]} and len(train_ids) == 30

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("latency")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    assert runs[0].data.metrics["heldout.predictor.within_10"] == h["predictor"]["within_10"]
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} >= {"report.json", "predicted_vs_measured.png"}


def test_transfer_fit_and_packaged_predict(calib, tmp_path, capsys):
    base = tmp_path / "base.json"
    assert main(["latency", "fit", "--calib", str(calib), "--out", str(base)]) == 0
    from pathlib import Path

    published = Path(__file__).resolve().parents[3].parent / "shared/reference/latency/snapdragon865_published.csv"
    if not published.is_file():
        pytest.skip("shared/reference checkout not present")
    out = tmp_path / "sd.json"
    assert main(["latency", "fit", "--calib", str(published), "--base", str(base), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "leave-one-out tiny [448, 448]" in text and "leave-one-out MAPE" in text
    assert main(["latency", "predict", "--preset", "tiny"]) == 0  # packaged Snapdragon predictor by default
    assert "Snapdragon 865" in capsys.readouterr().out


def test_bad_inputs_are_usage_errors(calib, tmp_path, capsys):
    assert main(["latency", "fit", "--calib", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "p.json")]) == 2
    assert "calibration file" in capsys.readouterr().err
    assert main(["latency", "fit", "--calib", str(calib), "--out", str(tmp_path / "p.json"), "--stat", "p99"]) == 2
    assert "stat" in capsys.readouterr().err
    assert main(["latency", "predict", "--predictor", "nope", "--preset", "tiny"]) == 2


def test_kernels_command(capsys):
    assert main(["latency", "kernels", "--preset", "tiny", "--shape", "128", "128"]) == 0
    assert "conv1x1" in capsys.readouterr().out
