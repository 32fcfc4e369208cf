"""The adb harness end to end with a REAL benchmark binary, executed by an adb stand-in.

``ort_bench`` is compiled here with gcc against the libonnxruntime.so of the onnxruntime wheel;
tests/helpers/adb_standin.py plays a Snapdragon 865 phone whose /data/local/tmp is a folder on this
machine, so push, pinning, run, timing and parsing all handle output that nobody wrote for the test.
"""
from __future__ import annotations

import os
import re
import shutil

import onnxruntime
import pytest
import yaml

from tests.helpers import adb_standin
from topnas.errors import ConfigError
from topnas.platform.cli import main
from topnas.platform.latency.adb import AdbConfig, AdbDevice, AdbError, measure_adb
from topnas.platform.latency.native import build_ort_bench
from topnas.platform.latency.measurements import read_calibration
from topnas.search_spaces import preset_variant

SERIAL = "STANDIN865"
REMOTE = "/data/local/tmp/topnas"


@pytest.fixture(scope="module")
def ort_bench(tmp_path_factory):
    if shutil.which(os.environ.get("CC", "gcc")) is None:
        pytest.skip("no C compiler to build ort_bench")
    return build_ort_bench(tmp_path_factory.mktemp("ort_bench"))


@pytest.fixture(scope="module")
def exported(request, tmp_path_factory):
    """A real TopFormer export (tiny, 128x128: runs in milliseconds). The dynamo exporter takes
    10-30 s, so the file is kept in pytest's cache folder between runs (keyed by variant id and
    the torch version); a fresh checkout exports it once."""
    import torch

    from topnas.platform.latency.measure_local import export_cached

    v = preset_variant("tiny", (128, 128))
    cache = request.config.cache.mkdir(f"topnas_onnx_torch{torch.__version__.replace('+', '_')}")
    model_dir = tmp_path_factory.mktemp("models")
    onnx = export_cached(v, cache)
    shutil.copy(onnx, model_dir / onnx.name)
    return v, model_dir, model_dir / onnx.name


@pytest.fixture
def phone(tmp_path, monkeypatch):
    home = tmp_path / "standin"
    bin_dir = adb_standin.install(home)
    root = adb_standin.make_device(home, SERIAL, governors={7: "performance"})
    adb_standin.make_device(home, "OTHER1", state="offline")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ADB_STANDIN_HOME", str(home))
    return home, root


def _config(ort_bench, **kw) -> AdbConfig:
    return AdbConfig.from_dict({"serial": SERIAL, "runtime": "ort", "benchmark_binary": str(ort_bench.binary),
                                "libraries": [str(ort_bench.library)], "runs": 12, "retry_delay_s": 0.0, **kw})


def test_round_trip_with_a_real_binary(phone, ort_bench, exported, tmp_path):
    home, root = phone
    v, model_dir, onnx = exported
    out = tmp_path / "phone.csv"
    assert measure_adb([v], out, _config(ort_bench), model_dir=model_dir) == 1

    # what the binary printed on the "device" (logged by the stand-in), parsed independently
    runs = [c for c in adb_standin.calls(home) if c["args"][2:3] == ["shell"] and "taskset" in c["args"][-1]]
    assert len(runs) == 1 and runs[0]["rc"] == 0
    printed = runs[0]["out"]
    avg = float(re.search(r"^Average inference time cost total: ([\d.]+) ms$", printed, re.M).group(1))
    p50 = float(re.search(r"^P50 Latency: ([\d.e-]+) s$", printed, re.M).group(1)) * 1000
    fastest = float(re.search(r"^Min Latency: ([\d.e-]+) s$", printed, re.M).group(1)) * 1000
    assert re.search(r"^Total inference requests: 12$", printed, re.M)

    row = read_calibration(out).iloc[0]
    assert row["median_ms"] > 0 and row["mean_ms"] > 0
    assert row["mean_ms"] == pytest.approx(avg, abs=1e-4)
    assert row["median_ms"] == pytest.approx(p50, abs=1e-4)
    assert row["min_ms"] == pytest.approx(fastest, abs=1e-4) and row["min_ms"] <= row["median_ms"]
    # provenance: core, governor, runtime, version (the version the binary printed; none was configured)
    assert (row["core_id"], row["governor"], row["governor_after"]) == (7, "performance", "performance")
    assert (row["runtime"], row["runtime_version"]) == ("onnxruntime", onnxruntime.__version__)
    assert (row["device"], row["cpu_model"], row["device_kind"]) == ("SM8250", "SM8250", "adb")
    assert (row["n_warmup"], row["n_runs"], row["intra_threads"]) == (1, 12, 1)
    assert row["temp_before_c"] == pytest.approx(36.0)

    # it really ran the pushed binary, pinned to the prime core, and cleaned the model up
    affinity = (root / ".affinity").read_text().splitlines()
    assert len(affinity) == 1 and affinity[0].startswith(f"80 {root}{REMOTE}/ort_bench -e cpu -m times -r 12 -x 1")
    assert (root / f"{REMOTE.lstrip('/')}/ort_bench").is_file()
    assert (root / f"{REMOTE.lstrip('/')}/{ort_bench.library.name}").is_file()
    assert not (root / f"{REMOTE.lstrip('/')}/{onnx.name}").exists()

    assert measure_adb([v], out, _config(ort_bench), model_dir=model_dir) == 0  # resume: nothing left


def test_cli_measure_over_the_standin(phone, ort_bench, exported, tmp_path, capsys):
    v, model_dir, _ = exported
    cfg = {"adb": {"benchmark_binary": str(ort_bench.binary),  # runtime: given on the command line
                   "libraries": [str(ort_bench.library)], "runs": 5, "retry_delay_s": 0.0}}
    (tmp_path / "adb.yaml").write_text(yaml.safe_dump(cfg))
    vfile = v.save(tmp_path / "v.yaml")
    rc = main(["latency", "measure", "--variants", str(vfile), "--device", "adb", "--adb-config",
               str(tmp_path / "adb.yaml"), "--adb-serial", SERIAL, "--adb-runtime", "ort", "--out",
               str(tmp_path / "c.csv"), "--model-dir", str(model_dir)])
    assert rc == 0 and "wrote 1 rows" in capsys.readouterr().out
    row = read_calibration(tmp_path / "c.csv").iloc[0]
    assert row["runtime_version"] == onnxruntime.__version__ and row["n_runs"] == 5


def test_standin_answers_device_queries(phone):
    home, root = phone
    dev = AdbDevice(AdbConfig.from_dict({"serial": SERIAL, "runtime": "ort", "benchmark_binary": "x"}))
    dev.check_attached()
    assert (dev.soc(), dev.getprop("ro.product.model"), dev.big_core()) == ("SM8250", "Mi 10", 7)
    assert (dev.governor(0), dev.governor(7)) == ("schedutil", "performance")
    (root / "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor").unlink()
    assert dev.governor(3) == "unknown"
    assert dev.max_temperature() == pytest.approx(36.0)
    with pytest.raises(AdbError, match="Invalid argument"):  # core 8 does not exist on this phone
        dev.shell("taskset 100 true")


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_binary_missing_on_the_device(phone, ort_bench):
    dev = AdbDevice(_config(ort_bench))
    with pytest.raises(AdbError) as exc:
        dev.benchmark(f"{REMOTE}/ort_bench", [f"{REMOTE}/m.onnx"], 7, (128, 128))
    msg = _one_line(exc)
    assert f"device {SERIAL}" in msg and f"taskset 80 {REMOTE}/ort_bench -e cpu" in msg
    assert "exited with status 127" in msg and "expected onnxruntime_perf_test to run" in msg and "not found" in msg


def test_binary_exits_non_zero(phone, ort_bench, tmp_path):
    dev = AdbDevice(_config(ort_bench))
    binary = dev.prepare()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx model")
    dev.push(junk, f"{REMOTE}/junk.onnx")
    with pytest.raises(AdbError) as exc:
        dev.benchmark(binary, [f"{REMOTE}/junk.onnx"], 7, (128, 128))
    msg = _one_line(exc)
    assert f"device {SERIAL}" in msg and f"{REMOTE}/junk.onnx" in msg
    assert "exited with status 1" in msg and "CreateSession failed" in msg


def test_binary_prints_no_timing(phone, tmp_path):
    """A real executable that runs fine but is not a benchmark: /bin/true prints nothing."""
    true = shutil.which("true")
    if true is None:
        pytest.skip("no `true` executable")
    dev = AdbDevice(AdbConfig.from_dict({"serial": SERIAL, "runtime": "ort", "benchmark_binary": true,
                                         "retry_delay_s": 0.0}))
    binary = dev.prepare()
    with pytest.raises(AdbError) as exc:
        dev.benchmark(binary, [f"{REMOTE}/m.onnx"], 7, (128, 128))
    msg = _one_line(exc)
    assert f"device {SERIAL}" in msg and f"{REMOTE}/true -e cpu" in msg
    assert "printed no timing" in msg and "Average inference time cost" in msg and "<empty output>" in msg


def test_local_binary_missing(phone, exported, tmp_path):
    v, model_dir, _ = exported
    cfg = AdbConfig.from_dict({"serial": SERIAL, "runtime": "ort", "benchmark_binary": str(tmp_path / "nope"),
                               "retry_delay_s": 0.0})
    with pytest.raises(ConfigError) as exc:
        measure_adb([v], tmp_path / "x.csv", cfg, model_dir=model_dir)
    msg = _one_line(exc)
    assert "adb.benchmark_binary" in msg and "nope" in msg and f"device {SERIAL}" in msg
