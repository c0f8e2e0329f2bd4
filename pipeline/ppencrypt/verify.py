"""``ppencrypt verify``: recompute every checksum and count against the manifest.

Without the key this checks integrity: the files are the ones the manifest lists, unaltered,
and hold what it says. It cannot check that the manifest itself is the one ppencrypt wrote —
the server could have rewritten both. With the key (``--key``) the manifest's MAC is checked
first, which makes every other check an authenticity check too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import ShardError
from .formats import MANIFEST, open_dataset
from .keys import MasterKey, open_keyed
from .progress import ProgressFactory, no_progress


@dataclass
class VerifyReport:
    files: int
    samples: int
    bytes: int
    authenticated: bool = False
    warnings: list[str] = field(default_factory=list)


def verify_dataset(root: str | os.PathLike, progress: ProgressFactory = no_progress, key: MasterKey | None = None,
                   dataset_id: str | None = None) -> VerifyReport:  # fmt: skip
    """Raise naming the first file that is missing, altered, unlisted or miscounted (and, with
    ``key``, a manifest that is not the one ppencrypt wrote with it). ``root``: a folder or a URL."""
    if key is not None:
        keyed = open_keyed(root, key, dataset_id=dataset_id)
        ds, warnings = keyed.dataset, list(keyed.warnings)
    else:
        ds, warnings = open_dataset(root), []
    loc, m = ds.loc, ds.manifest
    files = m.all_files()
    # Over a URL a shard is downloaded once: the reader below checks its hash as it arrives,
    # as every reader of a URL does. Locally every file is hashed first, whatever reads it.
    shards = set() if loc.local else {sh.path for s in m.splits.values() for sh in s.shards}
    with progress(len(files) - len(shards), "checksums") as bar:
        for f in files:
            if f.path not in shards:
                loc.check(f.path, f.bytes, f.sha256)
                bar.update()
    listed = {f.path for f in files} | {MANIFEST}
    found = loc.listing()
    if found is None:
        warnings.append(f"{loc.shown()}: {str(loc.root).split(':', 1)[0]} cannot list a folder, so files the manifest does not list were not looked for")
    for rel, regular in found or []:
        if rel not in listed:
            raise ShardError(f"{loc.shown(rel)}: not listed in the manifest")
        if not regular:
            raise ShardError(f"{loc.shown(rel)}: not a regular file")
    samples = 0
    for split, info in m.splits.items():
        per_class = np.zeros(len(m.classes), np.int64)
        for batch in ds.split(split).chunks():  # each shard's count and labels checked on read
            per_class += np.bincount(batch.labels, minlength=len(m.classes))
        if per_class.tolist() != info.per_class:
            raise ShardError(f"{loc.shown(split)}: per-class counts differ from the manifest")
        samples += info.count
    total = sum(f.bytes for f in files)
    return VerifyReport(len(files), samples, total, key is not None and m.version >= 2, warnings)
