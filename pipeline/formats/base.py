"""The contract every storage keeps: how a split is written and read (mosaicml/streaming's
``format/`` style: one module per storage, each a writer and a reader of this shape).

A storage is registered in ``formats/__init__.py`` with one :class:`Storage` line; the
manifest's ``storage`` field picks it on read. The writer receives encrypted batches in sample
order and returns the shards it wrote; the reader hands back :class:`Batch` es shard by shard.
Everything above this layer (encrypt, decrypt, verify, the trainer's loaders, the audit) uses
only these methods, so a new storage changes none of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .batch import Batch, collect
from .manifest import Manifest, ShardInfo


class SplitWriter(ABC):
    """Writes one split under ``root``: ``write`` batches in sample order, then ``close``."""

    def __init__(self, root: Path, split: str, shape: tuple[int, int, int], shard_size: int):
        self.root, self.split, self.shape, self.shard_size = root, split, shape, shard_size

    @abstractmethod
    def write(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Append N x H x W x C uint8 ``images`` and their N ``labels``."""

    @abstractmethod
    def close(self) -> list[ShardInfo]:
        """Finish the last shard; the shards written, in order, with sizes and hashes."""


class SplitReader(ABC):
    """Reads one split of a dataset whose manifest was already checked."""

    def __init__(self, root: Path, manifest: Manifest, split: str):
        self.root, self.manifest, self.split = root, manifest, split
        self.info = manifest.splits[split]
        self.count = self.info.count

    @property
    def shards(self) -> list[ShardInfo]:
        return self.info.shards

    def shard_paths(self) -> list[str]:
        """The shard files, for tools that read them without us (stock webdataset, zarr)."""
        return [str(self.root / s.path) for s in self.info.shards]

    @abstractmethod
    def read_shard(self, shard: ShardInfo) -> Batch:
        """The samples of one shard, checked against the manifest's count."""

    def chunks(self) -> Iterator[Batch]:
        """The split shard by shard."""
        for shard in self.info.shards:
            yield self.read_shard(shard)

    def head(self, n: int) -> Batch:
        """The first ``n`` samples (fewer if the split is shorter), reading only the shards needed."""
        parts, got = [], 0
        for shard in self.info.shards:
            if got >= n:
                break
            parts.append(self.read_shard(shard))
            got += shard.count
        whole = Batch.concat(parts, self.manifest.shape)
        return Batch(whole.images[:n], whole.labels[:n], whole.indices[:n])

    def read(self) -> Batch:
        """The whole split in one preallocated batch."""
        return collect(self.chunks(), self.count, self.manifest.shape)


@dataclass(frozen=True)
class Storage:
    name: str  # the manifest's ``storage`` and ``ppencrypt dataset --format``
    summary: str  # one line for --help
    writer: type[SplitWriter]
    reader: type[SplitReader]
