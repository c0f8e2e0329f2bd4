"""Zarr v3 storage: OUT is the store root; per split, ``<split>/images`` (N x H x W x C uint8,
sharding codec, zstd inside) and ``<split>/labels`` (N int64).

Writes go shard by shard (whole shards, so zarr never reads back what it wrote). Stock zarr
reads it: ``zarr.open_group(OUT, mode="r")["train/images"][:]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from ..errors import ShardError
from .base import SplitReader, SplitWriter, Storage
from .batch import Batch
from .checksum import sha256_file
from .manifest import Manifest, ShardInfo

IMAGES, LABELS = "images", "labels"
INNER_MAX = 256  # samples per inner chunk: the unit of a random read inside a shard
ZSTD_LEVEL = 0  # zstd's default; encrypted pixels compress little, so speed wins


def inner_chunk(shard_size: int) -> int:
    """The largest divisor of ``shard_size`` up to INNER_MAX (zarr needs inner chunks to tile
    the shard); a shard with no reasonable divisor is one inner chunk."""
    best = max(d for d in range(1, min(shard_size, INNER_MAX) + 1) if shard_size % d == 0)
    return best if best >= 16 else shard_size


def shard_path(split: str, k: int, ndim: int) -> str:
    return f"{split}/{IMAGES}/c/{k}" + "/0" * (ndim - 1)


class ZarrSplitWriter(SplitWriter):
    """The arrays start empty and grow by one shard at a time: resizing only rewrites their
    zarr.json, and every shard is written whole, so zarr never reads back what it wrote."""

    def __init__(self, root: Path, split: str, shape: tuple[int, int, int], shard_size: int):
        super().__init__(root, split, shape, shard_size)
        group = zarr.open_group(store=str(root), mode="a")
        self.images = group.create_array(
            f"{split}/{IMAGES}", shape=(0, *shape), dtype="uint8", fill_value=0,
            chunks=(inner_chunk(shard_size), *shape), shards=(shard_size, *shape),
            compressors=ZstdCodec(level=ZSTD_LEVEL), dimension_names=("sample", "y", "x", "channel"),
        )  # fmt: skip
        self.labels = group.create_array(
            f"{split}/{LABELS}", shape=(0,), dtype="int64", fill_value=-1,
            chunks=(shard_size,), compressors=ZstdCodec(level=ZSTD_LEVEL), dimension_names=("sample",),
        )  # fmt: skip
        self.count = 0
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_n = 0

    def write(self, images: np.ndarray, labels: np.ndarray) -> None:
        self._pending.append((images, labels))
        self._pending_n += len(labels)
        while self._pending_n >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, n: int) -> None:
        images = np.concatenate([p[0] for p in self._pending])
        labels = np.concatenate([p[1] for p in self._pending])
        a, b = self.count, self.count + n
        self.images.resize((b, *self.shape))
        self.labels.resize((b,))
        self.images[a:b] = images[:n]
        self.labels[a:b] = labels[:n]
        self.count = b
        self._pending = [(images[n:], labels[n:])] if len(labels) > n else []
        self._pending_n = len(labels) - n

    def close(self) -> list[ShardInfo]:
        total = self.count + self._pending_n
        if self._pending_n:
            self._flush(self._pending_n)
        shards = []
        for k, first in enumerate(range(0, total, self.shard_size)):
            rel = shard_path(self.split, k, 4)
            path = self.root / rel
            count = min(self.shard_size, total - first)
            shards.append(ShardInfo(rel, sha256_file(path), path.stat().st_size, count, first))
        return shards


class ZarrSplitReader(SplitReader):
    def __init__(self, root: Path, manifest: Manifest, split: str):
        super().__init__(root, manifest, split)
        try:
            group = zarr.open_group(store=str(root), mode="r")
            self.images = group[f"{split}/{IMAGES}"]
            self.labels = group[f"{split}/{LABELS}"]
        except (KeyError, FileNotFoundError, ValueError) as e:
            raise ShardError(f"{root / split}: not a readable zarr split ({type(e).__name__}: {e})") from None
        if self.images.shape != (self.count, *manifest.shape) or self.labels.shape != (self.count,):
            raise ShardError(f"{root / split / IMAGES}: shape {self.images.shape}, the manifest says {(self.count, *manifest.shape)}")

    def _slice(self, a: int, b: int) -> Batch:
        try:
            images = np.asarray(self.images[a:b], dtype=np.uint8)
            labels = np.asarray(self.labels[a:b], dtype=np.int64)
        except Exception as e:  # zarr and numcodecs raise many types for damaged chunks
            raise ShardError(f"{self.root / self.split}: samples {a}..{b - 1} cannot be read ({type(e).__name__}: {e})") from None
        return Batch(images, labels, np.arange(a, b, dtype=np.int64))

    def read_shard(self, shard: ShardInfo) -> Batch:
        return self._slice(shard.first, shard.first + shard.count)

    def head(self, n: int) -> Batch:  # zarr reads any range in one call
        return self._slice(0, min(n, self.count))

    def read(self) -> Batch:
        return self._slice(0, self.count)


STORAGE = Storage("zarr", "a zarr v3 store", ZarrSplitWriter, ZarrSplitReader)
