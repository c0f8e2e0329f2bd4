"""The ring a reader process writes its output into: readers.SLOTS chunks of shared memory, each a whole
number of pieces (a piece: at most a batch), laid out so both processes see numpy arrays in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ppencrypt.formats import Batch

from .loader import Loaded

CHUNK_BYTES = 4 << 20  # a reader's output goes to the training process this much at a time (or one piece)


@dataclass(frozen=True)
class Slots:
    """The layout of a reader's ring in shared memory: SLOTS chunks of ``samples`` samples
    each (a whole number of pieces), every slot labels and indices (int64), then pixels."""

    samples: int
    shape: tuple[int, int, int]

    @staticmethod
    def sized(batch: int, shape: tuple[int, int, int]) -> Slots:
        piece = batch * (16 + shape[0] * shape[1] * shape[2])
        return Slots(max(1, CHUNK_BYTES // piece) * batch, tuple(shape))

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def size(self) -> int:
        return -(-self.samples * (16 + self.pixels) // 64) * 64

    def views(self, buf, slot: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        base = slot * self.size
        labels = np.frombuffer(buf, np.int64, n, base)
        indices = np.frombuffer(buf, np.int64, n, base + 8 * self.samples)
        images = np.frombuffer(buf, np.uint8, n * self.pixels, base + 16 * self.samples).reshape(n, *self.shape)
        return images, labels, indices

    def write(self, buf, slot: int, b: Batch, at: int) -> int:
        n = min(self.samples, len(b) - at)
        images, labels, indices = self.views(buf, slot, n)
        images[...], labels[...], indices[...] = b.images[at : at + n], b.labels[at : at + n], b.indices[at : at + n]
        return n

    def read(self, buf, slot: int, n: int, pin: bool) -> Loaded:
        """A copy of the chunk in a slot (in pinned memory with ``pin``): the slot may be reused."""
        views = [torch.from_numpy(a) for a in self.views(buf, slot, n)]
        if pin:
            return tuple(torch.empty_like(v, pin_memory=True).copy_(v) for v in views)
        return tuple(v.clone() for v in views)
