"""Iteration-indexed data order: resumable, rank-disjoint, DistributedSampler-like."""
from __future__ import annotations

import pytest

from topnas.errors import ConfigError
from topnas.platform.train.sampling import IterationBatchSampler, batches_per_epoch


def test_ranks_partition_each_epoch() -> None:
    n, b, w = 10, 2, 2
    samplers = [IterationBatchSampler(n, b, r, w, seed=0, start_iter=0, max_iters=100) for r in range(w)]
    per_epoch = batches_per_epoch(n, b, w)
    assert per_epoch == 2  # ceil(10/2)=5 per rank -> 2 full batches
    for epoch in range(3):
        seen = [i for s in samplers for it in range(epoch * per_epoch, (epoch + 1) * per_epoch)
                for i in s.indices(it)]
        assert len(seen) == len(set(seen)) == 8
    # different epochs shuffle differently
    assert samplers[0].indices(0) + samplers[0].indices(1) != samplers[0].indices(2) + samplers[0].indices(3)


def test_batches_do_not_depend_on_the_start_iteration() -> None:
    full = list(IterationBatchSampler(7, 3, 1, 2, seed=5, start_iter=0, max_iters=12))
    resumed = list(IterationBatchSampler(7, 3, 1, 2, seed=5, start_iter=5, max_iters=12))
    assert resumed == full[5:] and len(resumed) == 7
    seeds = [s for s, _ in full[0]]
    assert len(set(seeds)) == 3  # one augmentation stream per sample


def test_too_small_dataset() -> None:
    with pytest.raises(ConfigError, match="samples_per_gpu"):
        IterationBatchSampler(3, 4, 0, 1, seed=0, start_iter=0, max_iters=5)
