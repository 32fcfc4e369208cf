"""Every phone row records core, governor, runtime and version; older calibration CSVs stay usable."""
from __future__ import annotations

import csv

import pytest

from topnas.platform.latency.measurements import (
    COLUMNS,
    PROVENANCE_COLUMNS,
    CalibrationError,
    append_row,
    completed_keys,
    read_calibration,
)
from topnas.search_spaces import preset_variant

# The header measure_adb wrote before the CPU-time columns existed (an older schema).
OLD_HEADER = [c for c in COLUMNS if c not in ("cpu_median_ms", "cpu_min_ms", "cpu_times_ms", "load_avg_1m")]


def _row(name="tiny", **over):
    v = preset_variant(name, (128, 128))
    row = {"variant_id": v.id, "variant_name": name, "input_h": 128, "input_w": 128, "variant_json": v.to_json(),
           "pass_index": 0, "device": "SM8250", "device_kind": "adb", "cpu_model": "SM8250", "core_id": 7,
           "governor": "performance", "runtime": "onnxruntime", "runtime_version": "1.32.0", "intra_threads": 1,
           "inter_threads": 1, "median_ms": 40.0, "mean_ms": 40.5, "min_ms": 39.0}
    row.update(over)
    return row


def test_provenance_columns_are_in_the_schema():
    assert set(PROVENANCE_COLUMNS) <= set(COLUMNS)


@pytest.mark.parametrize("column,value", [("core_id", None), ("governor", ""), ("runtime_version", " "),
                                          ("runtime_version", None), ("core_id", float("nan"))])
def test_adb_row_without_provenance_is_refused(tmp_path, column, value):
    with pytest.raises(CalibrationError, match=rf"column '{column}'.*core, governor, runtime and version"):
        append_row(tmp_path / "c.csv", _row(**{column: value}))
    assert not (tmp_path / "c.csv").exists()
    append_row(tmp_path / "local.csv", _row(device_kind="local", **{column: value}))  # local rows: not enforced


def test_old_csv_without_provenance_columns_reads(tmp_path):
    """A file from before core/governor/version were recorded: read with empty values."""
    path = tmp_path / "old.csv"
    old = {k: v for k, v in _row().items() if k not in ("core_id", "governor", "runtime_version")}
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(old))
        w.writeheader()
        w.writerow(old)
    df = read_calibration(path)
    assert df["core_id"].isna().all() and list(df["governor"]) == [""] and list(df["runtime_version"]) == [""]
    assert df["median_ms"].iloc[0] == 40.0


def test_append_to_an_older_header_upgrades_it(tmp_path):
    path = tmp_path / "resumed.csv"
    first = _row("tiny")
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=OLD_HEADER)
        w.writeheader()
        w.writerow({k: first.get(k, "") for k in OLD_HEADER})
    append_row(path, _row("small", cpu_median_ms=39.5))
    with path.open(newline="") as fh:
        assert next(csv.reader(fh)) == list(COLUMNS)
    df = read_calibration(path)
    assert list(df["variant_name"]) == ["tiny", "small"]
    assert list(df["core_id"]) == [7, 7] and list(df["runtime_version"]) == ["1.32.0", "1.32.0"]
    assert df["cpu_median_ms"].isna().iloc[0] and df["cpu_median_ms"].iloc[1] == 39.5
    assert len(completed_keys(path)) == 2


def test_append_to_a_foreign_layout_is_refused(tmp_path):
    path = tmp_path / "foreign.csv"
    path.write_text("arch,latency_ms\n|nor_conv_3x3~0|,12.5\n")
    with pytest.raises(CalibrationError, match="'arch'.*another layout"):
        append_row(path, _row())
    assert path.read_text() == "arch,latency_ms\n|nor_conv_3x3~0|,12.5\n"
