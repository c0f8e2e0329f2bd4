"""The format layer: the only way into an encrypted dataset, for ppencrypt and pptrain alike.

    ds = open_dataset("out/fmnist")       # reads and checks manifest.json
    ds.manifest.classes, ds.manifest.shape
    batch = ds.split("train").read()      # Batch(images N x H x W x C uint8, labels, indices)
    for batch in ds.split("test").chunks(): ...   # shard by shard

One module per storage (wds, zarrstore), each with a writer and a reader; this module picks
them by the manifest's ``storage`` field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ManifestError
from .batch import Batch
from .manifest import MANIFEST, FileInfo, Manifest, ShardInfo, SplitInfo, read_manifest
from .wds import WdsSplitReader, WdsSplitWriter
from .zarrstore import ZarrSplitReader, ZarrSplitWriter, sha256_file

WRITERS = {"wds": WdsSplitWriter, "zarr": ZarrSplitWriter}
READERS = {"wds": WdsSplitReader, "zarr": ZarrSplitReader}
STORAGES = tuple(WRITERS)

__all__ = ["Batch", "Dataset", "FileInfo", "Manifest", "STORAGES", "ShardInfo", "SplitInfo", "open_dataset", "other_files", "split_writer"]


def split_writer(storage: str, root: Path, split: str, shape, shard_size: int, capacity: int):
    return WRITERS[storage](root, split, shape, shard_size, capacity)


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
    root: Path
    manifest: Manifest

    @property
    def splits(self) -> list[str]:
        return list(self.manifest.splits)

    def split(self, name: str):
        if name not in self.manifest.splits:
            raise ManifestError(f"{self.root}: no split {name!r} (it has {', '.join(self.splits)})")
        return READERS[self.manifest.storage](self.root, self.manifest, name)


def open_dataset(root: str | os.PathLike) -> Dataset:
    root = Path(root)
    return Dataset(root, read_manifest(root))
