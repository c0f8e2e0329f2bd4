"""ImageFolder layouts: SRC/<class>/... (one split, ``train``) or SRC/<split>/<class>/...

Every regular, non-hidden file inside a class folder (searched recursively, in sorted order)
is an image; one that does not decode is an error, or skipped with ``--skip-bad``. Nothing is
silently dropped except hidden files and OS droppings (Thumbs.db, desktop.ini).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadImageError, SourceError
from ..imageio import Probe, probe_image
from ..parallel import WorkerPool
from ..progress import ProgressFactory, no_progress
from .base import FileLoader, Source, ordered_splits

SPLIT_FOLDERS = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
JUNK = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
SCAN_CHUNK = 256


def _visible(name: str) -> bool:
    return not name.startswith(".") and name.lower() not in JUNK


def _subdirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if _visible(e.name) and e.is_dir())


def _files_under(class_dir: Path) -> list[str]:
    """Relative paths of the visible files below ``class_dir``, sorted, walking subfolders
    (a folder's files, then its subfolders', as ``os.walk`` lists them; symlinked folders are
    not followed). Directory entries say what they are, so no file is stat'ed."""
    found: list[str] = []

    def walk(folder: str, prefix: str) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:  # as os.walk: an unreadable folder holds nothing
            return
        subdirs = []
        for e in entries:
            if not _visible(e.name):
                continue
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not e.is_symlink():
                    subdirs.append(e)
            elif e.is_file():  # follows a symlink; a broken one is not a file
                found.append(prefix + e.name)
        for d in subdirs:
            walk(d.path, f"{prefix}{d.name}/")

    walk(str(class_dir), "")
    return found


def looks_like_imagefolder(root: Path) -> bool:
    return bool(_subdirs(root))


def _split_dirs(root: Path) -> tuple[dict[str, Path], list[str]]:
    """{split: folder} for the split layout, or {"train": root} for plain class folders."""
    subdirs = _subdirs(root)
    splits = {SPLIT_FOLDERS[d.lower()]: root / d for d in subdirs if d.lower() in SPLIT_FOLDERS and _subdirs(root / d)}
    if not splits:
        return {"train": root}, []
    warnings = [
        f"ignored folder {root / d}: " + ("it holds no class folders" if d.lower() in SPLIT_FOLDERS else "not a split folder")
        for d in subdirs
        if SPLIT_FOLDERS.get(d.lower()) not in splits or splits[SPLIT_FOLDERS[d.lower()]] != root / d
    ]
    return splits, warnings


def _probe_chunk(items: list[tuple[str, str]]) -> list[Probe | BadImageError]:
    out = []
    for path, name in items:
        try:
            out.append(probe_image(path, name))
        except BadImageError as e:
            out.append(e)
    return out


def _chunks(seq: list, n: int) -> list[list]:
    return [seq[i : i + n] for i in range(0, len(seq), n)]


def load_imagefolder(
    root: Path, display: str, size: int | None, pool: WorkerPool, skip_bad: bool, progress: ProgressFactory = no_progress
) -> Source:
    split_dirs, warnings = _split_dirs(root)
    classes = sorted({c for d in split_dirs.values() for c in _subdirs(d)})
    index = {c: i for i, c in enumerate(classes)}
    listing: dict[str, list[tuple[str, str, int]]] = {}
    for split, folder in split_dirs.items():
        entries = []
        for c in _subdirs(folder):
            base, shown = str(folder / c), os.path.join(display, os.path.relpath(folder / c, root))
            for rel in _files_under(folder / c):
                entries.append((f"{base}/{rel}", f"{shown}/{rel}", index[c]))
        listing[split] = entries

    total = sum(len(v) for v in listing.values())
    if total == 0:
        raise SourceError(f"{display}: no images found in its class folders")
    flat = [(p, n) for entries in listing.values() for p, n, _ in entries]
    probes: list = []
    with progress(total, "scan") as bar:
        for result in pool.map(_probe_chunk, _chunks(flat, SCAN_CHUNK)):
            probes.extend(result)
            bar.update(len(result))

    skipped: list[tuple[str, str]] = []
    good: dict[tuple[str, str], Probe] = {}
    for (path, name), p in zip(flat, probes):
        if isinstance(p, BadImageError):
            if not skip_bad:
                raise p
            skipped.append((p.name, p.reason))
        else:
            good[(path, name)] = p
    if not good:
        raise SourceError(f"{display}: no readable images found ({len(skipped)} bad files skipped)")

    channels = 3 if any(p.channels == 3 for p in good.values()) else 1
    if size is None:
        (first, p0), *_ = good.items()
        for key, p in good.items():
            if (p.width, p.height) != (p0.width, p0.height):
                raise SourceError(
                    f"images differ in size: {first[1]} is {p0.width}x{p0.height}, {key[1]} is "
                    f"{p.width}x{p.height}; pass --size N to resize and centre-crop every image to N x N"
                )
        shape = (p0.height, p0.width, channels)
    else:
        shape = (size, size, channels)

    splits = {}
    for split in ordered_splits(listing):
        kept = [(p, n, y) for p, n, y in listing[split] if (p, n) in good]
        if not kept:
            continue
        paths, names, labels = zip(*kept)
        splits[split] = FileLoader(list(paths), list(names), list(labels), channels, size, skip_bad, str(root))
    return Source("imagefolder", classes, shape, splits, skipped, warnings)
