"""Measure variants on an Android phone over adb, in the TopFormer authors' protocol.

Protocol (hustvl/TopFormer ``tnn_runtime.md``: TNN on one big core of a Snapdragon 865): export the
latency graph to ONNX, convert it for the
runtime (TNN: ``onnx2tnn``, TFLite: an ONNX -> .tflite converter, both through a configurable
converter command; onnxruntime: the ONNX file itself), push model + benchmark binary (+ shared
libraries) to the device, pin the benchmark to ONE big core with ``taskset``, record the cpufreq
governor and the thermal-zone temperatures before and after, run warm-up + timed runs with one
thread and parse the tool's timing output (:mod:`~topnas.platform.latency.parsers`). Transient adb
failures (device offline, connection reset, ...) are retried with back-off; anything else fails
with a one-line error naming the device, the command and what was expected.

Benchmark tools per runtime (``runtime: ort`` is accepted for ``onnxruntime``):

* ``tnn``: ``TNNTest`` (``-mt TNN -mp .. -dt ARM -th 1 -wc W -ic R -is input[1,3,H,W]``);
* ``onnxruntime``: ``onnxruntime_perf_test`` (``-e cpu -m times -r R -x 1 -y 1 -I model``; one
  warm-up run) or topnas's own ``ort_bench``, which takes the same arguments and also prints the
  library version (build it for a Linux/ARM-Linux target with ``python -m
  topnas.platform.latency.native OUT_DIR``);
* ``tflite``: ``benchmark_model`` (``--graph=.. --num_threads=1 --warmup_runs=W
  --warmup_min_secs=0 --num_runs=R --min_secs=0``).

Rows go to the same calibration CSV schema as local runs (appended, resumable); every row records
the pinned core, its governor, the runtime and the runtime version (printed by the tool, else
``runtime_version`` from the config; a run where neither exists is an error). TNN reports only
min / max / average: ``median_ms`` then holds the average (what the TopFormer figures report);
onnxruntime's ``median_ms`` is its P50 when printed, TFLite's its median when printed, else the
average. ``times_ms`` stays empty.

Config (YAML ``adb:`` section or :class:`AdbConfig` fields)::

    adb:
      serial: 1a2b3c4d              # adb -s; required when several devices are attached
      runtime: tnn                  # tnn | onnxruntime (alias ort) | tflite
      runtime_version: "TNN v0.3.0" # required for tnn/tflite (their tools do not print it)
      benchmark_binary: build/TNNTest
      libraries: [build/libTNN.so]
      converter: "python3 tools/convert2tnn/converter.py onnx2tnn {onnx} -optimize -v=v3.0 -o {out_dir}"
      core: null                    # null: the core with the highest cpuinfo_max_freq (a big core)
      warmup: 5
      runs: 20
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from topnas.errors import ConfigError, TopnasError, check_choice, check_keys
from topnas.platform.latency.parsers import (
    BenchmarkParseError,
    last_line,
    parse_governor,
    parse_max_freqs,
    parse_ort_perf_test,
    parse_temperatures,
    parse_tflite_benchmark,
    pick_tnn,
)
from topnas.platform.latency.measurements import append_row, completed_keys

__all__ = ["AdbConfig", "AdbDevice", "AdbError", "measure_adb", "RUNTIMES", "RUNTIME_ALIASES", "TRANSIENT_ERRORS"]

log = logging.getLogger(__name__)
RUNTIMES = ("tnn", "onnxruntime", "tflite")
RUNTIME_ALIASES = {"ort": "onnxruntime"}
# runtimes whose model is converted from ONNX by `converter`, and the files the converter must write
_CONVERTED = {"tnn": (".tnnproto", ".tnnmodel"), "tflite": (".tflite",)}
_TOOL = {"tnn": "TNNTest", "onnxruntime": "onnxruntime_perf_test", "tflite": "TFLite benchmark_model"}
# adb's own messages for a connection that may come back (USB hiccup, adbd restart, screen lock)
TRANSIENT_ERRORS = (
    r"device offline", r"no devices/emulators found", r"device '[^']*' not found", r"error: closed",
    r"protocol fault", r"connection reset", r"broken pipe", r"device still authorizing", r"cannot connect",
    r"timed out after",
)
_TRANSIENT = re.compile("|".join(TRANSIENT_ERRORS), re.IGNORECASE)


class AdbError(TopnasError):
    """An adb command failed (after retries for transient errors). One-line message; the full
    output is kept in ``output`` and the exit status in ``returncode`` (None: adb did not run it)."""

    def __init__(self, message: str, output: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.output = output
        self.returncode = returncode


@dataclass(frozen=True)
class AdbConfig:
    serial: str | None = None
    adb: str = "adb"
    runtime: str = "tnn"
    runtime_version: str = ""
    benchmark_binary: str = ""
    libraries: tuple[str, ...] = ()
    converter: str = ""
    remote_dir: str = "/data/local/tmp/topnas"
    core: int | None = None
    warmup: int = 5
    runs: int = 20
    threads: int = 1
    retries: int = 3
    retry_delay_s: float = 1.0
    timeout_s: float = 600.0
    device_name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "runtime", RUNTIME_ALIASES.get(self.runtime, self.runtime))
        check_choice("adb.runtime", self.runtime, list(RUNTIMES) + list(RUNTIME_ALIASES))
        if self.warmup < 0 or self.runs < 1:
            raise ConfigError("adb.runs", (self.warmup, self.runs), "warmup >= 0 and runs >= 1")
        if self.retries < 0:
            raise ConfigError("adb.retries", self.retries, "an int >= 0")
        if not self.benchmark_binary:
            raise ConfigError("adb.benchmark_binary", self.benchmark_binary,
                              f"a local path to {_TOOL[self.runtime]} built for the device")
        if self.runtime in _CONVERTED and not self.converter:
            raise ConfigError("adb.converter", self.converter, "a command template with {onnx} and {out_dir} that "
                              f"writes {' + '.join(_CONVERTED[self.runtime])}")
        if self.runtime in _CONVERTED and not self.runtime_version:
            raise ConfigError("adb.runtime_version", self.runtime_version,
                              f"the {self.runtime} version built into {_TOOL[self.runtime]}, e.g. 'v0.3.0' "
                              "(every row records it; the tool does not print it)")
        object.__setattr__(self, "libraries", tuple(self.libraries))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AdbConfig":
        if "adb" in data and isinstance(data["adb"], Mapping):
            data = data["adb"]
        check_keys("adb", data, [f.name for f in dataclasses.fields(cls)])
        return cls(**dict(data))

    @classmethod
    def yaml_section(cls, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The raw ``adb:`` section of a YAML file (keys checked, values not yet validated), so
        command-line overrides can be merged before validation."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError("adb config", str(path), "an existing YAML file")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, Mapping):
            raise ConfigError("adb config", str(path), "a YAML mapping with an `adb:` section")
        data = data["adb"] if isinstance(data.get("adb"), Mapping) else data
        check_keys("adb", data, [f.name for f in dataclasses.fields(cls)])
        return dict(data)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> "AdbConfig":
        return cls.from_dict(cls.yaml_section(path))


@dataclass
class AdbDevice:
    """One attached device, driven through the ``adb`` executable on PATH (or ``config.adb``)."""

    config: AdbConfig
    sleep: Callable[[float], None] = time.sleep
    _core: int | None = field(default=None, init=False)

    # ------------------------------------------------------------------ raw adb
    def _base(self) -> list[str]:
        cmd = [self.config.adb]
        if self.config.serial:
            cmd += ["-s", self.config.serial]
        return cmd

    @property
    def label(self) -> str:
        """How errors name the device."""
        c = self.config
        return f"device {c.serial or 'attached'}" + (f" ({c.device_name})" if c.device_name else "")

    def run(self, *args: str, check: bool = True) -> str:
        """``adb [-s serial] args...``, retrying transient failures; returns stdout + stderr."""
        cmd = self._base() + list(args)
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            rc: int | None = None
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.config.timeout_s, check=False)
                text = (proc.stdout or "") + (proc.stderr or "")
                rc = proc.returncode
                failed = rc != 0
            except subprocess.TimeoutExpired as exc:
                text, failed = f"timed out after {exc.timeout} s", True
            except FileNotFoundError:
                raise AdbError(f"adb executable {self.config.adb!r} not found; install platform-tools or set "
                               "adb.adb to its path") from None
            transient = failed and bool(_TRANSIENT.search(text))
            if not failed or not check:
                return text
            if not transient or attempt == attempts:
                raise AdbError(f"{self.label}: `{shlex.join(cmd)}` failed (exit {rc}, attempt {attempt}/{attempts}): "
                               f"{last_line(text)}", output=text, returncode=rc)
            delay = self.config.retry_delay_s * 2 ** (attempt - 1)
            log.warning("transient adb error (%s); retry %d/%d in %.1f s", text.strip()[:120], attempt,
                        attempts - 1, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")

    def shell(self, command: str, check: bool = True) -> str:
        return self.run("shell", command, check=check)

    # ------------------------------------------------------------------ device state
    def check_attached(self) -> None:
        out = self.run_plain("devices")
        states = {}
        for line in out.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2:
                states[parts[0]] = parts[1]
        serial = self.config.serial
        if serial is None:
            ready = [s for s, st in states.items() if st == "device"]
            if len(ready) != 1:
                raise ConfigError("adb.serial", None, sorted(states) or ["<no device attached>"],
                                  hint="exactly one device must be attached when no serial is given")
            return
        if states.get(serial) != "device":
            raise ConfigError("adb.serial", serial, sorted(s for s, st in states.items() if st == "device")
                              or ["<no device attached>"], hint=f"state: {states.get(serial, 'not attached')}")

    def run_plain(self, *args: str) -> str:
        """adb without ``-s`` (for ``devices``)."""
        saved = self.config
        self.config = dataclasses.replace(saved, serial=None)
        try:
            return self.run(*args)
        finally:
            self.config = saved

    def getprop(self, name: str) -> str:
        return self.shell(f"getprop {name}").strip()

    def soc(self) -> str:
        for prop in ("ro.soc.model", "ro.board.platform", "ro.hardware"):
            v = self.getprop(prop)
            if v:
                return v
        return "unknown"

    def big_core(self) -> int:
        if self.config.core is not None:
            return self.config.core
        if self._core is None:
            out = self.shell("for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do "
                             "c=${f#/sys/devices/system/cpu/cpu}; echo cpu${c%%/*}:$(cat $f); done", check=False)
            freqs = parse_max_freqs(out)
            if not freqs:
                raise AdbError(f"could not read cpuinfo_max_freq on the device; set adb.core. Output:\n{out[-500:]}")
            top = max(freqs.values())
            self._core = max(c for c, f in freqs.items() if f == top)  # the last (prime) core of the fastest
        return self._core

    def governor(self, core: int) -> str:
        """The core's cpufreq governor, or ``unknown`` when the file is not readable."""
        out = self.shell(f"cat /sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor", check=False)
        return parse_governor(out) or "unknown"

    def max_temperature(self) -> float:
        temps = parse_temperatures(self.shell("cat /sys/class/thermal/thermal_zone*/temp", check=False))
        return max(temps) if temps else float("nan")

    # ------------------------------------------------------------------ files
    def push(self, local: str | os.PathLike[str], remote: str) -> None:
        if not Path(local).exists():
            raise ConfigError("adb push", str(local), "an existing local file")
        self.run("push", os.fspath(local), remote)

    def prepare(self) -> str:
        """Create the remote folder and push the benchmark binary + libraries; returns the binary path."""
        rd = self.config.remote_dir
        for local, field_name in [(self.config.benchmark_binary, "adb.benchmark_binary")] + [
                (lib, "adb.libraries") for lib in self.config.libraries]:
            if not Path(local).is_file():
                raise ConfigError(field_name, local, "an existing local file", hint=f"to push to {self.label}")
        self.shell(f"mkdir -p {shlex.quote(rd)}")
        for lib in self.config.libraries:
            self.push(lib, f"{rd}/{Path(lib).name}")
        binary = f"{rd}/{Path(self.config.benchmark_binary).name}"
        self.push(self.config.benchmark_binary, binary)
        self.shell(f"chmod 755 {shlex.quote(binary)}")
        return binary

    # ------------------------------------------------------------------ benchmark
    def benchmark_command(self, binary: str, model_files: Sequence[str], core: int, input_size: Sequence[int]) -> str:
        c = self.config
        mask = format(1 << core, "x")
        env = f"LD_LIBRARY_PATH={shlex.quote(c.remote_dir)}"
        if c.runtime == "tnn":
            proto = next(f for f in model_files if f.endswith(".tnnproto"))
            shape = f"input[1,3,{input_size[0]},{input_size[1]}]"  # TNNTest -is: name[n,c,h,w]
            args = (f"-mt TNN -mp {shlex.quote(proto)} -dt ARM -th {c.threads} -wc {c.warmup} -ic {c.runs} "
                    f"-is {shlex.quote(shape)}")
        elif c.runtime == "tflite":
            graph = next(f for f in model_files if f.endswith(".tflite"))
            args = (f"--graph={shlex.quote(graph)} --num_threads={c.threads} --warmup_runs={c.warmup} "
                    f"--warmup_min_secs=0 --num_runs={c.runs} --min_secs=0")
        else:
            args = f"-e cpu -m times -r {c.runs} -x {c.threads} -y 1 -I {shlex.quote(model_files[0])}"
        return f"{env} taskset {mask} {shlex.quote(binary)} {args}"

    def parse(self, text: str, model_files: Sequence[str]) -> tuple[dict[str, float], str | None]:
        """(latency stats in ms, runtime version printed by the tool or None)."""
        nan = float("nan")
        if self.config.runtime == "tnn":
            r = pick_tnn(text, "ARM", Path(model_files[0]).name)
            return {"median_ms": r.avg_ms, "mean_ms": r.avg_ms, "min_ms": r.min_ms}, None
        if self.config.runtime == "tflite":
            t = parse_tflite_benchmark(text)
            return {"median_ms": t.median_ms if t.median_ms is not None else t.avg_ms, "mean_ms": t.avg_ms,
                    "min_ms": t.min_ms if t.min_ms is not None else nan,
                    "std_ms": t.std_ms if t.std_ms is not None else nan}, None
        o = parse_ort_perf_test(text)
        return {"median_ms": o.p50_ms if o.p50_ms is not None else o.avg_ms, "mean_ms": o.avg_ms,
                "min_ms": o.min_ms if o.min_ms is not None else nan}, o.version

    def benchmark(self, binary: str, model_files: Sequence[str], core: int,
                  input_size: Sequence[int]) -> tuple[dict[str, float], str | None, str]:
        """Run the benchmark once; (stats, printed version, command). One-line AdbError when the
        binary is missing, exits non-zero or prints no timing."""
        cmd = self.benchmark_command(binary, model_files, core, input_size)
        tool = _TOOL[self.config.runtime]
        try:
            text = self.shell(cmd)
        except AdbError as exc:
            if exc.returncode is None:
                raise
            raise AdbError(f"{self.label}: `{cmd}` exited with status {exc.returncode}; expected {tool} to run "
                           f"and print its timings; output ended with: {last_line(exc.output)!r}",
                           output=exc.output, returncode=exc.returncode) from None
        try:
            stats, version = self.parse(text, model_files)
        except BenchmarkParseError as exc:
            raise AdbError(f"{self.label}: `{cmd}` printed no timing; expected {exc.expected} from {tool}; "
                           f"output ended with: {last_line(text)!r}", output=text, returncode=0) from None
        return stats, version, cmd


def _convert(config: AdbConfig, onnx: Path) -> list[Path]:
    """Runtime model files for `onnx` (TNN / TFLite: run the converter once per model and cache)."""
    if config.runtime not in _CONVERTED:
        return [onnx]
    suffixes = _CONVERTED[config.runtime]
    out_dir = onnx.with_suffix("").with_name(f"{onnx.stem}_{config.runtime}")

    def found() -> list[Path]:
        return [p for s in suffixes for p in sorted(out_dir.glob(f"*{s}"))]

    if len(found()) < len(suffixes):
        out_dir.mkdir(parents=True, exist_ok=True)
        cmd = config.converter.format(onnx=shlex.quote(str(onnx)), out_dir=shlex.quote(str(out_dir)))
        proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or len(found()) < len(suffixes):
            raise AdbError(f"{config.runtime} conversion `{cmd}` failed (exit {proc.returncode}); expected it to write "
                           f"{' + '.join(suffixes)} into {out_dir}; output ended with: "
                           f"{last_line(proc.stdout + proc.stderr)!r}", output=proc.stdout + proc.stderr,
                           returncode=proc.returncode)
    return found()


def measure_adb(
    variants: Iterable[Any],
    out: str | os.PathLike[str],
    config: AdbConfig,
    *,
    passes: int = 1,
    model_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
    device: AdbDevice | None = None,
) -> int:
    """Measure every variant on the phone; one CSV row per (variant, pass); resumes like measure_local."""
    from topnas.platform.latency.measure_local import _sha256, export_cached, plan_measurement

    out, order, model_dir = plan_measurement(variants, out, passes, model_dir)
    done = completed_keys(out)
    if all((v.id, p) in done for v in order for p in range(passes)):
        return 0  # resumed after the last row: do not touch the device
    dev = device or AdbDevice(config)
    say = progress or log.info
    dev.check_attached()
    binary = dev.prepare()
    core = dev.big_core()
    soc = dev.soc()
    model_name = dev.getprop("ro.product.model")
    device_label = config.device_name or soc
    written = 0
    for p in range(passes):
        done = completed_keys(out)
        todo = [v for v in (order if p % 2 == 0 else order[::-1]) if (v.id, p) not in done]
        say(f"pass {p}: {len(todo)} to measure on {device_label} ({model_name}), core {core}")
        for i, v in enumerate(todo):
            local_files = _convert(config, export_cached(v, model_dir))
            remote = []
            for f in local_files:
                r = f"{config.remote_dir}/{f.name}"
                dev.push(f, r)
                remote.append(r)
            gov, temp = dev.governor(core), dev.max_temperature()
            stats, printed_version, cmd = dev.benchmark(binary, remote, core, v.input_size)
            gov_after, temp_after = dev.governor(core), dev.max_temperature()
            version = printed_version or config.runtime_version
            if not version:
                raise AdbError(f"{dev.label}: `{cmd}` printed no runtime version and adb.runtime_version is empty; "
                               "expected one of them (every row records the runtime version)", returncode=0)
            if printed_version and config.runtime_version and printed_version != config.runtime_version:
                log.warning("%s reports %s %s, config says %s; recording the reported one", binary, config.runtime,
                            printed_version, config.runtime_version)
            dev.shell("rm -f " + " ".join(shlex.quote(r) for r in remote), check=False)
            row = {
                "variant_id": v.id, "variant_name": v.name or (v.preset or ""), "input_h": v.input_size[0],
                "input_w": v.input_size[1], "variant_json": v.to_json(), "pass_index": p, "device": device_label,
                "device_kind": "adb", "cpu_model": soc, "core_id": core, "governor": gov, "governor_after": gov_after,
                "temp_before_c": temp, "temp_after_c": temp_after, "runtime": config.runtime,
                "runtime_version": version, "intra_threads": config.threads, "inter_threads": 1,
                "n_warmup": 1 if config.runtime == "onnxruntime" else config.warmup, "n_runs": config.runs,
                **{k: round(val, 4) for k, val in stats.items()},
                "hostname": config.serial or model_name, "model_sha256": _sha256(local_files[-1]),
                "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "source": f"topnas measure_adb ({model_name}; {Path(config.benchmark_binary).name})",
            }
            append_row(out, row)
            written += 1
            say(f"pass {p} [{i + 1}/{len(todo)}] {v.id}: {stats['median_ms']:.2f} ms "
                f"(governor {gov}, {temp:.1f} -> {temp_after:.1f} C)")
    return written
