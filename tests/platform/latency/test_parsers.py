"""Output parsers on real printed output of TNN, onnxruntime_perf_test and TFLite benchmark_model.

Every sample in ``data/`` is an excerpt of public documentation or an issue thread, copied verbatim
under a header that names its repository and path (or thread); nothing here was written by us,
except the one Timer::Print rendering marked as an edge case below.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from topnas.platform.latency.parsers import (
    BenchmarkParseError,
    parse_governor,
    parse_max_freqs,
    parse_ort_perf_test,
    parse_temperatures,
    parse_tflite_benchmark,
    parse_tnn,
    pick_tnn,
)

DATA = Path(__file__).parent / "data"
SAMPLES = sorted(p.name for p in DATA.glob("*.txt"))


def sample(name: str) -> str:
    header, body = (DATA / name).read_text().split("\n----\n", 1)
    return body


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_names_its_public_source(name):
    header = (DATA / name).read_text().split("\n----\n", 1)[0]
    assert header.startswith("source: ")
    assert re.search(r"\b[\w.-]+/[\w.-]+\b", header.splitlines()[0])  # owner/repo


def test_sample_set_covers_the_three_tools():
    assert {n.split("_")[0] for n in SAMPLES} == {"ort", "tflite", "tnn"}


# ----------------------------------------------------------------------------- onnxruntime_perf_test
def test_ort_current_format_arm_learning_path():
    r = parse_ort_perf_test(sample("ort_perf_test_1x_kleidiai_sme2.txt"))
    assert r.avg_ms == pytest.approx(98.961997)
    assert r.runs == 5 and r.first_ms == 196
    assert (r.min_ms, r.max_ms) == (pytest.approx(95.8204), pytest.approx(101.519))
    assert r.p50_ms == pytest.approx(99.5086) and r.p90_ms == pytest.approx(101.519)
    assert r.version is None  # perf_test does not print it


def test_ort_1_3_format_without_percentiles():
    r = parse_ort_perf_test(sample("ort_perf_test_1_3_acl.txt"))
    assert r.avg_ms == pytest.approx(144.871) and r.runs == 10
    assert r.p50_ms is None and r.min_ms is None and r.first_ms is None


def test_ort_without_space_after_colons():
    r = parse_ort_perf_test(sample("ort_perf_test_armv8_no_space.txt"))
    assert r.avg_ms == pytest.approx(83.8059) and r.runs == 7160


def test_ort_runner_summary_format():
    r = parse_ort_perf_test(sample("ort_perf_test_runner_summary.txt"))
    assert r.avg_ms == pytest.approx(58.8053) and r.runs == 1000
    assert r.p50_ms == pytest.approx(58.7108) and r.min_ms == pytest.approx(55.9777)


def test_ort_output_of_other_tools_is_an_error():
    with pytest.raises(BenchmarkParseError, match=r"onnxruntime_perf_test: no timing.*Average inference time cost.*Run Order"):
        parse_ort_perf_test(sample("tflite_benchmark_model_op_profiling.txt"))


# ----------------------------------------------------------------------------- TFLite benchmark_model
def test_tflite_summary_and_timed_phase():
    r = parse_tflite_benchmark(sample("tflite_benchmark_model_op_profiling.txt"))
    assert r.avg_ms == pytest.approx(33.2094)
    assert r.runs == 50  # the timed phase, not the 15 warm-up runs
    assert (r.min_ms, r.max_ms, r.std_ms) == (pytest.approx(32.641), pytest.approx(34.005), pytest.approx(0.45))
    assert (r.init_ms, r.first_ms, r.warmup_avg_ms) == (pytest.approx(0.855), pytest.approx(49.06),
                                                          pytest.approx(34.8251))
    assert r.median_ms is None


def test_tflite_2019_summary_line():
    r = parse_tflite_benchmark(sample("tflite_benchmark_model_2019.txt"))
    assert r.avg_ms == pytest.approx(66.7676) and r.runs == 15
    assert r.warmup_avg_ms == pytest.approx(76.6059) and r.init_ms == pytest.approx(9.933)
    assert r.min_ms == pytest.approx(66.699)


def test_tflite_output_of_other_tools_is_an_error():
    with pytest.raises(BenchmarkParseError, match="TFLite benchmark_model"):
        parse_tflite_benchmark(sample("ort_perf_test_1_3_acl.txt"))


# ----------------------------------------------------------------------------- TNN
def test_tnn_app_timer_info_names_model_and_device():
    results = parse_tnn(sample("tnn_benchmark_app_logcat.txt"))
    assert [(r.model, r.device) for r in results] == [("shufflenet_v2.tnnproto", "OPENCL")] * 2
    assert (results[0].min_ms, results[0].max_ms, results[0].avg_ms) == (72.957, 78.661, 76.121)
    r = pick_tnn(sample("tnn_benchmark_app_logcat.txt"), "OPENCL", "/data/local/tmp/shufflenet_v2.tnnproto")
    assert r.avg_ms == 76.121
    with pytest.raises(BenchmarkParseError, match=r"shufflenet_v2.tnnproto@OPENCL"):
        pick_tnn(sample("tnn_benchmark_app_logcat.txt"), "ARM", "shufflenet_v2.tnnproto")


def test_tnn_benchmark_models_keeps_the_arm_pass():
    text = sample("tnn_profiling_doc.txt")
    assert [(r.model, r.device, r.avg_ms) for r in parse_tnn(text)] == [("", "ARM", 26.561), ("", "OPENCL", 13.092)]
    r = pick_tnn(text, "ARM", "mobilenet_v1.tnnproto")  # unnamed lines are accepted for any model
    assert (r.min_ms, r.max_ms, r.avg_ms) == (26.282, 27.592, 26.561)
    assert pick_tnn(text, "OPENCL").avg_ms == 13.092


def test_tnn_failed_run_is_a_one_line_error():
    with pytest.raises(BenchmarkParseError) as exc:
        pick_tnn(sample("tnn_profiling_failure.txt"), "ARM", "mobilenet_v2.tnnproto")
    msg = str(exc.value)
    assert "\n" not in msg and "time cost" in msg and "Thu Sep  9 17:30:07 IST 2021" in msg


def test_tnntest_line_rendered_from_timer_print_format():
    """Edge case: TNNTest's timer info is the bare model file name. The line is rendered with the
    printf format of Timer::Print in Tencent/TNN test/timer.cc (values are ours)."""
    fmt = "%-45s TNN Benchmark time cost: min = %-8s ms  |  max = %-8s ms  |  avg = %-8s ms \n"
    line = fmt % ("tf-37351c6bd1_512x512.tnnproto", "%6.3f" % 39.5, "%6.3f" % 44.25, "%6.3f" % 40.125)
    r = pick_tnn("benchmark device: ARM\n\n" + line, "ARM", "/data/local/tmp/topnas/tf-37351c6bd1_512x512.tnnproto")
    assert (r.model, r.device, r.min_ms, r.max_ms, r.avg_ms) == ("tf-37351c6bd1_512x512.tnnproto", "ARM", 39.5,
                                                                  44.25, 40.125)


# ----------------------------------------------------------------------------- sysfs (edge cases)
def test_sysfs_readers():
    assert parse_temperatures("36500\n38200\n-273000\n41.5\n") == [36.5, 38.2, 41.5]
    assert parse_temperatures("cat: /sys/class/thermal/thermal_zone9/temp: Permission denied\n") == []
    assert parse_max_freqs("cpu0:1804800\ncpu4:2419200\ncpu7:2841600\n") == {0: 1804800, 4: 2419200, 7: 2841600}
    assert parse_governor("schedutil\n") == "schedutil"
    assert parse_governor("cat: /sys/devices/system/cpu/cpu7/cpufreq/scaling_governor: No such file\n") is None
    assert parse_governor("") is None
