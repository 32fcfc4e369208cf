"""The analytic kernel list (used by the predictor) equals the one traced from the built model."""
from __future__ import annotations

import random

import pytest

from topnas.platform.latency.kernels import (
    KERNEL_TYPES,
    extract_kernels,
    kernel_summary,
    kernels_from_config,
    signature,
)
from topnas.search_spaces import Variant, default_space, preset_variant
from topnas.topformer.complexity import count_complexity


def _cases():
    cases = [preset_variant("tiny", (512, 512)), preset_variant("small", (448, 448)), preset_variant("base", (448, 448))]
    tiny = preset_variant("tiny", (448, 448)).model
    cases += [
        Variant(tiny.replace(c2t_stride=4), (448, 448)),                     # pooling as constant matmuls
        Variant(tiny.replace(injection_type="fuse_multi"), (375, 500)),      # odd size, other SIM
        Variant(tiny.replace(injection_type="fuse_sum"), (128, 96)),
        Variant(tiny.replace(injection_type="muli_sum_cbr", head_is_dw=False), (130, 200)),
    ]
    rng = random.Random(7)
    space = default_space()
    cases += [space.sample(rng) for _ in range(4)]
    return cases


@pytest.mark.parametrize("variant", _cases(), ids=lambda v: f"{v.name or v.id}-{v.input_size[0]}x{v.input_size[1]}")
def test_config_kernels_equal_model_kernels(variant):
    traced = extract_kernels(variant)
    assert signature(kernels_from_config(variant)) == signature(traced)
    assert {k.type for k in traced} <= set(KERNEL_TYPES)


def test_kernel_costs_agree_with_the_flop_counter():
    v = preset_variant("tiny", (448, 448))
    ks = kernels_from_config(v)
    s = kernel_summary(ks)
    # conv + matmul MACs equal torch's counter on the BN-folded latency graph (BN/pool/resize excluded)
    c = count_complexity(v.build(norm="BN"), v.input_size)
    assert s["conv1x1"]["macs"] + s["dwconv"]["macs"] + s["conv"]["macs"] == c.by_op["convolution"]
    assert s["matmul"]["macs"] == c.by_op["bmm"]
    assert s["softmax"]["count"] == v.model.depths
    assert s["resize"]["count"] == 8  # SIM gate + embedding per decoded level, 2 in the head
    # conv + activation fused: the stem's ReLU is not a separate kernel
    assert ks[0].type == "conv" and ks[0].act == "relu"


def test_config_path_is_cached_and_fast():
    import time

    v = default_space().sample(random.Random(3))
    kernels_from_config(v)
    t0 = time.perf_counter()
    for _ in range(100):
        kernels_from_config(v)
    assert (time.perf_counter() - t0) / 100 < 1e-3
