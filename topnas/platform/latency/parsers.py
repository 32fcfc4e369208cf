"""Parse what phone benchmark tools print: TNN's benchmark / TNNTest, onnxruntime_perf_test, sysfs.

Formats handled (captured examples live in ``tests/platform/latency/test_parsers.py``):

* TNN ``TNNTest`` / ``benchmark_models.sh``:
  ``mobilenet_v2.tnnproto   time cost: min = 85.420   ms  |  max = 88.145   ms  |  avg = 86.896   ms``,
  the logcat form ``... I tnn : <name> TNN Benchmark time cost: min = ... ms | max = ... | avg = ...``
  and the ``benchmark device: ARM`` / ``OPENCL`` headers of ``benchmark_models.sh`` (with the
  lower-case ``-t cpu`` of the TopFormer docs the script runs BOTH the ARM and the OpenCL pass:
  :func:`pick_tnn` keeps the ARM one);
* ``onnxruntime_perf_test``: ``Average inference time cost: 62.29 ms`` (or ``... cost total: ...``),
  ``Total inference requests: 100``, ``Min/Max/P50/P90... Latency: 0.0529 s``;
* ``cat /sys/class/thermal/thermal_zone*/temp`` (milli-degrees or degrees) and cpufreq files.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from topnas.errors import TopnasError

__all__ = [
    "BenchmarkParseError",
    "TnnResult",
    "OrtPerfResult",
    "parse_tnn",
    "pick_tnn",
    "parse_ort_perf_test",
    "parse_temperatures",
    "parse_max_freqs",
]


class BenchmarkParseError(TopnasError):
    """The benchmark output had no timing line; the message quotes the end of the output."""

    def __init__(self, tool: str, text: str, expected: str) -> None:
        tail = "\n".join(text.strip().splitlines()[-8:]) or "<empty output>"
        super().__init__(f"{tool}: no timing found (expected {expected}); output ended with:\n{tail}")


@dataclass(frozen=True)
class TnnResult:
    model: str
    device: str  # "ARM", "OPENCL", ... from the last "benchmark device:" header ('' when absent)
    min_ms: float
    max_ms: float
    avg_ms: float


_NUM = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_TNN_LINE = re.compile(
    r"(?:^|\s|:)(?P<model>[^\s:|]+)?\s*(?:TNN\s+Benchmark\s+)?time\s+cost:\s*min\s*=\s*" + _NUM
    + r"\s*ms\s*\|\s*max\s*=\s*" + _NUM + r"\s*ms\s*\|\s*avg\s*=\s*" + _NUM + r"\s*ms",
    re.IGNORECASE,
)
_TNN_DEVICE = re.compile(r"benchmark\s+device:\s*(\S+)", re.IGNORECASE)


def parse_tnn(text: str) -> list[TnnResult]:
    """Every ``time cost`` line of TNN output, in order, tagged with its benchmark device."""
    device = ""
    out = []
    for line in text.splitlines():
        m = _TNN_DEVICE.search(line)
        if m:
            device = m.group(1).upper()
            continue
        m = _TNN_LINE.search(line)
        if m:
            model = (m.group("model") or "").strip()
            if model.upper() == "TNN":  # "TNN Benchmark time cost" with the name before it
                model = ""
            out.append(TnnResult(model, device, float(m.group(2)), float(m.group(3)), float(m.group(4))))
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
        found = sorted({f"{r.model}@{r.device or '?'}" for r in results})
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


def _find(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text, re.IGNORECASE | re.MULTILINE)
    return float(m.group(1)) if m else None


def parse_ort_perf_test(text: str) -> OrtPerfResult:
    """Timings printed by ``onnxruntime_perf_test`` (latencies converted to ms)."""
    avg = _find(r"Average inference time cost(?: total)?:\s*" + _NUM + r"\s*ms", text)
    if avg is None:
        raise BenchmarkParseError("onnxruntime_perf_test", text, "'Average inference time cost: <x> ms'")

    def lat(name: str) -> float | None:
        v = _find(rf"^\s*{name} Latency:\s*" + _NUM + r"\s*s\b", text)
        return None if v is None else v * 1000.0

    runs = _find(r"Total inference requests:\s*(\d+)", text) or _find(r"^\s*Runs:\s*(\d+)", text)
    return OrtPerfResult(avg, int(runs) if runs is not None else None, lat("Min"), lat("Max"), lat("P50"),
                         lat("P90"), _find(r"First inference time cost:\s*" + _NUM + r"\s*ms", text))


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
