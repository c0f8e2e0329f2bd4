"""The contract every storage keeps: how a split is written and read (mosaicml/streaming's
``format/`` style: one module per storage, each a writer and a reader of this shape).

A storage is registered in ``formats/__init__.py`` with one :class:`Storage` line; the
manifest's ``storage`` field picks it on read. The writer receives encrypted batches in sample
order and returns the shards it wrote; the reader hands back :class:`Batch` es shard by shard.
Everything above this layer (encrypt, decrypt, verify, the trainer's loaders, the audit) uses
only these methods, so a new storage changes none of it.

Writers write into a local folder (a URL's is uploaded afterwards, location.py). Readers read
through ``self.loc`` (location.py), so the same reader serves a local folder and a URL; a
reader that opens ``self.root`` itself works on local folders only. A reader splits reading a
shard in two: ``fetch`` (the I/O: the verified bytes, in a thread while the previous shard is
decoded) and ``decode``; one that only implements ``load_shard`` is read without read-ahead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import ShardError
from .batch import Batch, collect
from .locate import open_location
from .location import Location
from .manifest import Manifest, ShardInfo
from .prefetch import read_ahead


class SplitWriter(ABC):
    """Writes one split under ``root``: ``write`` batches in sample order, then ``close``.

    A writer that streams calls :meth:`final` for each file as soon as it will not change
    again (a closed shard), so that the job can send it to OUT and drop it locally; files never
    announced are sent after ``close``. A writer that can continue an interrupted job
    implements :meth:`resume`."""

    on_final: Callable[[str, str | None], None] | None = None  # set by the job: (path, its SHA-256 if known)

    def __init__(self, root: Path, split: str, shape: tuple[int, int, int], shard_size: int):
        self.root, self.split, self.shape, self.shard_size = root, split, shape, shard_size

    @classmethod
    def samples_within(cls, shape: tuple[int, int, int], nbytes: int) -> int:
        """The most samples a shard of at most ``nbytes`` bytes holds (``--shard-bytes``; at
        least one). The encrypted sample's size is fixed, so this is exact or a safe bound."""
        return max(1, nbytes // (shape[0] * shape[1] * shape[2]))

    @classmethod
    def shard_names(cls, split: str, k: int) -> list[str] | None:
        """The files shard ``k`` of ``split`` is made of, before it is written (so that they are
        journaled before another machine uploads them); None: not known in advance."""
        return None

    def final(self, rel: str, sha256: str | None = None) -> None:
        if self.on_final is not None:
            self.on_final(rel, sha256)

    def resume(self, shards: list[ShardInfo]) -> None:
        """Continue after ``shards`` (the first shards of the split, already at OUT)."""
        raise NotImplementedError(f"{type(self).__name__} cannot continue an interrupted job")

    @abstractmethod
    def write(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Append N x H x W x C uint8 ``images`` and their N ``labels``."""

    @abstractmethod
    def close(self) -> list[ShardInfo]:
        """Finish the last shard; the shards written, in order, with sizes and hashes."""


class SplitReader(ABC):
    """Reads one split of a dataset whose manifest was checked — but maybe written by the
    server: every shard's claimed count is checked against the bytes that can hold it before
    anything is allocated, every file against its recorded size and hash before it is parsed,
    and every label against the classes before it is handed out."""

    def __init__(self, root: Path | Location, manifest: Manifest, split: str):
        self.loc = open_location(root)
        self.root = self.loc.root  # the folder (a URL string for a remote dataset)
        self.manifest, self.split = manifest, split
        self.info = manifest.splits[split]
        self.count = self.info.count
        self.sample_bytes = manifest.height * manifest.width * manifest.channels

    @property
    def shards(self) -> list[ShardInfo]:
        return self.info.shards

    def shard_paths(self) -> list[str]:
        """The shard files (or URLs), for tools that read them without us (stock webdataset, zarr)."""
        return [self.loc.shown(s.path) for s in self.info.shards]

    @abstractmethod
    def most_samples(self, shard: ShardInfo) -> int:
        """The most samples a shard of ``shard.bytes`` bytes can hold in this storage."""

    def fetch(self, shard: ShardInfo) -> Any:
        """The shard's files, checked against their recorded sizes and hashes (I/O only: may
        run in a thread). None: this storage reads in ``load_shard``."""
        return None

    def decode(self, shard: ShardInfo, fetched: Any) -> Batch:
        """The samples of one shard from what ``fetch`` returned."""
        raise NotImplementedError(f"{type(self).__name__} implements load_shard, or fetch and decode")

    def load_shard(self, shard: ShardInfo) -> Batch:
        """The samples of one shard, its files checked against their recorded sizes and hashes."""
        return self.decode(shard, self.fetch(shard))

    def shown(self, shard: ShardInfo) -> str:
        return self.loc.shown(shard.path)

    def check_claim(self, shard: ShardInfo) -> None:
        if shard.count > self.most_samples(shard):
            raise ShardError(f"{self.shown(shard)}: the manifest claims {shard.count} samples, more than its {shard.bytes} bytes can hold")

    def preflight(self) -> None:
        """Before a whole split is allocated: every shard is a regular file of its recorded
        size, big enough for the samples claimed (an fstat each, nothing read)."""
        for shard in self.info.shards:
            self.check_claim(shard)
            self.loc.preflight(shard.path, shard.bytes)

    def read_shard(self, shard: ShardInfo, fetched: Any = None) -> Batch:
        """One shard, checked; ``fetched``: what ``fetch`` returned for it, if it ran already."""
        self.check_claim(shard)
        batch = self.load_shard(shard) if fetched is None else self.decode(shard, fetched)
        if len(batch) != shard.count:
            raise ShardError(f"{self.shown(shard)}: {len(batch)} samples, the manifest says {shard.count}")
        classes = len(self.manifest.classes)
        if len(batch) and (batch.labels.min() < 0 or batch.labels.max() >= classes):
            raise ShardError(f"{self.shown(shard)}: a label is outside 0..{classes - 1}")
        return batch

    def chunks(self) -> Iterator[Batch]:
        """The split shard by shard (a URL's fetched a few ahead, Location.parallel)."""
        shards = read_ahead(self.info.shards, self.fetch, self.loc.parallel, lambda s: s.bytes, self.loc.ahead_bytes)
        for shard, fetched in shards:
            yield self.read_shard(shard, fetched())

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
        self.preflight()
        return collect(self.chunks(), self.count, self.manifest.shape)


@dataclass(frozen=True)
class Storage:
    name: str  # the manifest's ``storage`` and ``ppencrypt dataset --format``
    summary: str  # one line for --help
    writer: type[SplitWriter]
    reader: type[SplitReader]
