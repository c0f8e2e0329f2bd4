"""``ppencrypt push OUT URL`` and ``pull URL OUT``: copy a dataset between a folder and a URL.

Every file the manifest lists is read through the format layer — checked against its recorded
size and SHA-256 as it arrives, a few fetched ahead while the last one is written — and
written to the destination, manifest.json last and byte for byte as read (so its MAC still
checks). A folder appears whole (atomic.py); a URL never holds the manifest before every file
(formats/remote.py). ``--overwrite`` replaces only a dataset.
"""

from __future__ import annotations

import os

from ..errors import OutputError
from ..progress import ProgressFactory, no_progress
from . import Dataset, open_dataset, open_location
from .output import publish_files
from .prefetch import read_ahead


def copy_dataset(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False,
                 progress: ProgressFactory = no_progress) -> Dataset:  # fmt: skip
    """Copy the dataset at ``src`` to ``dst`` (folders or URLs); returns the source dataset."""
    ds = open_dataset(src)
    target = open_location(dst)
    if target.holds(ds.loc.root) if ds.loc.local else target.shown() == ds.loc.shown():
        raise OutputError(f"{dst}: is the dataset being copied; choose another destination")
    files = ds.manifest.all_files()
    with progress(len(files), "copy") as bar:

        def copied():
            for f, fetched in read_ahead(files, lambda f: ds.loc.read(f.path, f.bytes, f.sha256), ds.loc.parallel,
                                         lambda f: f.bytes, ds.loc.ahead_bytes):  # fmt: skip
                data = fetched()
                bar.update()
                yield f.path, lambda data=data: data

        publish_files(target, copied(), ds.raw, overwrite)
    return ds
