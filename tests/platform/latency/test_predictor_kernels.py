"""The predictor on plain kernel lists: same numbers as the variant fast path, same fit, clear errors."""
from __future__ import annotations

import random

import pytest

from topnas.errors import ConfigError
from topnas.platform.latency.kernels import conv_kernel, kernels_from_config, linear_kernel
from topnas.platform.latency.predictor import GroupRule, LatencyPredictor, packaged_predictor
from topnas.platform.latency.measurements import Sample
from topnas.search_spaces import default_space, preset_variant

DEVICE = {"device": "synthetic", "runtime": "onnxruntime", "runtime_version": "0", "cpu_model": "none",
          "intra_threads": 1, "inter_threads": 1}


def _variants(n: int, seed: int):
    rng = random.Random(seed)
    space = default_space()
    return [preset_variant("tiny", (512, 512)), preset_variant("base", (448, 448))] + [space.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("name", ["snapdragon865_tnn_1core", "local_cpu_ort"])
def test_predict_kernels_equals_the_variant_fast_path(name):
    p = packaged_predictor(name)
    for v in _variants(6, 1):
        ks = kernels_from_config(v)
        assert p.features_from_kernels(ks) == p.features(v)
        a, b = p.predict(v), p.predict_kernels(ks)
        assert (a.ms, a.lo, a.hi, a.out_of_range, a.reasons) == (b.ms, b.lo, b.hi, b.out_of_range, b.reasons)
        assert p.predict_kernels(list(ks)).ms == a.ms  # any iterable of kernels


def test_unknown_kernel_type_names_type_and_groups():
    groups = (GroupRule("conv1x1", "conv1x1"), GroupRule("dw3", "dwconv", 3))
    p = LatencyPredictor(groups, [0.1] * 6, 0.0, {"level": 0.9, "log_lo": 0.0, "log_hi": 0.0}, {}, DEVICE)
    x = (1, 16, 8, 8)
    assert p.predict_kernels([conv_kernel(x, 32, 1, 1, 1), conv_kernel(x, 16, 3, 1, 16)]).ms > 0
    with pytest.raises(ConfigError, match=r"kernel\.type: got 'gconv'.*conv1x1.*dw3 \(dwconv, kernel_size=3\)"):
        p.predict_kernels([conv_kernel(x, 32, 3, 1, 4)])
    with pytest.raises(ConfigError, match=r"kernel\.type: got 'dwconv'"):  # a 5x5 depthwise: no group
        p.features_from_kernels([conv_kernel(x, 16, 5, 1, 16)])
    with pytest.raises(ConfigError, match=r"kernel\.type: got 'linear'"):
        p.predict_kernels([linear_kernel((1, 16), 10)])


def test_fit_kernels_is_the_variant_fit():
    truth = packaged_predictor("local_cpu_ort")
    vs = _variants(12, 4)
    lat = [truth.predict(v).ms * (1.0 + 0.01 * ((i % 5) - 2)) for i, v in enumerate(vs)]
    a = LatencyPredictor.fit([Sample(v, t, 1) for v, t in zip(vs, lat)], DEVICE, groups=truth.groups)
    b = LatencyPredictor.fit_kernels([kernels_from_config(v) for v in vs], lat, DEVICE, groups=truth.groups)
    assert a.coef == b.coef and a.intercept_ms == b.intercept_ms and a.ranges == b.ranges
    assert a.interval == b.interval and a.fit_info == b.fit_info
    assert a.calibration["variant_ids"] == [v.id for v in vs] and "variant_ids" not in b.calibration
    with pytest.raises(ConfigError, match="latencies"):
        LatencyPredictor.fit_kernels([kernels_from_config(v) for v in vs], lat[:-1], DEVICE)
    with pytest.raises(ConfigError, match="latencies"):
        LatencyPredictor.fit_kernels([kernels_from_config(v) for v in vs[:3]], [1.0, 0.0, 2.0], DEVICE,
                                     groups=truth.groups)
