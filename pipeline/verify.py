"""``ppencrypt verify``: recompute every checksum and count against the manifest.

Without the key this checks integrity: the files are the ones the manifest lists, unaltered,
and hold what it says. It cannot check that the manifest itself is the one ppencrypt wrote —
the server could have rewritten both. With the key (``--key``) the manifest's MAC is checked
first, which makes every other check an authenticity check too.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .authenticate import authenticate
from .errors import ShardError
from .formats import MANIFEST, open_dataset
from .formats.base import check_file
from .keys import MasterKey
from .progress import ProgressFactory, no_progress


@dataclass
class VerifyReport:
    files: int
    samples: int
    bytes: int
    authenticated: bool = False
    warnings: list[str] = field(default_factory=list)


def verify_dataset(root: str | os.PathLike, progress: ProgressFactory = no_progress, key: MasterKey | None = None,
                   key_name: str = "the key") -> VerifyReport:  # fmt: skip
    """Raise naming the first file that is missing, altered, unlisted or miscounted (and, with
    ``key``, a manifest that is not the one ppencrypt wrote with it)."""
    ds = open_dataset(root)
    root = Path(root)
    warnings: list[str] = []
    if key is not None:
        warnings = authenticate(ds, key, key_name)
    m = ds.manifest
    files = m.all_files()
    with progress(len(files), "checksums") as bar:
        for f in files:
            check_file(root, f.path, f.bytes, f.sha256)
            bar.update()
    listed = {f.path for f in files} | {MANIFEST}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel not in listed:
                raise ShardError(f"{root / rel}: not listed in the manifest")
            if not stat.S_ISREG(os.lstat(root / rel).st_mode):
                raise ShardError(f"{root / rel}: not a regular file")
    samples = 0
    for split, info in m.splits.items():
        per_class = np.zeros(len(m.classes), np.int64)
        for batch in ds.split(split).chunks():  # each shard's count and labels checked on read
            per_class += np.bincount(batch.labels, minlength=len(m.classes))
        if per_class.tolist() != info.per_class:
            raise ShardError(f"{root / split}: per-class counts differ from the manifest")
        samples += info.count
    total = sum(f.bytes for f in files)
    return VerifyReport(len(files), samples, total, key is not None and m.version >= 2, warnings)
