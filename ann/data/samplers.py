"""Samplers: a resumable infinite training stream and a no-padding eval shard."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class TrainSampler(Sampler):
    """Infinite shuffled stream of (index, augmentation seed) pairs for one rank.

    The global stream is a concatenation of per-epoch permutations (epoch e
    shuffled with seed ``seed + e``); every iteration takes the next
    ``batch_size * world_size`` positions, and rank r gets its ``batch_size``
    block of them. Each position carries its own augmentation seed, so data
    order and augmentation depend only on (seed, position): a run resumed at
    ``start_iter`` sees exactly what the uninterrupted run saw, for any number
    of workers, and 2 ranks × b see the same samples as 1 rank × 2b.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_iter: int = 0,
        shuffle: bool = True,
    ) -> None:
        if size <= 0:
            raise ValueError("the training set is empty")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_iter = start_iter
        self.shuffle = shuffle

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=g).numpy()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        global_batch = self.batch_size * self.world_size
        position = self.start_iter * global_batch + self.rank * self.batch_size
        epoch, order = -1, None
        while True:
            for p in range(position, position + self.batch_size):
                if p // self.size != epoch:
                    epoch = p // self.size
                    order = self._epoch_order(epoch)
                # Seeds from a hash of (seed, position): independent streams per sample.
                aug_seed = int(np.random.SeedSequence([self.seed, p]).generate_state(1)[0])
                yield int(order[p % self.size]), aug_seed
            position += global_batch


class ShardSampler(Sampler):
    """Indices rank, rank + W, rank + 2W, ...: every index on exactly one rank,
    with no padding duplicates (unlike DistributedSampler)."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
