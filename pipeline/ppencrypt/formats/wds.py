"""WebDataset storage: OUT/<split>/NNNNNN.tar, one sample per index.

A sample is two members: ``<key>.cls`` (the label, ASCII decimal) and ``<key>.npy`` (the
encrypted H x W x C uint8 image in NumPy's .npy format), where ``<key>`` is the sample's
index in its split, zero-padded to 8 digits — never a source file name. Stock webdataset reads
the shards with ``wds.WebDataset(urls).decode().to_tuple("npy", "cls")``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import ShardError
from .base import SplitReader, SplitWriter, Storage
from .batch import Batch
from .manifest import ShardInfo
from .tar import BLOCK, TarStream, iter_members

IMAGE_EXT = "npy"
LABEL_EXT = "cls"
KEY_DIGITS = 8


def sample_key(index: int) -> str:
    return f"{index:0{KEY_DIGITS}d}"


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy bytes that precede the pixels: identical for every sample of a dataset."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


class WdsSplitWriter(SplitWriter):
    def __init__(self, root: Path, split: str, shape: tuple[int, int, int], shard_size: int):
        super().__init__(root, split, shape, shard_size)
        (root / split).mkdir(parents=True, exist_ok=True)
        self.header = npy_header(shape)
        self.index = 0
        self.shards: list[ShardInfo] = []
        self._file = self._tar = None
        self._first = 0

    def _start(self) -> None:
        rel = f"{self.split}/{len(self.shards):06d}.tar"
        self._rel = rel
        self._file = open(self.root / rel, "wb", buffering=1 << 20)
        self._tar = TarStream(self._file)
        self._first = self.index

    def _finish(self) -> None:
        self._tar.close()
        self._file.close()
        count = self.index - self._first
        self.shards.append(ShardInfo(self._rel, self._tar.sha256.hexdigest(), self._tar.offset, count, self._first))
        self._file = self._tar = None

    def write(self, images: np.ndarray, labels: np.ndarray) -> None:
        rows = np.ascontiguousarray(images).reshape(len(images), -1)
        for row, label in zip(rows, labels.tolist()):
            if self._tar is None:
                self._start()
            key = sample_key(self.index).encode()
            self._tar.add(key + b".cls", b"%d" % label)
            self._tar.add(key + b".npy", self.header, row.data)
            self.index += 1
            if self.index - self._first == self.shard_size:
                self._finish()

    def close(self) -> list[ShardInfo]:
        if self._tar is not None:
            self._finish()
        return self.shards


def sample_bytes_at_least(shape: tuple[int, int, int]) -> int:
    """A sample takes two tar headers and at least its pixels: the bound on how many samples a
    shard of a given size can hold, checked before their memory is allocated."""
    return 2 * BLOCK + shape[0] * shape[1] * shape[2]


def parse_shard(data: bytes, shard: ShardInfo, shape: tuple[int, int, int], shown: str) -> Batch:
    """Decode one shard held in memory; checks the keys run from ``shard.first`` and the count."""
    header = npy_header(shape)
    nbytes = shape[0] * shape[1] * shape[2]
    if shard.count * sample_bytes_at_least(shape) > len(data):
        raise ShardError(f"{shown}: {len(data)} bytes cannot hold the {shard.count} samples the manifest claims")
    images = np.empty((shard.count, *shape), np.uint8)
    flat = images.reshape(shard.count, -1)
    labels = np.empty(shard.count, np.int64)
    members = iter_members(data, shown)
    i = 0
    for cls in members:
        npy = next(members, None)
        key = sample_key(shard.first + i)
        if i >= shard.count:
            raise ShardError(f"{shown}: more samples than the manifest's {shard.count}")
        if cls.name != f"{key}.{LABEL_EXT}" or npy is None or npy.name != f"{key}.{IMAGE_EXT}":
            raise ShardError(f"{shown}: expected sample {key} ({key}.cls, {key}.npy), found {cls.name}")
        if len(npy.data) != len(header) + nbytes or npy.data[: len(header)] != header:
            raise ShardError(f"{shown}: sample {key} is not a {shape} uint8 array")
        try:
            labels[i] = int(bytes(cls.data))
        except ValueError:
            raise ShardError(f"{shown}: sample {key} has a label that is not an integer") from None
        flat[i] = np.frombuffer(npy.data[len(header) :], np.uint8)
        i += 1
    if i != shard.count:
        raise ShardError(f"{shown}: {i} samples, the manifest says {shard.count}")
    return Batch(images, labels, np.arange(shard.first, shard.first + shard.count, dtype=np.int64))


class WdsSplitReader(SplitReader):
    def most_samples(self, shard: ShardInfo) -> int:
        return shard.bytes // sample_bytes_at_least(self.manifest.shape)

    def fetch(self, shard: ShardInfo) -> bytes:
        return self.loc.read(shard.path, shard.bytes, shard.sha256)

    def decode(self, shard: ShardInfo, fetched: bytes) -> Batch:
        return parse_shard(fetched, shard, self.manifest.shape, self.shown(shard))


STORAGE = Storage("wds", "WebDataset tar shards", WdsSplitWriter, WdsSplitReader)
