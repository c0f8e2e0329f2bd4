"""``ppencrypt verify``: recompute every checksum and count against the manifest."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ShardError
from .formats import open_dataset, sha256_file
from .progress import ProgressFactory, no_progress


@dataclass
class VerifyReport:
    files: int
    samples: int
    bytes: int


def verify_dataset(root: str | os.PathLike, progress: ProgressFactory = no_progress) -> VerifyReport:
    """Raise ShardError naming the first file that is missing, altered, unlisted or miscounted."""
    ds = open_dataset(root)
    root = Path(root)
    m = ds.manifest
    files = m.all_files()
    total = sum(f.bytes for f in files)
    with progress(len(files), "checksums") as bar:
        for f in files:
            path = root / f.path
            if not path.is_file():
                raise ShardError(f"{path}: missing")
            if path.stat().st_size != f.bytes:
                raise ShardError(f"{path}: {path.stat().st_size} bytes, the manifest says {f.bytes}")
            if sha256_file(path) != f.sha256:
                raise ShardError(f"{path}: checksum mismatch (the file was altered or damaged)")
            bar.update()
    listed = {f.path for f in files} | {"manifest.json"}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel not in listed:
                raise ShardError(f"{root / rel}: not listed in the manifest")
    samples = 0
    for split, info in m.splits.items():
        per_class = np.zeros(len(m.classes), np.int64)
        reader = ds.split(split)
        for shard, batch in zip(info.shards, reader.chunks()):
            if len(batch) != shard.count:
                raise ShardError(f"{root / shard.path}: {len(batch)} samples, the manifest says {shard.count}")
            if len(batch) and (batch.labels.min() < 0 or batch.labels.max() >= len(m.classes)):
                raise ShardError(f"{root / shard.path}: a label is outside 0..{len(m.classes) - 1}")
            per_class += np.bincount(batch.labels, minlength=len(m.classes))
        if per_class.tolist() != info.per_class:
            raise ShardError(f"{root / split}: per-class counts differ from the manifest")
        samples += info.count
    return VerifyReport(len(files), samples, total)
