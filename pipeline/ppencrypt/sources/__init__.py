"""Source datasets, recognised from what SRC holds (docs/formats.md, "Inputs")."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OptionError, SourceError
from ..formats.location import is_url, local_path
from ..parallel import WorkerPool
from ..progress import ProgressFactory, no_progress
from .base import ArrayLoader, Chunk, FileLoader, Source, read_head, run_task
from .cifar import NESTED, detect_cifar, load_cifar
from .idx import find_idx, load_idx
from .imagefolder import load_imagefolder, looks_like_imagefolder
from .place import Place, is_pattern
from .shards import KINDS, StreamOptions, find_in, find_pattern, open_found
from .urlfolder import load_url_imagefolder

__all__ = ["ArrayLoader", "Chunk", "FileLoader", "Source", "StreamOptions", "open_source", "read_head", "run_task"]


def open_source(
    src: str | None,
    size: int | None = None,
    pool: WorkerPool | None = None,
    skip_bad: bool = False,
    progress: ProgressFactory = no_progress,
    *,
    stream: StreamOptions | None = None,
    splits: dict[str, str] | None = None,
) -> Source:
    """The source at ``src`` (a folder, a URL prefix, a brace pattern), or with ``splits``
    (--split NAME=SRC) each split from its own source, SRC then None or '-'."""
    stream = stream or StreamOptions()
    if splits:
        if src not in (None, "-"):
            raise OptionError("--split", "with --split NAME=SRC for each split, SRC is '-'")
        return merge({name: _open_one(s, size, pool, skip_bad, progress, stream) for name, s in splits.items()})
    if src in (None, "-"):
        raise OptionError("SRC", "no source: give SRC, or --split NAME=SRC for each split")
    return _open_one(src, size, pool, skip_bad, progress, stream)


def _open_one(src: str, size, pool, skip_bad, progress, stream: StreamOptions) -> Source:
    one_file = os.path.splitext(src.rstrip("/"))[1].lower() in KINDS and not (not is_url(src) and local_path(src).is_dir())
    if is_pattern(src) or one_file:  # a pattern, or one shard or parquet file
        return open_found(find_pattern(src), size, skip_bad, stream)
    if is_url(src):
        place = Place.at(src)
        files = place.files()
        if not files:
            raise SourceError(f"{place.shown()}: no files under this prefix")
        found = find_in(place, files)
        if found is None:
            return load_url_imagefolder(place, files, size, skip_bad)
        return open_found(found, size, skip_bad, stream)
    return _open_local(src, size, pool or WorkerPool(1), skip_bad, progress, stream)


def _open_local(src: str, size, pool, skip_bad, progress, stream: StreamOptions) -> Source:
    root = local_path(src)
    if not root.exists():
        raise SourceError(f"{src}: no such directory")
    if not root.is_dir():
        raise SourceError(f"{src}: not a directory (point SRC at the folder that holds the dataset)")
    try:
        entries = list(root.iterdir())
    except OSError as e:
        raise SourceError(f"{src}: cannot list ({e.strerror})") from None
    # The folders that torchvision's downloaders create: cifar-10-batches-py/, MNIST/raw/.
    nested = [p for p in entries if p.is_dir() and (p.name in NESTED or (p.name == "raw" and find_idx(p)))]
    if len(nested) == 1 and not detect_cifar(root) and not find_idx(root):
        return _open_local(str(nested[0]), size, pool, skip_bad, progress, stream)
    layout = detect_cifar(root)
    if layout:
        return load_cifar(root, src, layout, size)
    if find_idx(root):
        return load_idx(root, src, size)
    if _holds_shards(root):
        place = Place.at(str(root))
        found = find_in(place, place.files())
        if found is not None:
            return open_found(found, size, skip_bad, stream)
    if looks_like_imagefolder(root):
        return load_imagefolder(root, src, size, pool, skip_bad, progress)
    if not entries:
        raise SourceError(f"{src}: empty directory: no images to encrypt")
    raise SourceError(
        f"{src}: no dataset found: expected class folders, split folders (train/, test/, val/) of class "
        "folders, CIFAR-10/100 python batches, MNIST-style IDX files, webdataset shards (*.tar) or parquet files"
    )


def _holds_shards(root: Path, depth: int = 2) -> bool:
    """Whether a .tar or .parquet file lies in ``root`` or its folders, ``depth`` levels down
    (split folders, Hugging Face's data/train/): a cheap look before a whole listing."""
    try:
        with os.scandir(root) as it:
            entries = [e for e in it if not e.name.startswith(".")]
    except OSError:
        return False
    if any(os.path.splitext(e.name)[1].lower() in KINDS and e.is_file() for e in entries):  # the name first: no stat
        return True
    return depth > 0 and any(e.is_dir(follow_symlinks=False) and _holds_shards(Path(e.path), depth - 1) for e in entries)


def merge(parts: dict[str, Source]) -> Source:
    """One source of the splits given with --split NAME=SRC, each SRC a one-split source."""
    splits, layouts = {}, {}
    for name, s in parts.items():
        if len(s.splits) != 1:
            raise SourceError(f"--split {name}=...: that source holds the splits {', '.join(s.splits)}; name one of them")
        splits[name] = next(iter(s.splits.values()))
        layouts[name] = s.layout
    first_name, first = next(iter(parts.items()))
    for name, s in parts.items():
        if s.shape != first.shape:
            (h, w, c), (fh, fw, fc) = s.shape, first.shape
            raise SourceError(f"--split {name}: its images are {w}x{h}x{c}, split {first_name}'s {fw}x{fh}x{fc}; pass --size N")
    lists = [s.classes for s in parts.values()]
    if any(s.numbered for s in parts.values()):
        if not all(s.numbered for s in parts.values()):
            raise SourceError("--split: some splits have class names and others only label numbers; give each a classes file (--classes)")
        classes = []
    elif all(c == lists[0] for c in lists) or all(c == [str(i) for i in range(len(c))] for c in lists):
        classes = max(lists, key=len)  # label numbers: the split with the largest label names them all
    else:
        odd = next(n for n, s in parts.items() if s.classes != lists[0])
        raise SourceError(f"--split {odd}: its classes differ from split {first_name}'s (give every split the same classes)")
    kinds = set(layouts.values())
    return Source(
        kinds.pop() if len(kinds) == 1 else "mixed", classes, first.shape, splits,
        [b for s in parts.values() for b in s.skipped], [w for s in parts.values() for w in s.warnings],
        numbered=all(s.numbered for s in parts.values()), layouts=layouts,
        classes_files={name: f for name, s in parts.items() for f in s.classes_files.values()},
    )  # fmt: skip
