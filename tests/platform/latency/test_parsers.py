"""Output parsers on captured text of TNN, onnxruntime_perf_test and sysfs."""
from __future__ import annotations

import pytest

from topnas.platform.latency.parsers import (
    BenchmarkParseError,
    parse_max_freqs,
    parse_ort_perf_test,
    parse_temperatures,
    parse_tnn,
    pick_tnn,
)

# TNN benchmark_models.sh with the TopFormer docs' lower-case "-t cpu": both an ARM and an OpenCL pass.
TNN_BENCHMARK_MODELS = """\
adb push build/TNNTest /data/local/tmp/benchmark-model
benchmark device: ARM

topformer_tiny.tnnproto                       time cost: min = 40.211   ms  |  max = 41.902   ms  |  avg = 40.633   ms
mobilenet_v2.tnnproto                         time cost: min = 85.420   ms  |  max = 88.145   ms  |  avg = 86.896   ms

benchmark device: OPENCL

topformer_tiny.tnnproto                       time cost: min = 20.004   ms  |  max = 25.100   ms  |  avg = 21.317   ms
mobilenet_v2.tnnproto                         time cost: min = 30.000   ms  |  max = 31.000   ms  |  avg = 30.500   ms
"""

# The Timer::Print line as it appears in logcat (app / -bs=false path of the script).
TNN_LOGCAT = """\
12-15 10:01:02.345  4321  4321 I tnn     : topformer_small.tnnproto                      TNN Benchmark time cost: min = 73.120   ms  |  max = 75.991   ms  |  avg = 74.004   ms
12-15 10:01:02.346  4321  4321 D tnn     : something else
"""

# Single TNNTest run (test/test.cc printf).
TNN_TNNTEST = (
    "tf-37351c6bd1_512x512.tnnproto                time cost: min = 39.5     ms  |  max = 44.25    ms  "
    "|  avg = 40.125   ms \n"
)

ORT_PERF_OLD = """\
Session creation time cost: 2.74716 s
First inference time cost: 85 ms
Total inference time cost: 6.22935 s
Total inference requests: 100
Average inference time cost: 62.2935 ms
Total inference run time: 6.23146 s
Number of inferences per second: 16.0476
Total CPU usage: 382 %
Peak working set size: 114634752 bytes
Min Latency: 0.0529422 s
Max Latency: 0.0912857 s
P50 Latency: 0.0603562 s
P90 Latency: 0.0741593 s
P95 Latency: 0.0837052 s
P99 Latency: 0.0912857 s
P999 Latency: 0.0912857 s
"""

ORT_PERF_NEW = """\
Setting intra_op_num_threads to 1
Disabling intra-op thread spinning between runs
Session creation time cost: 0.217932 s
First inference time cost: 196 ms
Total inference time cost: 0.49481 s
Total inference requests: 5
Average inference time cost total: 98.961997 ms
Total inference run time: 0.494854 s
Number of inferences per second: 10.104
Avg CPU usage: 11 %
Peak working set size: 271122432 bytes
Avg CPU usage:11
Peak working set size:271122432
Runs:5
Min Latency: 0.0958204 s
Max Latency: 0.101519 s
P50 Latency: 0.0995086 s
P90 Latency: 0.101519 s
P95 Latency: 0.101519 s
P99 Latency: 0.101519 s
P999 Latency: 0.101519 s
"""


def test_tnn_benchmark_models_keeps_the_arm_pass():
    results = parse_tnn(TNN_BENCHMARK_MODELS)
    assert [(r.model, r.device) for r in results] == [
        ("topformer_tiny.tnnproto", "ARM"), ("mobilenet_v2.tnnproto", "ARM"),
        ("topformer_tiny.tnnproto", "OPENCL"), ("mobilenet_v2.tnnproto", "OPENCL")]
    r = pick_tnn(TNN_BENCHMARK_MODELS, "ARM", "topformer_tiny.tnnproto")
    assert (r.min_ms, r.max_ms, r.avg_ms) == (40.211, 41.902, 40.633)
    assert pick_tnn(TNN_BENCHMARK_MODELS, "OPENCL", "topformer_tiny.tnnproto").avg_ms == 21.317


def test_tnn_logcat_and_tnntest_lines():
    r = pick_tnn(TNN_LOGCAT, "ARM", "/data/local/tmp/topformer_small.tnnproto")
    assert (r.model, r.avg_ms, r.min_ms) == ("topformer_small.tnnproto", 74.004, 73.12)
    r = pick_tnn(TNN_TNNTEST, "ARM", "tf-37351c6bd1_512x512.tnnproto")
    assert (r.avg_ms, r.min_ms, r.max_ms) == (40.125, 39.5, 44.25)


def test_tnn_missing_model_or_no_timing_is_an_error():
    with pytest.raises(BenchmarkParseError, match="topformer_base"):
        pick_tnn(TNN_BENCHMARK_MODELS, "ARM", "topformer_base.tnnproto")
    with pytest.raises(BenchmarkParseError, match="Segmentation fault"):
        pick_tnn("loading model\nSegmentation fault\n")


def test_ort_perf_test_both_versions():
    old = parse_ort_perf_test(ORT_PERF_OLD)
    assert old.avg_ms == pytest.approx(62.2935)
    assert old.runs == 100
    assert old.min_ms == pytest.approx(52.9422)
    assert old.p50_ms == pytest.approx(60.3562)
    assert old.first_ms == 85
    new = parse_ort_perf_test(ORT_PERF_NEW)
    assert new.avg_ms == pytest.approx(98.961997)
    assert new.runs == 5
    assert new.max_ms == pytest.approx(101.519)
    with pytest.raises(BenchmarkParseError, match="Average inference time cost"):
        parse_ort_perf_test("Session creation time cost: 0.2 s\nfailed to load model\n")


def test_sysfs_readers():
    assert parse_temperatures("36500\n38200\n-273000\n41.5\n") == [36.5, 38.2, 41.5]
    assert parse_temperatures("cat: /sys/class/thermal/thermal_zone9/temp: Permission denied\n") == []
    assert parse_max_freqs("cpu0:1804800\ncpu4:2419200\ncpu7:2841600\n") == {0: 1804800, 4: 2419200, 7: 2841600}
