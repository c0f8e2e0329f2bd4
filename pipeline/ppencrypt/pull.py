"""``ppencrypt pull URL OUT``: copy the dataset at a URL into a local folder.

Every file is checked against its recorded size and hash as it arrives, and the folder appears
whole or not at all (formats/copy.py does the copying)."""

from __future__ import annotations

import os

from .formats import Dataset
from .formats.copy import copy_dataset
from .progress import ProgressFactory, no_progress


def pull_dataset(url: str, out: str | os.PathLike, overwrite: bool = False, progress: ProgressFactory = no_progress) -> Dataset:
    """Copy the dataset at ``url`` into folder ``out``; returns the source dataset."""
    return copy_dataset(url, out, overwrite, progress)
