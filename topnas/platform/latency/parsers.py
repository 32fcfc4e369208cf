"""Parse what phone benchmark tools print: TNN's TNNTest / benchmark app, onnxruntime_perf_test,
TFLite's benchmark_model, and sysfs.

Formats handled (real printed output, with its source, lives in ``tests/platform/latency/data/``):

* TNN ``Timer::Print`` (``test/timer.cc``): ``<info> TNN Benchmark time cost: min = 26.282 ms |
  max = 27.592 ms | avg = 26.561 ms``, where ``<info>`` is the model file name (TNNTest) or
  ``<model> - <DEVICE>`` (the Android benchmark app), possibly behind a logcat prefix; the
  ``benchmark device: ARM`` / ``OPENCL`` headers of ``benchmark_models.sh`` tag the lines that
  follow (with the lower-case ``-t cpu`` of the TopFormer docs the script runs BOTH an ARM and an
  OpenCL pass: :func:`pick_tnn` keeps the ARM one);
* ``onnxruntime_perf_test`` (1.3 to current): ``Average inference time cost: 144.871 ms`` or
  ``Average inference time cost total: 98.96 ms`` or ``Average time cost: 58.8 ms``, run count from
  ``Total inference requests: N`` / ``Runs:N`` / ``Total iterations: N``, percentiles from
  ``P50 Latency: 0.0995 s`` or ``P50 Latency is 0.0587 sec``; topnas's ``ort_bench`` prints the
  same lines plus ``ONNX Runtime version: X``;
* TFLite ``benchmark_model``: ``count=50 first=.. curr=.. min=.. max=.. avg=.. std=..`` (the last
  such line is the timed phase; the first is warm-up) and ``Inference timings in us: Init: ..,
  First inference: .., Warmup (avg): .., Inference (avg): ..`` (older builds: ``Average inference
  timings in us: Warmup: .., Init: .., no stats: ..``), all in microseconds;
* ``cat /sys/class/thermal/thermal_zone*/temp`` (milli-degrees or degrees) and cpufreq files.

Every "found no timing" case raises :class:`BenchmarkParseError` with a one-line message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from topnas.errors import TopnasError

__all__ = [
    "BenchmarkParseError",
    "TnnResult",
    "OrtPerfResult",
    "TfliteResult",
    "last_line",
    "parse_tnn",
    "pick_tnn",
    "parse_ort_perf_test",
    "parse_tflite_benchmark",
    "parse_governor",
    "parse_temperatures",
    "parse_max_freqs",
]


def last_line(text: str, limit: int = 160) -> str:
    """The last non-empty line of a tool's output (shortened), for one-line error messages."""
    from topnas import fileio

    return fileio.last_line(text, limit=limit, empty="<empty output>")


class BenchmarkParseError(TopnasError):
    """The benchmark output had no timing line; the one-line message quotes the last output line."""

    def __init__(self, tool: str, text: str, expected: str) -> None:
        self.tool, self.expected = tool, expected
        super().__init__(f"{tool}: no timing found (expected {expected}); output ended with: {last_line(text)!r}")


@dataclass(frozen=True)
class TnnResult:
    model: str  # timer info's model name ('' when the line does not name it)
    device: str  # "ARM", "OPENCL", ... from "<model> - DEVICE" or the last "benchmark device:" header
    min_ms: float
    max_ms: float
    avg_ms: float


_NUM = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_TNN_TIME = re.compile(
    r"(?:TNN\s+Benchmark\s+)?time\s+cost:\s*min\s*=\s*" + _NUM + r"\s*ms\s*\|\s*max\s*=\s*" + _NUM
    + r"\s*ms\s*\|\s*avg\s*=\s*" + _NUM + r"\s*ms",
    re.IGNORECASE,
)
_TNN_INFO = re.compile(r"(\S+)(?:\s+-\s+([A-Za-z_]+))?\s*$")
_TNN_DEVICE = re.compile(r"benchmark\s+device:\s*(\S+)", re.IGNORECASE)


def parse_tnn(text: str) -> list[TnnResult]:
    """Every ``time cost`` line of TNN output, in order, tagged with model and device."""
    header_device = ""
    out = []
    for line in text.splitlines():
        m = _TNN_DEVICE.search(line)
        if m:
            header_device = m.group(1).upper()
            continue
        m = _TNN_TIME.search(line)
        if not m:
            continue
        model, device = "", header_device
        info = _TNN_INFO.search(line[: m.start()].rstrip())
        if info:
            token = info.group(1)
            if re.search(r"[A-Za-z0-9]", token) and not token.endswith(":") and token.upper() != "TNN":
                model = token
            if info.group(2):
                device = info.group(2).upper()
        out.append(TnnResult(model, device, float(m.group(1)), float(m.group(2)), float(m.group(3))))
    return out


def pick_tnn(text: str, device: str = "ARM", model: str | None = None) -> TnnResult:
    """The timing of `model` (a name or file stem; any when None) on `device` (ARM = CPU)."""
    results = parse_tnn(text)
    if not results:
        raise BenchmarkParseError("TNN", text, "a 'time cost: min = .. ms | max = .. ms | avg = .. ms' line")
    cands = [r for r in results if not r.device or r.device == device.upper()]
    if model:
        stem = model.rsplit("/", 1)[-1]
        named = [r for r in cands if r.model and (r.model == stem or r.model.startswith(stem.split(".")[0]))]
        cands = named or [r for r in cands if not r.model]
    if not cands:
        found = sorted({f"{r.model or '?'}@{r.device or '?'}" for r in results})
        raise BenchmarkParseError("TNN", text, f"a line for model {model!r} on device {device}; found {found}")
    return cands[-1]


@dataclass(frozen=True)
class OrtPerfResult:
    avg_ms: float
    runs: int | None
    min_ms: float | None
    max_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    first_ms: float | None
    version: str | None = None  # only ort_bench prints it


def _find(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text, re.IGNORECASE | re.MULTILINE)
    return float(m.group(1)) if m else None


def parse_ort_perf_test(text: str) -> OrtPerfResult:
    """Timings printed by ``onnxruntime_perf_test`` (latencies converted to ms)."""
    avg = _find(r"Average (?:inference )?time cost(?: total)?:\s*" + _NUM + r"\s*ms", text)
    if avg is None:
        raise BenchmarkParseError("onnxruntime_perf_test", text, "'Average inference time cost[ total]: <x> ms'")

    def lat(name: str) -> float | None:
        v = _find(rf"^\s*{name} Latency(?::| is)\s*" + _NUM + r"\s*s(?:ec)?\b", text)
        return None if v is None else v * 1000.0

    runs = next((v for v in (_find(p, text) for p in (r"Total inference requests:\s*(\d+)", r"^\s*Runs:\s*(\d+)",
                                                        r"Total iterations:\s*(\d+)")) if v is not None), None)
    version = re.search(r"^ONNX Runtime version:\s*(\S+)", text, re.MULTILINE)
    return OrtPerfResult(avg, int(runs) if runs is not None else None, lat("Min"), lat("Max"), lat("P50"),
                         lat("P90"), _find(r"First inference time cost:\s*" + _NUM + r"\s*ms", text),
                         version.group(1) if version else None)


@dataclass(frozen=True)
class TfliteResult:
    avg_ms: float
    runs: int | None
    min_ms: float | None
    max_ms: float | None
    std_ms: float | None
    median_ms: float | None  # newer builds print p5/median/p95 on the count= line
    init_ms: float | None
    first_ms: float | None
    warmup_avg_ms: float | None


_NUM_NC = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_TFL_STATS = re.compile(r"count=(\d+)(?P<rest>(?:\s+\w+=" + _NUM_NC + r")*)")
_TFL_SUMMARY = re.compile(
    r"Inference timings in us:\s*Init:\s*" + _NUM + r",\s*First inference:\s*" + _NUM
    + r",\s*Warmup \(avg\):\s*" + _NUM + r",\s*Inference \(avg\):\s*" + _NUM)
_TFL_SUMMARY_OLD = re.compile(
    r"Average inference timings in us:\s*Warmup:\s*" + _NUM + r",\s*Init:\s*" + _NUM + r",\s*no stats:\s*" + _NUM)


def parse_tflite_benchmark(text: str) -> TfliteResult:
    """Timings printed by TFLite's ``benchmark_model`` (microseconds converted to ms)."""
    stats: dict[str, float] = {}
    runs = None
    for m in _TFL_STATS.finditer(text):  # the last count= line is the timed phase
        runs = int(m.group(1))
        stats = {k: float(v) / 1000.0 for k, v in re.findall(r"(\w+)=" + _NUM, m.group("rest"))}
    new, old = _TFL_SUMMARY.search(text), _TFL_SUMMARY_OLD.search(text)
    init = first = warm = None
    if new:
        init, first, warm, avg = (float(new.group(i)) / 1000.0 for i in range(1, 5))
    elif old:
        warm, init, avg = (float(old.group(i)) / 1000.0 for i in range(1, 4))
    elif "avg" in stats:
        avg = stats["avg"]
    else:
        raise BenchmarkParseError("TFLite benchmark_model", text,
                                  "'Inference timings in us: ... Inference (avg): <x>' or a 'count=.. avg=..' line")
    return TfliteResult(avg, runs, stats.get("min"), stats.get("max"), stats.get("std"), stats.get("median"),
                        init, first, warm)


_GOVERNOR = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*$")


def parse_governor(text: str) -> str | None:
    """A cpufreq governor name (``performance``, ``schedutil``, ...) or None when `text` is not one."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    m = _GOVERNOR.match(lines[0]) if len(lines) == 1 else None
    return m.group(1) if m else None


def parse_temperatures(text: str) -> list[float]:
    """Thermal-zone readings (one number per line; milli-degrees converted) in deg C."""
    temps = []
    for tok in re.findall(r"^\s*(-?\d+(?:\.\d+)?)\s*$", text, re.MULTILINE):
        v = float(tok)
        if abs(v) >= 1000:
            v /= 1000.0
        if -40 <= v <= 150:  # disconnected sensors report -273 or huge values
            temps.append(v)
    return temps


def parse_max_freqs(text: str) -> dict[int, int]:
    """``cpuN:<khz>`` lines (as printed by the harness's probe) -> {core: max kHz}."""
    out = {}
    for core, khz in re.findall(r"cpu(\d+)\s*[:=]\s*(\d+)", text):
        out[int(core)] = int(khz)
    return out
