"""What the sweep counts before training a variant: the cheap MACs count matches the real forward pass."""
from __future__ import annotations

import dataclasses
import random

from topnas.platform.sweep import estimates
from topnas.search_spaces import SearchSpace
from topnas.topformer.complexity import count_complexity

from .conftest import SPACE


def test_macs_on_the_meta_device_equal_the_cpu_count():
    space = SearchSpace.from_dict(SPACE)
    rng = random.Random(1)
    for _ in range(2):
        variant = space.build({k: rng.choice(v) for k, v in space.parameters().items()})
        variant = dataclasses.replace(variant, input_size=(128, 96))  # small: the CPU reference runs for real
        cpu = count_complexity(variant.build(norm="BN"), variant.input_size)
        assert estimates.complexity_of(variant) == {"params": cpu.params, "macs": cpu.macs}
        assert cpu.macs > 0
