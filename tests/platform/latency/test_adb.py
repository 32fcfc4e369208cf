"""The TNN adb path driven through a fake `adb` executable on PATH that plays a Snapdragon 865 phone.

Edge cases only (transient-error retry, serial handling, TNN conversion and command line): the
"TNNTest" here is a stub that prints a line in TNN's Timer::Print format. The end-to-end test with
a real compiled benchmark executed by an adb stand-in is test_adb_device.py."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from topnas.platform.cli import main
from topnas.platform.latency.adb import AdbConfig, AdbDevice, AdbError, measure_adb
from topnas.platform.latency.measurements import read_calibration
from topnas.search_spaces import preset_variant

FAKE_ADB = r'''
import json, os, re, sys
from pathlib import Path

state = Path(os.environ["FAKE_ADB_STATE"])
calls = state / "calls.jsonl"
args = sys.argv[1:]
with calls.open("a") as fh:
    fh.write(json.dumps(args) + "\n")
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
fs = state / "fs"
fs.mkdir(exist_ok=True)

def counter(name):
    f = state / name
    n = int(f.read_text()) if f.exists() else 0
    f.write_text(str(n + 1))
    return n

if args == ["devices"]:
    print("List of devices attached\nFAKE865\tdevice\nOTHER1\toffline\n")
    sys.exit(0)
if serial != "FAKE865":
    print(f"adb: device '{serial}' not found", file=sys.stderr)
    sys.exit(1)
if args[0] == "push":
    # the first push of the session hits a transient USB error
    if counter("pushes") == 0:
        print("adb: error: device offline", file=sys.stderr)
        sys.exit(1)
    local, remote = args[1], args[2]
    (fs / remote.strip("/").replace("/", "__")).write_bytes(Path(local).read_bytes())
    print(f"{local}: 1 file pushed, 0 skipped.")
    sys.exit(0)
if args[0] != "shell":
    print("unknown command", file=sys.stderr)
    sys.exit(1)
cmd = args[1]
if cmd.startswith("getprop"):
    print({"ro.soc.model": "SM8250", "ro.product.model": "Mi 10"}.get(cmd.split()[1], ""))
elif "cpuinfo_max_freq" in cmd:
    print("cpu0:1804800\ncpu1:1804800\ncpu2:1804800\ncpu3:1804800\ncpu4:2419200\ncpu5:2419200\n"
          "cpu6:2419200\ncpu7:2841600")
elif "scaling_governor" in cmd:
    print("performance" if "cpu7" in cmd else "schedutil")
elif "thermal_zone" in cmd:
    n = counter("temps")
    print(f"{36000 + 500 * n}\n{35100}\n-273000")
elif cmd.startswith(("mkdir", "chmod", "rm ")):
    pass
elif "taskset" in cmd:
    m = re.search(r"taskset (\w+) (\S+) (.*)", cmd)
    mask, binary, rest = m.groups()
    assert mask == "80", f"not pinned to cpu7: {mask}"
    assert (fs / binary.strip("/").replace("/", "__")).exists(), "binary was not pushed"
    proto = re.search(r"-mp (\S+)", rest).group(1)
    if not (fs / proto.strip("/").replace("/", "__")).exists():
        print(f"open {proto} failed")
        sys.exit(1)
    h = int(re.search(r"-is 'input\[1,3,(\d+),(\d+)\]'", rest).group(1))
    avg = 40.5 * (h / 512) ** 2
    name = proto.rsplit("/", 1)[-1]
    # the printf format of Timer::Print in Tencent/TNN test/timer.cc
    print(f"{name:<45s} TNN Benchmark time cost: min = {avg * 0.97:<8.3f} ms  |  max = {avg * 1.05:<8.3f} ms  |  "
          f"avg = {avg:<8.3f} ms ")
else:
    print(f"/system/bin/sh: {cmd.split()[0]}: not found")
    sys.exit(127)
'''

FAKE_CONVERTER = r'''
import sys
from pathlib import Path
onnx, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / (onnx.stem + ".tnnproto")).write_text("fake proto of " + onnx.name)
(out / (onnx.stem + ".tnnmodel")).write_bytes(b"\0" * 16)
'''


@pytest.fixture
def phone(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(f"#!{sys.executable} -S\n" + FAKE_ADB)
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_STATE", str(state))
    converter = tmp_path / "convert.py"
    converter.write_text(FAKE_CONVERTER)
    binary = tmp_path / "TNNTest"
    binary.write_bytes(b"\x7fELF fake")
    lib = tmp_path / "libTNN.so"
    lib.write_bytes(b"\x7fELF lib")
    cfg = {"serial": "FAKE865", "runtime": "tnn", "runtime_version": "TNN v0.3.0", "benchmark_binary": str(binary),
           "libraries": [str(lib)], "converter": f"{sys.executable} {converter} {{onnx}} {{out_dir}}",
           "warmup": 5, "runs": 16, "retry_delay_s": 0.0}
    return cfg, state


def _calls(state: Path) -> list[list[str]]:
    return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]


def _fake_models(model_dir: Path, variants) -> None:
    """Pre-seed the export cache so the test does not spend time in the ONNX exporter."""
    model_dir.mkdir(parents=True, exist_ok=True)
    for v in variants:
        (model_dir / f"{v.id}_{v.input_size[0]}x{v.input_size[1]}.onnx").write_bytes(b"fake onnx " + v.id.encode())


def test_measure_over_fake_adb(phone, tmp_path):
    cfg, state = phone
    variants = [preset_variant("tiny", (448, 448)), preset_variant("tiny", (512, 512))]
    _fake_models(tmp_path / "models", variants)
    out = tmp_path / "phone.csv"
    n = measure_adb(variants, out, AdbConfig.from_dict(cfg), model_dir=tmp_path / "models")
    assert n == 2
    df = read_calibration(out)
    assert list(df["device"].unique()) == ["SM8250"] and list(df["runtime"].unique()) == ["tnn"]
    assert (df["core_id"] == 7).all() and (df["governor"] == "performance").all()
    assert (df["governor_after"] == "performance").all()
    assert (df["temp_after_c"] > df["temp_before_c"]).all()
    r512 = df[df["input_h"] == 512].iloc[0]
    assert r512["median_ms"] == pytest.approx(40.5) and r512["min_ms"] == pytest.approx(40.5 * 0.97, abs=1e-3)
    assert r512["n_warmup"] == 5 and r512["n_runs"] == 16 and r512["runtime_version"] == "TNN v0.3.0"
    calls = _calls(state)
    assert all(c[:2] == ["-s", "FAKE865"] for c in calls if c != ["devices"])
    pushes = [c for c in calls if "push" in c]
    assert sum(c[-1].endswith("libTNN.so") for c in pushes) == 2  # retried once after "device offline"
    assert sum(c[-1].endswith("TNNTest") for c in pushes) == 1
    assert sum(c[-1].endswith(".tnnproto") for c in pushes) == 2
    bench = [c[-1] for c in calls if "taskset" in c[-1]]
    assert len(bench) == 2 and all("-th 1" in b and "-wc 5" in b and "-ic 16" in b and "-dt ARM" in b for b in bench)

    # resume: nothing left to do
    assert measure_adb(variants, out, AdbConfig.from_dict(cfg), model_dir=tmp_path / "models") == 0


def test_cli_measure_adb(phone, tmp_path, capsys):
    cfg, _ = phone
    import yaml

    (tmp_path / "adb.yaml").write_text(yaml.safe_dump({"adb": {**cfg, "serial": "WRONG"}}))
    v = preset_variant("small", (448, 448))
    _fake_models(tmp_path / "models", [v])
    vfile = v.save(tmp_path / "v.yaml")
    rc = main(["latency", "measure", "--variants", str(vfile), "--device", "adb", "--adb-config",
               str(tmp_path / "adb.yaml"), "--adb-serial", "FAKE865", "--out", str(tmp_path / "c.csv"),
               "--model-dir", str(tmp_path / "models")])
    assert rc == 0 and "wrote 1 rows" in capsys.readouterr().out


def test_unknown_serial_and_permanent_errors(phone):
    cfg, _ = phone
    with pytest.raises(Exception, match="FAKE865"):  # ConfigError listing the attached devices
        AdbDevice(AdbConfig.from_dict({**cfg, "serial": "NOPE"})).check_attached()
    dev = AdbDevice(AdbConfig.from_dict(cfg))
    with pytest.raises(AdbError, match="not found"):  # a shell error is not retried
        dev.shell("frobnicate --now")


def test_config_validation():
    with pytest.raises(Exception, match="adb.runtime"):
        AdbConfig.from_dict({"runtime": "caffe2", "benchmark_binary": "x"})
    with pytest.raises(Exception, match="adb.converter"):
        AdbConfig.from_dict({"runtime": "tnn", "benchmark_binary": "x"})
    with pytest.raises(Exception, match=r"adb.converter.*\.tflite"):
        AdbConfig.from_dict({"runtime": "tflite", "benchmark_binary": "x"})
    with pytest.raises(Exception, match="adb.runtime_version"):
        AdbConfig.from_dict({"runtime": "tflite", "benchmark_binary": "x", "converter": "c {onnx} {out_dir}"})
    assert AdbConfig.from_dict({"runtime": "ort", "benchmark_binary": "x"}).runtime == "onnxruntime"
    with pytest.raises(Exception, match="adb.seriall"):
        AdbConfig.from_dict({"seriall": "x", "benchmark_binary": "x", "runtime": "onnxruntime"})
