"""The in-memory loader: a split resident on the training device (airbench style).

The split is decoded once into one uint8 tensor on the device, and an epoch is a permutation
of indices: a batch is one gather, no per-sample Python, no worker processes. A split of K
client-augmented copies (``copies``) is one permutation per K epochs, each epoch taking the
next K-th of it: every copy is seen once per K epochs, and an epoch is as long as a pass over
the originals.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ppencrypt.formats import Dataset

from .distributed import Dist
from .loader import Loaded, train_batches
from .seeding import ORDER, epoch_rng


class MemoryLoader:
    def __init__(self, ds: Dataset, split: str, batch: int, d: Dist, device: torch.device, seed: int, train: bool, copies: int = 1):
        b = ds.split(split).read()
        self.x = torch.from_numpy(b.images).to(device)
        self.y = torch.from_numpy(b.labels).to(device)
        self.index = torch.from_numpy(b.indices).to(device)
        self.count, self.batch, self.d, self.seed, self.train, self.copies = len(b), batch, d, seed, train, copies
        if train:
            self.batches = train_batches(self.count, batch, d, copies)
            self.images = self.batches * batch * d.world
        else:
            mine = len(range(d.rank, self.count, d.world))
            self.batches = -(-mine // batch)
            self.images = self.count

    def epoch(self, epoch: int) -> Iterator[Loaded]:
        if self.train:
            # The same permutation on every rank, then a strided slice: disjoint by construction.
            order = epoch_rng(self.seed, epoch // self.copies, ORDER).permutation(self.count)
            take = self.batches * self.batch
            part = epoch % self.copies
            order = order[self.d.rank :: self.d.world][part * take : (part + 1) * take]
        else:
            order = np.arange(self.d.rank, self.count, self.d.world)
        yield from self._batches(order)

    def head(self, images: int) -> Iterator[Loaded]:
        yield from self._batches(np.arange(self.d.rank, self.count, self.d.world)[:images])

    def _batches(self, order: np.ndarray) -> Iterator[Loaded]:
        order = torch.from_numpy(order).to(self.x.device)
        for part in order.split(self.batch):
            yield self.x[part], self.y[part], self.index[part]
