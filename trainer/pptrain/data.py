"""Getting a split to the model: resident on the device when it fits under ``--memory-limit``
(memory.py), else streamed shard by shard (stream.py). Both keep loader.py's promises, and
both read a local folder and a URL alike (ppencrypt.formats): in memory, a URL's split is
downloaded once, a few shards at a time; streamed, each reader fetches shards ahead."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppencrypt.formats import Dataset

from .distributed import Dist
from .loader import Loader
from .memory import MemoryLoader
from .stream import StreamLoader

MIB = 1 << 20


@dataclass(frozen=True, kw_only=True)
class LoaderSpec:
    """Which split to read and how: everything :func:`make_loader` needs but the dataset, the
    processes (Dist) and the device."""

    split: str
    batch: int  # images per batch, per rank
    train: bool  # shuffled full batches, the same count on every rank; else every sample once, in order
    seed: int = 0  # with the epoch, the order of the samples and shards (seeding.py)
    stream: bool = False  # shard by shard (stream.py), else the split resident on the device (memory.py)
    workers: int = 0  # streaming: reader processes per rank (0: in this process)
    buffer: int = 0  # streaming: samples in the shuffle pool
    prefetch: int = 2  # streaming: shards each reader fetches ahead, in threads (0: none)
    copies: int = 1  # client-augmented copies of each image in the split; an epoch is one pass over the originals


def split_bytes(ds: Dataset, split: str) -> int:
    h, w, c = ds.manifest.shape
    return ds.manifest.splits[split].count * h * w * c


def fits_in_memory(ds: Dataset, splits: list[str], limit_mib: int) -> bool:
    return sum(split_bytes(ds, s) for s in splits) <= limit_mib * MIB


def make_loader(ds: Dataset, spec: LoaderSpec, d: Dist, device: torch.device) -> Loader:
    """The loader ``spec`` asks for over ``ds``, for rank ``d.rank`` on ``device``; with
    ``spec.copies`` a training epoch is one pass over the originals (loader.train_batches)."""
    common = dict(split=spec.split, batch=spec.batch, d=d, device=device, seed=spec.seed, train=spec.train, copies=spec.copies)
    if not spec.stream:
        return MemoryLoader(ds, **common)
    return StreamLoader(ds, **common, workers=spec.workers, buffer=spec.buffer, prefetch=spec.prefetch)
