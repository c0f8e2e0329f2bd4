"""A source's fingerprint: what ``--resume`` checks to notice that SRC changed in place since
the interrupted run (resume.py). Without it, the shards kept from that run would hold the old
images and the rest the new ones, under one salt and one manifest.

Cheap, from what listing gives: per split, the SHA-256 of its inputs in order, each with its
size and version — a remote object's ETag, generation or modification time as its listing
gave it (place.VERSION_FIELDS), a local file's mtime in nanoseconds — and the SHA-256 of the
classes file that named its classes (--classes, a classes.txt), read once already. No image is
read again. What it cannot see: a file rewritten with the same bytes count, under the same
mtime (a tool that restores mtimes), on a filesystem that keeps no version.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable, Iterator

from ..errors import SourceError

Entry = tuple[str, int, str]  # (name, size, version)


def local_listing(paths: Iterable[str], root: str = "") -> Iterator[Entry]:
    """Local files by their path below ``root`` (so that the same source named from another
    folder lists the same), with size and mtime."""
    cut = len(root.rstrip(os.sep)) + 1 if root else 0
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as e:
            raise SourceError(f"{path}: cannot read ({e.strerror})") from None
        yield path[cut:] if cut and path.startswith(root) else os.path.basename(path), st.st_size, str(st.st_mtime_ns)


def place_listing(place, rels: Iterable[str]) -> Iterator[Entry]:
    """Files of a place (sources/place.py), as its listing gave them."""
    for rel in rels:
        yield (rel, *place.stamp(rel))


def digest(entries: Iterable[Entry]) -> str:
    h = hashlib.sha256()
    for name, size, version in entries:
        h.update(f"{name}\0{size}\0{version}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def fingerprint(source) -> dict[str, dict[str, str | None]]:
    """Per split: ``listing`` (its inputs' digest) and ``classes`` (its classes file's SHA-256,
    None when no file named the classes)."""
    return {name: {"listing": digest(loader.listing()), "classes": source.classes_files.get(name, (None, None))[1]}
            for name, loader in source.splits.items()}  # fmt: skip
