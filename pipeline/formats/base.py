"""The contract every storage keeps: how a split is written and read (mosaicml/streaming's
``format/`` style: one module per storage, each a writer and a reader of this shape).

A storage is registered in ``formats/__init__.py`` with one :class:`Storage` line; the
manifest's ``storage`` field picks it on read. The writer receives encrypted batches in sample
order and returns the shards it wrote; the reader hands back :class:`Batch` es shard by shard.
Everything above this layer (encrypt, decrypt, verify, the trainer's loaders, the audit) uses
only these methods, so a new storage changes none of it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ShardError
from .batch import Batch, collect
from .files import FileProblem, hash_regular, inside, open_regular, read_regular
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
    """Reads one split of a dataset whose manifest was checked — but maybe written by the
    server: every shard's claimed count is checked against the bytes that can hold it before
    anything is allocated, every file against its recorded size and hash before it is parsed,
    and every label against the classes before it is handed out."""

    def __init__(self, root: Path, manifest: Manifest, split: str):
        self.root, self.manifest, self.split = root, manifest, split
        self.info = manifest.splits[split]
        self.count = self.info.count
        self.sample_bytes = manifest.height * manifest.width * manifest.channels

    @property
    def shards(self) -> list[ShardInfo]:
        return self.info.shards

    def shard_paths(self) -> list[str]:
        """The shard files, for tools that read them without us (stock webdataset, zarr)."""
        return [str(self.root / s.path) for s in self.info.shards]

    @abstractmethod
    def most_samples(self, shard: ShardInfo) -> int:
        """The most samples a shard of ``shard.bytes`` bytes can hold in this storage."""

    @abstractmethod
    def load_shard(self, shard: ShardInfo) -> Batch:
        """The samples of one shard, its file checked against its recorded size and hash."""

    def shown(self, shard: ShardInfo) -> Path:
        return self.root / shard.path

    def check_claim(self, shard: ShardInfo) -> None:
        if shard.count > self.most_samples(shard):
            raise ShardError(f"{self.shown(shard)}: the manifest claims {shard.count} samples, more than its {shard.bytes} bytes can hold")

    def preflight(self) -> None:
        """Before a whole split is allocated: every shard is a regular file of its recorded
        size, big enough for the samples claimed (an fstat each, nothing read)."""
        for shard in self.info.shards:
            self.check_claim(shard)
            try:
                fd, st = open_regular(inside(self.root, shard.path))
            except FileNotFoundError:
                raise ShardError(f"{self.shown(shard)}: missing") from None
            except FileProblem as e:
                raise ShardError(f"{self.shown(shard)}: {e}") from None
            os.close(fd)
            if st.st_size != shard.bytes:
                raise ShardError(f"{self.shown(shard)}: {st.st_size} bytes, the manifest says {shard.bytes}")

    def read_shard(self, shard: ShardInfo) -> Batch:
        self.check_claim(shard)
        batch = self.load_shard(shard)
        if len(batch) != shard.count:
            raise ShardError(f"{self.shown(shard)}: {len(batch)} samples, the manifest says {shard.count}")
        classes = len(self.manifest.classes)
        if len(batch) and (batch.labels.min() < 0 or batch.labels.max() >= classes):
            raise ShardError(f"{self.shown(shard)}: a label is outside 0..{classes - 1}")
        return batch

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
        self.preflight()
        return collect(self.chunks(), self.count, self.manifest.shape)


def read_file(root: Path, rel: str, size: int, sha256: str) -> bytes:
    """A file of the dataset, whole, as the manifest records it (files.read_regular)."""
    path = root / rel
    try:
        return read_regular(inside(root, rel), size=size, sha256=sha256)
    except FileNotFoundError:
        raise ShardError(f"{path}: missing") from None
    except FileProblem as e:
        raise ShardError(f"{path}: {e}") from None


def check_file(root: Path, rel: str, size: int, sha256: str) -> None:
    """A file of the dataset that another library will open (zarr): regular, inside the
    dataset, of the recorded size and hash — checked before that library reads a byte."""
    path = root / rel
    try:
        digest = hash_regular(inside(root, rel), size)
    except FileNotFoundError:
        raise ShardError(f"{path}: missing") from None
    except FileProblem as e:
        raise ShardError(f"{path}: {e}") from None
    if digest != sha256:
        raise ShardError(f"{path}: checksum mismatch (the file was altered or damaged)")


@dataclass(frozen=True)
class Storage:
    name: str  # the manifest's ``storage`` and ``ppencrypt dataset --format``
    summary: str  # one line for --help
    writer: type[SplitWriter]
    reader: type[SplitReader]
