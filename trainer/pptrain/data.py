"""Getting a split to the model: resident on the device when it fits under ``--memory-limit``
(memory.py), else streamed shard by shard (stream.py). Both keep loader.py's promises, and
both read a local folder and a URL alike (ppencrypt.formats): in memory, a URL's split is
downloaded once, a few shards at a time; streamed, each reader fetches shards ahead."""

from __future__ import annotations

import torch

from ppencrypt.formats import Dataset

from .distributed import Dist
from .loader import Loader
from .memory import MemoryLoader
from .stream import StreamLoader

MIB = 1 << 20


def split_bytes(ds: Dataset, split: str) -> int:
    h, w, c = ds.manifest.shape
    return ds.manifest.splits[split].count * h * w * c


def fits_in_memory(ds: Dataset, splits: list[str], limit_mib: int) -> bool:
    return sum(split_bytes(ds, s) for s in splits) <= limit_mib * MIB


def make_loader(ds: Dataset, split: str, batch: int, d: Dist, device: torch.device, seed: int, train: bool,
                stream: bool, workers: int, buffer: int, prefetch: int = 2, copies: int = 1) -> Loader:  # fmt: skip
    """``copies``: the split holds that many client-augmented copies of each image; a training
    epoch is then one pass over the originals (loader.train_batches)."""
    if not stream:
        return MemoryLoader(ds, split, batch, d, device, seed, train, copies)
    return StreamLoader(ds, split, batch, d, device, seed, train, workers, buffer, prefetch, copies=copies)
