"""Zarr v3 storage: OUT is the store root; per split, ``<split>/images`` (N x H x W x C uint8,
sharding codec, zstd inside) and ``<split>/labels`` (N int64).

Writes go shard by shard (whole shards, so zarr never reads back what it wrote). Stock zarr
reads it: ``zarr.open_group(OUT, mode="r")["train/images"][:]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ShardError
from .base import SplitReader, SplitWriter, Storage
from .batch import Batch
from .checksum import sha256_file
from .location import Location
from .manifest import MAX_BYTES, Manifest, ShardInfo
from .zarrmeta import check_array, check_group

IMAGES, LABELS = "images", "labels"
INNER_MAX = 256  # samples per inner chunk: the unit of a random read inside a shard
ZSTD_LEVEL = 0  # zstd's default; encrypted pixels compress little, so speed wins
MAX_RATIO = 1024  # the most a shard may claim to decompress to, in multiples of its size


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
        import zarr  # here, not at the top: a wds job (and every other command) skips its 0.2-0.4 s import
        from zarr.codecs import ZstdCodec

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
        self.shards: list[ShardInfo] = []
        # the shard being filled, in place: one copy of it, not its pieces and then their concatenation
        self._images = self._labels = None
        self._pending_n = 0

    @classmethod
    def samples_within(cls, shape: tuple[int, int, int], nbytes: int) -> int:
        # the pixels and the label, uncompressed (encrypted pixels barely compress), and zstd's
        # frame and the shard index as a margin
        return max(1, (nbytes - 4096) // (shape[0] * shape[1] * shape[2] + 8 + 64))

    @classmethod
    def shard_names(cls, split: str, k: int) -> list[str]:
        return [shard_path(split, k, 4), f"{split}/{LABELS}/c/{k}"]

    def resume(self, shards: list[ShardInfo]) -> None:
        self.shards = list(shards)
        self.count = shards[-1].first + shards[-1].count if shards else 0
        self.images.resize((self.count, *self.shape))  # the metadata only: no chunk is read or written
        self.labels.resize((self.count,))

    def write(self, images: np.ndarray, labels: np.ndarray) -> None:
        at = 0
        while at < len(labels):
            if self._images is None:  # pages are touched only as samples arrive: a short split costs its size
                self._images = np.empty((self.shard_size, *self.shape), np.uint8)
                self._labels = np.empty(self.shard_size, np.int64)
            take = min(len(labels) - at, self.shard_size - self._pending_n)
            self._images[self._pending_n : self._pending_n + take] = images[at : at + take]
            self._labels[self._pending_n : self._pending_n + take] = labels[at : at + take]
            self._pending_n += take
            at += take
            if self._pending_n == self.shard_size:
                self._flush(self.shard_size)

    def _flush(self, n: int) -> None:
        a, b = self.count, self.count + n
        self.images.resize((b, *self.shape))
        self.labels.resize((b,))
        self.images[a:b] = self._images[:n]
        self.labels[a:b] = self._labels[:n]
        self.count = b
        self._pending_n = 0
        # the shard and its label chunk are whole now and never rewritten: final
        k = a // self.shard_size
        rel = shard_path(self.split, k, 4)
        self.shards.append(ShardInfo(rel, sha256_file(self.root / rel), (self.root / rel).stat().st_size, n, a))
        self.final(rel, self.shards[-1].sha256)
        self.final(f"{self.split}/{LABELS}/c/{k}")

    def close(self) -> list[ShardInfo]:
        if self._pending_n:
            self._flush(self._pending_n)
        return self.shards


class ZarrSplitReader(SplitReader):
    """Opens a split only after its metadata files match the manifest and hold exactly the
    structure our writer makes (zarrmeta.py). zarr never reads a file itself: it decodes from
    a store in memory that holds only bytes checked against the manifest — the metadata, and
    per shard its image shard and label chunk, fetched through the location (a local folder
    or a URL alike) and dropped once the shard is decoded."""

    def __init__(self, root: Path | Location, manifest: Manifest, split: str):
        super().__init__(root, manifest, split)
        self.listed = {f.path: f for f in manifest.files}
        shape = [self.count, *manifest.shape]
        images, labels = f"{split}/{IMAGES}/zarr.json", f"{split}/{LABELS}/zarr.json"
        docs = {rel: self._metadata(rel) for rel in ("zarr.json", f"{split}/zarr.json", images, labels)}
        check_group(docs["zarr.json"].decode("utf-8"), self.loc.shown("zarr.json"))
        check_group(docs[f"{split}/zarr.json"].decode("utf-8"), self.loc.shown(f"{split}/zarr.json"))
        self.shard_size = check_array(docs[images].decode("utf-8"), self.loc.shown(images), "uint8", shape)
        if check_array(docs[labels].decode("utf-8"), self.loc.shown(labels), "int64", shape[:1]) != self.shard_size:
            raise ShardError(f"{self.loc.shown(labels)}: label chunks do not match the image shards")
        for k, sh in enumerate(self.info.shards):
            first = k * self.shard_size
            if sh.path != shard_path(split, k, 4) or sh.first != first or sh.count != min(self.shard_size, self.count - first):
                raise ShardError(f"{self.shown(sh)}: shard {k} of split {split} is not where or as large as zarr puts it")
        if len(self.info.shards) != -(-self.count // self.shard_size):
            raise ShardError(f"{self.loc.shown(split)}: the manifest lists {len(self.info.shards)} shards, zarr's layout has another number")
        import zarr  # here, not at the top: see ZarrSplitWriter
        from zarr.core.buffer.cpu import Buffer
        from zarr.storage import MemoryStore

        self._buffer = Buffer.from_bytes
        self.verified = {rel: Buffer.from_bytes(data) for rel, data in docs.items()}  # zarr's whole view of the store
        try:
            group = zarr.open_group(store=MemoryStore(self.verified, read_only=True), mode="r", zarr_format=3)
            self.images = group[f"{split}/{IMAGES}"]
            self.labels = group[f"{split}/{LABELS}"]
        except Exception as e:  # zarr raises many types for what it cannot open
            raise ShardError(f"{self.loc.shown(split)}: not a readable zarr split ({type(e).__name__}: {e})") from None

    def _listed(self, rel: str):
        if rel not in self.listed:
            raise ShardError(f"{self.loc.shown(rel)}: not listed in the manifest")
        return self.listed[rel]

    def _metadata(self, rel: str) -> bytes:
        f = self._listed(rel)
        if f.bytes > MAX_BYTES:
            raise ShardError(f"{self.loc.shown(rel)}: {f.bytes} bytes of metadata, more than {MAX_BYTES}")
        data = self.loc.read(rel, f.bytes, f.sha256)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise ShardError(f"{self.loc.shown(rel)}: not UTF-8") from None
        return data

    def most_samples(self, shard: ShardInfo) -> int:
        # zstd can shrink data a lot, but not without bound: a shard that claims to decode to
        # more than MAX_RATIO times its size is refused rather than allocated.
        return MAX_RATIO * shard.bytes // self.sample_bytes

    def _slice(self, a: int, b: int) -> Batch:
        try:
            images = np.asarray(self.images[a:b], dtype=np.uint8)
            labels = np.asarray(self.labels[a:b], dtype=np.int64)
        except Exception as e:  # zarr and numcodecs raise many types for damaged chunks
            raise ShardError(f"{self.loc.shown(self.split)}: samples {a}..{b - 1} cannot be read ({type(e).__name__}: {e})") from None
        return Batch(images, labels, np.arange(a, b, dtype=np.int64))

    def fetch(self, shard: ShardInfo) -> dict[str, bytes]:
        """The image shard and its label chunk, checked against the manifest."""
        label = self._listed(f"{self.split}/{LABELS}/c/{shard.first // self.shard_size}")
        return {f.path: self.loc.read(f.path, f.bytes, f.sha256) for f in (shard, label)}

    def decode(self, shard: ShardInfo, fetched: dict[str, bytes]) -> Batch:
        self.verified.update((rel, self._buffer(data)) for rel, data in fetched.items())
        try:
            return self._slice(shard.first, shard.first + shard.count)
        finally:
            for rel in fetched:
                del self.verified[rel]


STORAGE = Storage("zarr", "a zarr v3 store", ZarrSplitWriter, ZarrSplitReader)
