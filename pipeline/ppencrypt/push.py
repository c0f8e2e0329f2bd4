"""``ppencrypt push OUT URL``: copy a dataset from a folder to object storage.

Every file is checked against the manifest's size and SHA-256 as it is read, and the URL never
holds the manifest before every shard (formats/copy.py does the copying)."""

from __future__ import annotations

import os

from .formats import Dataset
from .formats.copy import copy_dataset
from .progress import ProgressFactory, no_progress


def push_dataset(out: str | os.PathLike, url: str, overwrite: bool = False, progress: ProgressFactory = no_progress) -> Dataset:
    """Copy dataset ``out`` to ``url``; returns the source dataset."""
    return copy_dataset(out, url, overwrite, progress)
