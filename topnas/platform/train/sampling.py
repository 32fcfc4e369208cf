"""Which images each worker sees at each iteration, and with which augmentation seed.

Everything is a pure function of ``(seed, iteration, rank, world_size)``, so a run resumed from a
checkpoint at iteration ``k`` feeds exactly the batches and random crops/flips/colour jitter the
uninterrupted run would have fed, whatever the DataLoader worker count.

Order follows mmseg's ``DistributedSampler`` + ``IterLoader``: epoch ``e`` shuffles all images with a
generator seeded ``seed + e``, pads to a multiple of ``world_size`` by repeating the head, and rank
``r`` takes every ``world_size``-th image from position ``r``; the last incomplete batch of an epoch
is dropped. Each sample's augmentation generator is seeded from ``(seed, iteration, rank, slot)``.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from topnas.errors import ConfigError

__all__ = ["IterationBatchSampler", "SeededDataset", "augmentation_seed", "batches_per_epoch"]


def batches_per_epoch(num_samples: int, batch_size: int, world_size: int) -> int:
    per_rank = -(-num_samples // world_size)  # ceil, as DistributedSampler pads
    return per_rank // batch_size


def augmentation_seed(seed: int, iteration: int, rank: int, slot: int) -> int:
    """A 32-bit seed for the pipeline of one sample of one batch."""
    return int(np.random.SeedSequence([seed, iteration, rank, slot]).generate_state(1)[0])


class IterationBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for iterations ``start_iter .. max_iters-1``, this rank's batch as ``(aug_seed, index)`` pairs."""

    def __init__(self, num_samples: int, batch_size: int, rank: int, world_size: int, seed: int,
                 start_iter: int, max_iters: int) -> None:
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.start_iter, self.max_iters = start_iter, max_iters
        self.per_epoch = batches_per_epoch(num_samples, batch_size, world_size)
        if self.per_epoch < 1:
            raise ConfigError("data.samples_per_gpu", batch_size,
                              f"at most {-(-num_samples // world_size)}",
                              hint=f"{num_samples} training images cannot fill one batch on each of "
                                   f"{world_size} workers")
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return max(0, self.max_iters - self.start_iter)

    def _rank_order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator()
            g.manual_seed(self.seed + epoch)
            perm = torch.randperm(self.num_samples, generator=g)
            total = -(-self.num_samples // self.world_size) * self.world_size
            reps = -(-total // self.num_samples)
            padded = perm.repeat(reps)[:total]
            self._epoch, self._order = epoch, padded[self.rank::self.world_size]
        return self._order

    def indices(self, iteration: int) -> list[int]:
        epoch, k = divmod(iteration, self.per_epoch)
        order = self._rank_order(epoch)
        return order[k * self.batch_size:(k + 1) * self.batch_size].tolist()

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        return [(augmentation_seed(self.seed, iteration, self.rank, slot), idx)
                for slot, idx in enumerate(self.indices(iteration))]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for it in range(self.start_iter, self.max_iters):
            yield self.batch(it)


class SeededDataset(Dataset[dict[str, Any]]):
    """``dataset[(aug_seed, index)]``: reseed the wrapped dataset's pipeline, then load ``index``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        aug_seed, index = key
        self.dataset.reseed(aug_seed)
        return self.dataset[index]
