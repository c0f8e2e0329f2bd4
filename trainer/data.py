"""Getting a split to the model: resident on the device, or streamed (stream.py).

In memory — the default when the pixels fit under ``--memory-limit`` — a split is decoded
once into one uint8 tensor on the training device (airbench style), and an epoch is a
permutation of indices: a batch is one gather, no per-sample Python, no worker processes.

Both loaders hand out ``(images N x H x W x C uint8, labels, indices)`` on the device, give
every rank the same number of batches and disjoint samples, and derive their order from
(seed, epoch) alone, so an epoch is the same whether the run was interrupted or not.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np
import torch

from pipeline.formats import Dataset

from .distributed import Dist
from .errors import OptionError

ORDER_STREAM = 0  # second word of the data-order seed; the augmentation draws use others
MIB = 1 << 20

Loaded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, labels, indices


class Loader(Protocol):
    batches: int  # per rank per epoch
    images: int  # per epoch, all ranks together

    def epoch(self, epoch: int) -> Iterator[Loaded]: ...


def epoch_rng(seed: int, epoch: int, *words: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, *words])


def split_bytes(ds: Dataset, split: str) -> int:
    h, w, c = ds.manifest.shape
    return ds.manifest.splits[split].count * h * w * c


def train_batches(count: int, batch: int, d: Dist) -> int:
    """Full batches per rank: every rank takes the same number, so the gradient all-reduce
    never waits for a rank that ran out; the few samples beyond them wait for the next epoch."""
    n = count // (batch * d.world)
    if n == 0:
        raise OptionError("--batch-size", f"batch size {batch * d.world} (all ranks) is larger than the train split ({count} images)")
    return n


class MemoryLoader:
    def __init__(self, ds: Dataset, split: str, batch: int, d: Dist, device: torch.device, seed: int, train: bool):
        b = ds.split(split).read()
        self.x = torch.from_numpy(b.images).to(device)
        self.y = torch.from_numpy(b.labels).to(device)
        self.index = torch.from_numpy(b.indices).to(device)
        self.count, self.batch, self.d, self.seed, self.train = len(b), batch, d, seed, train
        if train:
            self.batches = train_batches(self.count, batch, d)
            self.images = self.batches * batch * d.world
        else:
            mine = len(range(d.rank, self.count, d.world))
            self.batches = -(-mine // batch)
            self.images = self.count

    def epoch(self, epoch: int) -> Iterator[Loaded]:
        if self.train:
            # The same permutation on every rank, then a strided slice: disjoint by construction.
            order = epoch_rng(self.seed, epoch, ORDER_STREAM).permutation(self.count)
            order = order[self.d.rank :: self.d.world][: self.batches * self.batch]
        else:
            order = np.arange(self.d.rank, self.count, self.d.world)
        order = torch.from_numpy(order).to(self.x.device)
        for part in order.split(self.batch):
            yield self.x[part], self.y[part], self.index[part]


def fits_in_memory(ds: Dataset, splits: list[str], limit_mib: int) -> bool:
    return sum(split_bytes(ds, s) for s in splits) <= limit_mib * MIB


def make_loader(ds: Dataset, split: str, batch: int, d: Dist, device: torch.device, seed: int, train: bool,
                stream: bool, workers: int, buffer: int) -> Loader:  # fmt: skip
    if not stream:
        return MemoryLoader(ds, split, batch, d, device, seed, train)
    from .stream import StreamLoader

    return StreamLoader(ds, split, batch, d, device, seed, train, workers, buffer)
