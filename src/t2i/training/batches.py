"""Batches that can be resumed exactly and split across processes without changing what is learnt.

The order of samples is a function of (seed, epoch) alone: epoch e visits `randperm(n)` drawn for the
e-th time from a generator seeded with `seed`. The state of the iterator is (seed, epoch, position in
the epoch), so a checkpoint of it is three numbers and resuming replays nothing but e permutations.

With several processes every rank walks the same global order and takes its own contiguous slice of
each global batch, so a run on W processes with per-rank batch B/W sees exactly the samples of a run
on one process with batch B. Randomness drawn per sample (noise, timesteps, caption dropout) follows
the same rule through `sample_randn` and friends: drawn for the whole global batch from a generator
every rank holds in the same state, then sliced. A sample's noise depends on the sample, not the rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes) of the initialised torch.distributed group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _global_then_slice(draw, shape: Sequence[int], device) -> torch.Tensor:
    rank, world = rank_and_world()
    if world == 1:
        x = draw(tuple(shape))  # exactly what a plain torch.randn(shape, generator=...) gives
    else:
        b = shape[0]
        x = draw((b * world, *shape[1:]))[rank * b : (rank + 1) * b]
    return x if device is None else x.to(device)


def sample_randn(shape: Sequence[int], generator: torch.Generator, *, device=None) -> torch.Tensor:
    """Standard normal noise for this rank's samples, (B, ...), identical to a single-process run's."""
    return _global_then_slice(lambda s: torch.randn(s, generator=generator), shape, device)


def sample_rand(shape: Sequence[int], generator: torch.Generator, *, device=None) -> torch.Tensor:
    """Uniform [0, 1) numbers for this rank's samples, (B, ...), identical to a single-process run's."""
    return _global_then_slice(lambda s: torch.rand(s, generator=generator), shape, device)


def sample_randint(high: int, shape: Sequence[int], generator: torch.Generator, *, device=None) -> torch.Tensor:
    """Integers in [0, high) for this rank's samples, (B, ...), identical to a single-process run's."""
    return _global_then_slice(lambda s: torch.randint(0, high, s, generator=generator), shape, device)


class RandomBatches:
    """Endless random batches (without replacement within an epoch) from row-indexable columns.

    Each column is anything with `len()` and `column[index_tensor]`: an in-memory tensor, memory-mapped
    cache shards, images decoded on demand. The ragged tail of an epoch is dropped; a set smaller than a
    batch is one batch. `names` (optional) names each row, for messages about bad batches.
    """

    def __init__(self, columns: dict, batch_size: int, *, seed: int, names: Sequence[str] | None = None):
        self.n = len(next(iter(columns.values())))
        if any(len(c) != self.n for c in columns.values()):
            raise ValueError("all columns of a dataset must have the same length")
        if self.n == 0:
            raise ValueError("cannot train on an empty dataset")
        self.columns, self.batch_size, self.seed, self.names = columns, batch_size, seed, names
        self.epoch, self.position = 0, 0  # position: batches already served in this epoch
        self.rank, self.world_size = 0, 1
        self.last_indices: torch.Tensor | None = None  # global indices of the batch served last
        self._order: torch.Tensor | None = None
        self._order_epoch = -1

    def shard(self, rank: int, world_size: int) -> RandomBatches:
        """Serve only rank's slice of each global batch (of `batch_size` samples, split in `world_size`)."""
        if self.batch_size % world_size:
            raise ValueError(f"batch size {self.batch_size} is not divisible by {world_size} processes")
        if self.n < self.batch_size and world_size > 1:
            raise ValueError(f"{self.n} samples are fewer than one batch of {self.batch_size}; "
                             "with several processes every batch must be full")
        self.rank, self.world_size = rank, world_size
        return self

    def _epoch_order(self) -> torch.Tensor:
        if self._order_epoch != self.epoch:
            generator = torch.Generator().manual_seed(self.seed)
            for _ in range(self.epoch + 1):  # the e-th permutation of this seed: replayed, never stored
                order = torch.randperm(self.n, generator=generator)
            self._order, self._order_epoch = order, self.epoch
        return self._order

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        last_start = max(1, self.n - self.batch_size + 1)
        if self.position * self.batch_size >= last_start:
            self.epoch, self.position = self.epoch + 1, 0
        start = self.position * self.batch_size
        idx = self._epoch_order()[start : start + self.batch_size]  # the global batch
        self.position += 1
        self.last_indices = idx
        per_rank = len(idx) // self.world_size
        local = idx[self.rank * per_rank : (self.rank + 1) * per_rank] if self.world_size > 1 else idx
        return {k: c[local] for k, c in self.columns.items()}

    def describe(self, indices: torch.Tensor) -> list:
        """The names of rows (or their indices when the batches have no names)."""
        return [self.names[i] if self.names is not None else int(i) for i in indices.tolist()]

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position, "n": self.n,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` left off; the rows and the batch size must be the ones it was taken with."""
        for key in ("n", "batch_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"the data position was saved with {key} {state[key]}, now {getattr(self, key)}")
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]


def random_batches(tensors: dict, batch_size: int, *, seed: int, names: Sequence[str] | None = None) -> RandomBatches:
    """Endless random batches from columns of equal length (see RandomBatches; resumable, shardable)."""
    return RandomBatches(tensors, batch_size, seed=seed, names=names)
