"""Calibration files: one row per (variant, measurement pass), with everything that makes a latency
comparable (core affinity, governor, thermal state, runtime and version: each one alone changes a
phone's latency).

Files are CSV (appended row by row while a measurement runs, so an interrupted run resumes) or
Parquet (read/written through pandas). Reading always validates the schema:

* every required column present, no unknown column (a typo'd column is an error, not ignored);
* latencies finite and > 0; ``min_ms <= median_ms``;
* ``variant_json`` parses to a valid :class:`~topnas.search_spaces.Variant` (unknown config fields
  rejected) whose id equals ``variant_id`` and whose size equals ``input_h`` x ``input_w``;
* :func:`check_single_target` (called by every fit) rejects a file mixing devices, runtimes,
  runtime versions or thread counts, naming the column and the values found.

Older files stay readable: a column added to the schema later is filled with its empty value on
read, and :func:`append_row` rewrites an older CSV header to the current one (keeping its rows)
before appending, so a resumed measurement never writes rows under a shorter header. Phone rows
(``device_kind == "adb"``) must record :data:`PROVENANCE_COLUMNS` (core, governor, runtime and its
version); :func:`append_row` refuses one that does not.

The published Snapdragon figures (columns :data:`_PUBLISHED_COLUMNS`: one latency per preset and size) use a
different, much smaller layout; :func:`read_calibration` recognises it and converts it (preset name
+ input size -> variant) so the same fitting code consumes both.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from topnas.errors import ConfigError
from topnas.fileio import atomic_path

__all__ = [
    "COLUMNS",
    "PROVENANCE_COLUMNS",
    "REQUIRED_COLUMNS",
    "TARGET_COLUMNS",
    "STATS",
    "CalibrationError",
    "Sample",
    "append_row",
    "check_single_target",
    "completed_keys",
    "read_calibration",
    "samples_from",
    "write_calibration",
]


class CalibrationError(ConfigError):
    """A calibration file (or row) is unusable; the message names the file, row and column."""


# Column -> meaning. Order is the CSV column order.
COLUMNS: dict[str, str] = {
    "variant_id": "Variant.id (hash of the canonical config + input size)",
    "variant_name": "preset name or human label (may be empty)",
    "input_h": "input height in pixels",
    "input_w": "input width in pixels",
    "variant_json": "Variant.to_json(): the full config; re-validated on read",
    "pass_index": "measurement pass (0, 1, ...); (variant_id, pass_index) is unique",
    "device": "device label, e.g. 'local-cpu' or 'Snapdragon 865'",
    "device_kind": "local | adb | published",
    "cpu_model": "host CPU model / SoC name",
    "core_id": "CPU core the benchmark was pinned to (-1 = unknown)",
    "governor": "cpufreq governor before the run ('' or 'unknown' when not readable)",
    "governor_after": "cpufreq governor after the run",
    "temp_before_c": "max thermal-zone temperature before, deg C (NaN = not readable)",
    "temp_after_c": "max thermal-zone temperature after, deg C",
    "runtime": "onnxruntime | tnn | ...",
    "runtime_version": "runtime version string",
    "intra_threads": "intra-op threads",
    "inter_threads": "inter-op threads",
    "n_warmup": "warm-up runs (not timed)",
    "n_runs": "timed runs",
    "median_ms": "median of the timed runs",
    "mean_ms": "mean of the timed runs",
    "min_ms": "fastest timed run",
    "std_ms": "standard deviation of the timed runs (NaN when only an average is known)",
    "times_ms": "the timed runs, ';'-separated (empty when the runtime reports only aggregates)",
    "cpu_median_ms": "median CPU time of the benchmark thread per run (local only; immune to preemption)",
    "cpu_min_ms": "smallest per-run CPU time of the benchmark thread",
    "cpu_times_ms": "per-run CPU times of the benchmark thread, ';'-separated",
    "load_avg_1m": "1-minute load average of the host at the end of the pass (noise indicator)",
    "model_sha256": "sha256 of the benchmarked model file (first 16 hex digits)",
    "hostname": "machine / adb serial",
    "timestamp": "UTC ISO-8601 end time of the pass",
    "source": "how the row was produced (topnas version, figure reference, ...)",
}
# what makes a phone latency comparable with another; required on adb rows
PROVENANCE_COLUMNS = ("core_id", "governor", "runtime", "runtime_version")
REQUIRED_COLUMNS = ("variant_id", "input_h", "input_w", "variant_json", "device", "runtime", "median_ms")
STATS = ("median_ms", "mean_ms", "min_ms", "cpu_median_ms", "cpu_min_ms")
# A fit is only meaningful on one measurement target: these must hold a single value per file.
TARGET_COLUMNS = ("device", "cpu_model", "runtime", "runtime_version", "intra_threads", "inter_threads")
_NUMERIC = ("input_h", "input_w", "pass_index", "core_id", "temp_before_c", "temp_after_c", "intra_threads",
            "inter_threads", "n_warmup", "n_runs", "median_ms", "mean_ms", "min_ms", "std_ms", "load_avg_1m",
            "cpu_median_ms", "cpu_min_ms")
_LATENCY = ("median_ms", "mean_ms", "min_ms", "cpu_median_ms", "cpu_min_ms")
_PUBLISHED_COLUMNS = ("model", "input_h", "input_w", "device", "soc", "cpu_cores_used", "runtime", "latency_ms")


@dataclass(frozen=True)
class Sample:
    """One variant's measured latency (passes of the same variant aggregated)."""

    variant: Any  # topnas.search_spaces.Variant
    latency_ms: float
    n_rows: int


# --------------------------------------------------------------------------------------- writing
def append_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> None:
    """Append one row to a CSV calibration file (header written first), flushed and fsynced.

    Called once per finished measurement, so a killed run loses at most the pass in progress.
    """
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise CalibrationError(f"row.{unknown[0]}", "<unknown column>", list(COLUMNS))
    if row.get("device_kind") == "adb":
        for col in PROVENANCE_COLUMNS:
            v = row.get(col)
            if v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v)):
                raise CalibrationError(f"row {row.get('variant_id', '?')}: column {col!r}", v,
                                       "a recorded value (phone rows record core, governor, runtime and version)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open("rb") as fh:  # a run killed mid-write can leave a partial last line
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                _drop_partial_line(path)
        _upgrade_header(path)
        new = path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS), extrasaction="raise")
        if new:
            writer.writeheader()
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
        fh.flush()
        os.fsync(fh.fileno())


def _upgrade_header(path: Path) -> None:
    """Rewrite a CSV written under an older (shorter) schema with the current header, in place."""
    with path.open(newline="") as fh:
        header = next(csv.reader(fh), [])
    if header == list(COLUMNS):
        return
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise CalibrationError(f"{path.name}: column {unknown[0]!r}", "<unknown column>", list(COLUMNS),
                               hint="cannot append to a file with another layout")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with atomic_path(path, suffix=".upgrade") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in COLUMNS})
        fh.flush()
        os.fsync(fh.fileno())


def _drop_partial_line(path: Path) -> None:
    data = path.read_bytes()
    cut = data.rfind(b"\n")
    path.write_bytes(data[: cut + 1] if cut >= 0 else b"")


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return ""
    return v


def write_calibration(df, path: str | os.PathLike[str]) -> Path:
    """Write a validated calibration frame as CSV or Parquet (by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [c for c in COLUMNS if c in df.columns]
    if path.suffix == ".parquet":
        df[cols].to_parquet(path, index=False)
    else:
        df[cols].to_csv(path, index=False)
    return path


def completed_keys(path: str | os.PathLike[str]) -> set[tuple[str, int]]:
    """(variant_id, pass_index) pairs already in a CSV file: what a resumed run skips."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    done = set()
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                done.add((row["variant_id"], int(row.get("pass_index") or 0)))
            except (KeyError, ValueError, TypeError):
                continue  # a truncated last line; validated properly by read_calibration
    return done


# --------------------------------------------------------------------------------------- reading
def read_calibration(path: str | os.PathLike[str], validate_variants: bool = True):
    """Read and validate a calibration CSV/Parquet file; returns a pandas DataFrame.

    Raises :class:`CalibrationError` naming the file, row (1-based data row) and column on any problem.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CalibrationError("calibration file", str(path), "an existing .csv or .parquet file")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype={"variant_id": str, "governor": str, "governor_after": str,
                                          "runtime_version": str, "times_ms": str, "variant_name": str,
                                          "cpu_times_ms": str})
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise CalibrationError("calibration file", str(path), "a readable CSV/Parquet file", hint=str(exc)) from exc
    if df.empty:
        raise CalibrationError(f"{path.name}", "<no rows>", "at least one measured row")
    if all(c in df.columns for c in _PUBLISHED_COLUMNS) and "variant_json" not in df.columns:
        df = _from_published(df, path)
    return validate_frame(df, name=path.name, validate_variants=validate_variants)


def validate_frame(df, name: str = "calibration", validate_variants: bool = True):
    """Check a calibration DataFrame (see module docstring); returns it with filled defaults."""
    import numpy as np
    import pandas as pd

    unknown = [c for c in df.columns if c not in COLUMNS]
    if unknown:
        raise CalibrationError(f"{name}: column {unknown[0]!r}", "<unknown column>", list(COLUMNS))
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CalibrationError(f"{name}: column {missing[0]!r}", "<missing>", f"required columns {REQUIRED_COLUMNS}")
    df = df.copy().reset_index(drop=True)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan if col in _NUMERIC else ""
    for col in _NUMERIC:
        conv = pd.to_numeric(df[col], errors="coerce")
        bad = conv.isna() & df[col].notna() & (df[col].astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CalibrationError(f"{name}: row {i + 1}, column {col!r}", df[col].iloc[i], "a number")
        df[col] = conv
    df["pass_index"] = df["pass_index"].fillna(0).astype(int)
    for col in ("variant_id", "variant_name", "device", "device_kind", "cpu_model", "governor", "governor_after",
                "runtime", "runtime_version", "times_ms", "cpu_times_ms", "model_sha256", "hostname", "timestamp", "source",
                "variant_json"):
        df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
    for col in _LATENCY:
        vals = df[col].to_numpy(dtype=float)
        present = ~np.isnan(vals) if col != "median_ms" else np.ones(len(vals), bool)
        bad = present & ~(np.isfinite(vals) & (vals > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CalibrationError(f"{name}: row {i + 1}, column {col!r}", vals[i], "a finite latency > 0 ms")
    if (df["min_ms"] > df["median_ms"] * (1 + 1e-9)).any():
        i = int(np.flatnonzero((df["min_ms"] > df["median_ms"] * (1 + 1e-9)).to_numpy())[0])
        raise CalibrationError(f"{name}: row {i + 1}, column 'min_ms'", df["min_ms"].iloc[i],
                               f"<= median_ms ({df['median_ms'].iloc[i]})")
    for col in ("device", "runtime", "variant_id", "variant_json"):
        empty = df[col].str.strip() == ""
        if empty.any():
            i = int(np.flatnonzero(empty.to_numpy())[0])
            raise CalibrationError(f"{name}: row {i + 1}, column {col!r}", "", "a non-empty value")
    dup = df.duplicated(["variant_id", "pass_index", "device", "runtime"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise CalibrationError(f"{name}: row {i + 1}", f"{df['variant_id'].iloc[i]} pass {df['pass_index'].iloc[i]}",
                               "one row per (variant_id, pass_index)", hint="duplicated measurement")
    if validate_variants:
        _check_variants(df, name)
    return df[list(COLUMNS)]


def _check_variants(df, name: str) -> None:
    from topnas.search_spaces import Variant

    cache: dict[str, Any] = {}
    for i, (vid, text, h, w) in enumerate(zip(df["variant_id"], df["variant_json"], df["input_h"], df["input_w"])):
        where = f"{name}: row {i + 1}, column 'variant_json'"
        if text not in cache:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CalibrationError(where, text[:60], "Variant.to_json() output", hint=str(exc)) from None
            try:
                cache[text] = Variant.from_dict(data, field="variant_json")
            except ConfigError as exc:
                raise CalibrationError(f"{where} -> {exc.field}", exc.value, exc.allowed) from None
        v = cache[text]
        if v.id != vid:
            raise CalibrationError(f"{name}: row {i + 1}, column 'variant_id'", vid, [v.id],
                                   hint="the id does not match variant_json")
        if (int(h), int(w)) != tuple(v.input_size):
            raise CalibrationError(f"{name}: row {i + 1}, column 'input_h'/'input_w'", (h, w), [v.input_size])


def check_single_target(df, name: str = "calibration") -> dict[str, Any]:
    """A fit needs one device/runtime/version/thread setting; returns it, raising on a mix."""
    target = {}
    for col in TARGET_COLUMNS:
        vals = df[col].dropna().unique().tolist() if col in df.columns else []
        vals = [v for v in vals if not (isinstance(v, str) and v == "")]
        if len(vals) > 1:
            raise CalibrationError(
                f"{name}: column {col!r}", sorted(map(str, vals)), "a single value per fit",
                hint="measurements from different devices/runtimes are not comparable; "
                     "split the file or filter it first",
            )
        target[col] = vals[0] if vals else None
        if isinstance(target[col], float) and target[col].is_integer():
            target[col] = int(target[col])
    return target


def samples_from(df, stat: str = "median_ms", combine: str = "min") -> list[Sample]:
    """One :class:`Sample` per variant: `stat` of each pass, combined over passes by `combine`.

    ``combine="min"`` (default) keeps the least-disturbed pass: on a shared host, interference only
    ever adds time, so the fastest pass median is the best estimate of the undisturbed latency.
    ``"median"`` and ``"mean"`` are the alternatives (the published figures use ``mean``).
    """
    import numpy as np

    from topnas.search_spaces import Variant

    if stat not in STATS:
        raise ConfigError("stat", stat, list(STATS))
    reducers = {"min": np.min, "median": np.median, "mean": np.mean}
    if combine not in reducers:
        raise ConfigError("combine", combine, list(reducers))
    out = []
    for _, group in df.groupby("variant_id", sort=False):
        vals = group[stat].to_numpy(dtype=float)
        if np.isnan(vals).all():
            vals = group["median_ms"].to_numpy(dtype=float)
        vals = vals[~np.isnan(vals)]
        v = Variant.from_json(group["variant_json"].iloc[0])
        out.append(Sample(v, float(reducers[combine](vals)), len(group)))
    return out


# ------------------------------------------------------------------------- published figures
def _from_published(df, path: Path):
    """Convert the published-figure layout (preset name, size, one latency) into calibration rows."""
    import pandas as pd

    from topnas.search_spaces import preset_variant
    from topnas.topformer import PRESETS

    rows = []
    seen: dict[str, int] = {}
    for i, r in df.iterrows():
        preset = str(r["model"]).removeprefix("topformer_")
        if preset not in PRESETS:
            raise CalibrationError(f"{path.name}: row {i + 1}, column 'model'", r["model"],
                                   [f"topformer_{p}" for p in PRESETS])
        try:
            v = preset_variant(preset, (int(r["input_h"]), int(r["input_w"])))
        except (ValueError, TypeError) as exc:
            raise CalibrationError(f"{path.name}: row {i + 1}, column 'input_h'/'input_w'",
                                   (r["input_h"], r["input_w"]), "ints >= 32", hint=str(exc)) from None
        k = seen.get(v.id, 0)
        seen[v.id] = k + 1
        lat = pd.to_numeric(r["latency_ms"], errors="coerce")
        rows.append({
            "variant_id": v.id, "variant_name": preset, "input_h": v.input_size[0], "input_w": v.input_size[1],
            "variant_json": v.to_json(), "pass_index": k, "device": str(r["soc"]), "device_kind": "published",
            "cpu_model": str(r["soc"]), "runtime": _runtime_name(str(r["runtime"])), "runtime_version": "",
            "intra_threads": int(r["cpu_cores_used"]), "inter_threads": 1, "median_ms": lat, "mean_ms": lat,
            "source": f"{r.get('source', '')} ({r.get('reading', '')})".strip(),
        })
    return pd.DataFrame(rows)


def _runtime_name(text: str) -> str:
    t = text.lower()
    for name in ("tnn", "onnxruntime", "tflite", "paddle"):
        if name in t:
            return name
    return text

