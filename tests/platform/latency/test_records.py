"""Calibration files: schema checks, bad files rejected with the row and column named, resume keys."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from topnas.platform.latency.measurements import (
    COLUMNS,
    CalibrationError,
    append_row,
    check_single_target,
    completed_keys,
    read_calibration,
    samples_from,
    write_calibration,
)
from topnas.search_spaces import preset_variant

PUBLISHED = Path(__file__).resolve().parents[3].parent / "shared/reference/latency/snapdragon865_published.csv"


def _row(name="tiny", size=(128, 128), pass_index=0, **over):
    v = preset_variant(name, size)
    row = {"variant_id": v.id, "variant_name": name, "input_h": size[0], "input_w": size[1],
           "variant_json": v.to_json(), "pass_index": pass_index, "device": "local-cpu", "device_kind": "local",
           "cpu_model": "Test CPU", "core_id": 1, "runtime": "onnxruntime", "runtime_version": "1.0",
           "intra_threads": 1, "inter_threads": 1, "n_warmup": 1, "n_runs": 3, "median_ms": 5.0, "mean_ms": 5.1,
           "min_ms": 4.9, "std_ms": 0.1, "times_ms": "4.9;5.0;5.4", "cpu_median_ms": 4.95, "cpu_min_ms": 4.9,
           "timestamp": "2026-01-01T00:00:00+00:00"}
    row.update(over)
    return row


def _write(tmp_path, rows, name="calib.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_valid_file_round_trips_csv_and_parquet(tmp_path):
    rows = [_row(), _row(pass_index=1, median_ms=5.5, cpu_min_ms=4.7), _row("small")]
    df = read_calibration(_write(tmp_path, rows))
    assert len(df) == 3 and list(df.columns) == list(COLUMNS)
    assert check_single_target(df)["device"] == "local-cpu"
    s = {x.variant.name: x for x in samples_from(df, "cpu_min_ms", "min")}
    assert s["tiny"].latency_ms == 4.7 and s["tiny"].n_rows == 2
    assert samples_from(df, "median_ms", "mean")[0].latency_ms == pytest.approx(5.25)
    pq = write_calibration(df, tmp_path / "calib.parquet")
    assert read_calibration(pq).equals(df)


@pytest.mark.parametrize("column,value,match", [
    ("median_ms", float("nan"), r"row 2, column 'median_ms'.*finite latency > 0"),
    ("median_ms", -3.0, r"row 2, column 'median_ms'"),
    ("median_ms", 0.0, r"row 2, column 'median_ms'"),
    ("min_ms", 0.0, r"row 2, column 'min_ms'"),
    ("cpu_min_ms", -1.0, r"row 2, column 'cpu_min_ms'"),
    ("median_ms", "fast", r"row 2, column 'median_ms'.*a number"),
    ("min_ms", 9.0, r"row 2, column 'min_ms'.*<= median_ms"),
    ("device", "", r"row 2, column 'device'"),
])
def test_bad_latencies_rejected(tmp_path, column, value, match):
    path = _write(tmp_path, [_row(), _row("small", **{column: value})])
    with pytest.raises(CalibrationError, match=match):
        read_calibration(path)


def test_unknown_variant_field_rejected(tmp_path):
    bad = _row()
    data = json.loads(bad["variant_json"])
    data["model"]["num_head"] = 4  # a typo of num_heads
    data.pop("id")
    bad["variant_json"] = json.dumps(data)
    with pytest.raises(CalibrationError, match=r"row 1, column 'variant_json' -> variant_json.model.num_head"):
        read_calibration(_write(tmp_path, [bad]))


def test_id_size_and_json_mismatches_rejected(tmp_path):
    with pytest.raises(CalibrationError, match=r"row 1, column 'variant_id'"):
        read_calibration(_write(tmp_path, [_row(variant_id="tf-0000000000")]))
    with pytest.raises(CalibrationError, match=r"input_h"):
        read_calibration(_write(tmp_path, [_row(input_h=256)]))
    with pytest.raises(CalibrationError, match=r"variant_json"):
        read_calibration(_write(tmp_path, [_row(variant_json="{not json")]))


def test_unknown_or_missing_columns_rejected(tmp_path):
    with pytest.raises(CalibrationError, match=r"column 'latency'.*unknown column"):
        read_calibration(_write(tmp_path, [{**_row(), "latency": 3}]))
    row = _row()
    row.pop("median_ms")
    with pytest.raises(CalibrationError, match=r"column 'median_ms'.*missing"):
        read_calibration(_write(tmp_path, [row]))
    with pytest.raises(CalibrationError, match="existing"):
        read_calibration(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(CalibrationError, match="no rows"):
        read_calibration(tmp_path / "empty.csv")


def test_duplicate_measurement_rejected(tmp_path):
    with pytest.raises(CalibrationError, match="duplicated"):
        read_calibration(_write(tmp_path, [_row(), _row()]))


@pytest.mark.parametrize("column,other", [("device", "Snapdragon 865"), ("runtime", "tnn"),
                                          ("runtime_version", "1.1"), ("intra_threads", 2),
                                          ("cpu_model", "Other CPU")])
def test_mixed_targets_rejected_in_one_fit(tmp_path, column, other):
    df = read_calibration(_write(tmp_path, [_row(), _row("small", **{column: other})]))
    with pytest.raises(CalibrationError, match=rf"column '{column}'.*single value per fit"):
        check_single_target(df)


@pytest.mark.skipif(not PUBLISHED.is_file(), reason="shared/reference checkout not present")
def test_published_figures_are_read_as_calibration_rows():
    df = read_calibration(PUBLISHED)
    assert len(df) == 7
    assert check_single_target(df)["device"] == "Snapdragon 865"
    samples = {(s.variant.name, s.variant.input_size): s.latency_ms for s in samples_from(df, "median_ms", "mean")}
    assert samples[("tiny", (512, 512))] == pytest.approx((40.5 + 43.0) / 2)
    assert samples[("tiny", (448, 448))] == 29.0
    assert len(samples) == 4


def test_append_and_resume_keys(tmp_path):
    path = tmp_path / "c.csv"
    append_row(path, _row())
    append_row(path, _row("small"))
    assert completed_keys(path) == {(preset_variant("tiny", (128, 128)).id, 0),
                                    (preset_variant("small", (128, 128)).id, 0)}
    with path.open("a") as fh:  # a run killed in the middle of a write
        fh.write("tf-deadbeef00,tiny,128,12")
    append_row(path, _row("base"))
    df = read_calibration(path)
    assert list(df["variant_name"]) == ["tiny", "small", "base"]
    with pytest.raises(CalibrationError, match="unknown column"):
        append_row(path, {**_row(), "bogus": 1})
