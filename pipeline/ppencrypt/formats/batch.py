"""The unit every reader hands out and every writer takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Batch:
    images: np.ndarray  # N x H x W x C uint8
    labels: np.ndarray  # N int64
    indices: np.ndarray  # N int64: positions in the split (image-scope keys depend on them)

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(parts: list[Batch], shape: tuple[int, int, int]) -> Batch:
        if not parts:
            return Batch(np.empty((0, *shape), np.uint8), np.empty(0, np.int64), np.empty(0, np.int64))
        return Batch(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("images", "labels", "indices")))


def collect(chunks, count: int, shape: tuple[int, int, int]) -> Batch:
    """Gather a split's chunks into one preallocated batch (no concatenate copy)."""
    out = Batch(np.empty((count, *shape), np.uint8), np.empty(count, np.int64), np.empty(count, np.int64))
    at = 0
    for b in chunks:
        n = len(b)
        out.images[at : at + n], out.labels[at : at + n], out.indices[at : at + n] = b.images, b.labels, b.indices
        at += n
    return out
