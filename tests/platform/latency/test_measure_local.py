"""The local harness end to end: real ONNX Runtime timings of three tiny variants, resumable."""
from __future__ import annotations

import os

import pytest

from topnas.platform.cli import main
from topnas.platform.latency.measure_local import calibration_variants, measure_local
from topnas.platform.latency.measurements import check_single_target, read_calibration, samples_from
from topnas.search_spaces import Variant, default_space, preset_variant


@pytest.fixture(scope="module")
def tiny_variants(tmp_path_factory):
    tiny = preset_variant("tiny", (128, 128))
    vs = [tiny, Variant(tiny.model.replace(depths=1, num_heads=2), (128, 128), name="tiny-d1"),
          Variant(tiny.model, (96, 128), name="tiny-96x128")]
    folder = tmp_path_factory.mktemp("variants")
    return vs, [str(v.save(folder / f"{v.id}.yaml")) for v in vs]


def test_harness_end_to_end_and_resume(tiny_variants, tmp_path, capsys):
    variants, files = tiny_variants
    affinity = os.sched_getaffinity(0)
    out = tmp_path / "calib.csv"
    models = tmp_path / "models"
    rc = main(["latency", "measure", "--variants", *files, "--device", "local", "--out", str(out),
               "--runs", "3", "--warmup", "1", "--model-dir", str(models)])
    assert rc == 0
    assert "wrote 3 rows" in capsys.readouterr().out
    df = read_calibration(out)
    assert sorted(df["variant_id"]) == sorted(v.id for v in variants)
    assert (df["n_runs"] == 3).all() and (df["n_warmup"] == 1).all()
    assert (df["median_ms"] > 0).all() and (df["min_ms"] <= df["median_ms"]).all()
    assert (df["cpu_min_ms"] > 0).all()
    assert df["times_ms"].str.count(";").eq(2).all()
    assert set(df["runtime"]) == {"onnxruntime"} and (df["intra_threads"] == 1).all()
    assert (df["core_id"].astype(int).isin(sorted(os.sched_getaffinity(0)))).all()
    assert df["cpu_model"].str.len().gt(0).all() and df["timestamp"].str.len().gt(0).all()
    assert check_single_target(df)["runtime_version"]
    assert os.sched_getaffinity(0) == affinity  # pinning is undone afterwards

    # a second pass resumes: pass 0 is skipped, models come from the cache (no export)
    assert measure_local(variants, out, runs=3, warmup=1, passes=2, model_dir=models) == 3
    assert measure_local(variants, out, runs=3, warmup=1, passes=2, model_dir=models) == 0
    df = read_calibration(out)
    assert len(df) == 6 and sorted(df["pass_index"].unique()) == [0, 1]
    samples = samples_from(df, "cpu_min_ms", "min")
    assert len(samples) == 3 and all(s.n_rows == 2 for s in samples)
    # the fuller variant is the slower one (real timings, generous margin for a shared host)
    by = {s.variant.id: s.latency_ms for s in samples}
    assert by[variants[0].id] > 0.8 * by[variants[1].id]


def test_calibration_variants_cover_presets_and_corners():
    vs = calibration_variants(default_space(), n=5, seed=0)
    names = [v.name for v in vs if v.name]
    assert {"tiny", "small", "base"} <= set(names)
    assert len({v.id for v in vs}) == len(vs) == 6 + 2 + 5
    assert {v.input_size for v in vs} == {(448, 448), (512, 512)}
