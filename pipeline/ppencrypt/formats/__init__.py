"""The format layer: the only way into an encrypted dataset, for ppencrypt and pptrain alike.

    ds = open_dataset("out/fmnist")       # reads and checks manifest.json; or a URL: s3://bucket/fmnist
    ds.manifest.classes, ds.manifest.shape
    batch = ds.split("train").read()      # Batch(images N x H x W x C uint8, labels, indices)
    for batch in ds.split("test").chunks(): ...   # shard by shard

One module per storage (wds, zarrstore), each with a writer and a reader; this module picks
them by the manifest's ``storage`` field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ManifestError
from . import wds, zarrstore
from .base import SplitReader, SplitWriter, Storage
from .batch import Batch
from .cache import ShardCache
from .checksum import sha256_file
from .locate import open_location
from .location import Location, dataset_name, is_url, shown_url, without_credentials
from .manifest import MANIFEST, FileInfo, Manifest, ShardInfo, SplitInfo, is_dataset

# The storages, by the name the manifest and --format use. A new storage: its module, one line.
STORAGES: dict[str, Storage] = {s.name: s for s in (wds.STORAGE, zarrstore.STORAGE)}

__all__ = [
    "Batch", "Dataset", "FileInfo", "Location", "Manifest", "STORAGES", "ShardCache", "ShardInfo", "SplitInfo",
    "SplitReader", "SplitWriter", "Storage", "dataset_name", "is_dataset", "is_url", "open_dataset", "open_location",
    "other_files", "sha256_file", "shown_url", "split_writer", "without_credentials",
]  # fmt: skip


def split_writer(storage: str, root: Path, split: str, shape: tuple[int, int, int], shard_size: int) -> SplitWriter:
    return STORAGES[storage].writer(root, split, shape, shard_size)


def other_files(root: Path, listed: set[str]) -> list[FileInfo]:
    """Every file under ``root`` not in ``listed`` and not the manifest, hashed, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            path = Path(dirpath) / f
            rel = path.relative_to(root).as_posix()
            if rel != MANIFEST and rel not in listed:
                found.append(FileInfo(rel, sha256_file(path), path.stat().st_size))
    return found


@dataclass
class Dataset:
    loc: Location  # where it lives: a local folder or a URL
    manifest: Manifest
    raw: bytes = field(default=b"", repr=False)  # manifest.json as read: what a copy writes

    @property
    def root(self) -> Path | str:
        """The folder, or the URL (for messages and stock tools)."""
        return self.loc.root

    @property
    def splits(self) -> list[str]:
        return list(self.manifest.splits)

    def split(self, name: str) -> SplitReader:
        if name not in self.manifest.splits:
            raise ManifestError(f"{self.root}: no split {name!r} (it has {', '.join(self.splits)})")
        return STORAGES[self.manifest.storage].reader(self.loc, self.manifest, name)


def open_dataset(root: str | os.PathLike | Location, cache: ShardCache | None = None) -> Dataset:
    """The dataset in a local folder or at a URL (s3://, gs://, https://, file://), its
    manifest read and checked; ``cache`` keeps a URL's verified files on local disk."""
    loc = open_location(root, cache)
    text = loc.manifest_text()
    m = Manifest.from_json(text, loc.shown(MANIFEST))
    if m.storage not in STORAGES:
        raise ManifestError(f"{loc.shown(MANIFEST)}: unknown storage {m.storage!r}")
    return Dataset(loc, m, text.encode("utf-8"))
