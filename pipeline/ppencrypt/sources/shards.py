"""Finding a streamed source's files and opening it: webdataset ``*.tar`` or ``*.parquet``
files in a folder, under a URL prefix, or named by a brace pattern.

Splits: files under a split folder (``train/``, ``test/``, ``val/``, ``valid/``,
``validation/``, at any depth) or whose name holds the split as a word between ``-``, ``_``
or ``.`` (Hugging Face's ``data/train-00000-of-00004.parquet``, timm's
``imagenet1k-validation-00.tar``) make that split; a source whose files name no
split is one split, ``train``. A brace pattern is one split, in the pattern's order; a folder's
files are in sorted order.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from ..errors import SourceError
from . import parquet, wds
from .base import Source, ordered_splits
from .place import Place, expand, is_pattern
from .streamed import CLASSES_FILE, Labels, local_classes, read_classes

KINDS = {".tar": "wds", ".parquet": "parquet"}
SPLIT_NAMES = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
TOKEN = re.compile(r"(?:^|[-_.])(train|test|val|valid|validation)(?=[-_.])", re.I)  # imagenet1k-validation-00.tar


@dataclass(kw_only=True)
class Found:
    layout: str  # wds | parquet
    place: Place  # the folder the files are relative to
    splits: dict[str, list[str]]  # split -> files, in order
    sizes: dict[str, int]  # bytes of each file, as listed
    classes_at: list[str]  # where a classes.txt may lie, relative to place


@dataclass(kw_only=True)
class StreamOptions:
    """The options of the streamed sources (the command line's --classes, --image-column, --label-column)."""

    classes: str | None = None  # a classes file (local path or URL)
    image_column: str | None = None
    label_column: str | None = None


IMAGES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def _kind(names: list[str], shown: str) -> str | None:
    kinds = {KINDS.get(posixpath.splitext(n)[1].lower()) for n in names} - {None}
    if kinds and any(posixpath.splitext(n)[1].lower() in IMAGES for n in names):
        raise SourceError(f"{shown}: holds both image files and {' and '.join(sorted(kinds))} files; point SRC at one kind of source")
    if len(kinds) > 1:
        stems = {posixpath.splitext(n)[0] for n in names if n.lower().endswith(".tar")}
        if all(posixpath.splitext(n)[0] in stems for n in names if n.lower().endswith(".parquet")):
            return "wds"  # img2dataset's output: NNNNN.tar with its metadata NNNNN.parquet beside it
        raise SourceError(f"{shown}: holds both webdataset shards (.tar) and parquet files; point SRC at one of them")
    return kinds.pop() if kinds else None


def _split_of(rel: str) -> str | None:
    *folders, base = rel.split("/")
    for d in folders:
        if d.lower() in SPLIT_NAMES:
            return SPLIT_NAMES[d.lower()]
    m = TOKEN.search(base)
    return SPLIT_NAMES[m.group(1).lower()] if m else None


def find_in(place: Place, files: dict[str, int]) -> Found | None:
    """The wds or parquet files of a listed folder, None when it holds neither."""
    kind = _kind(list(files), place.shown())
    if kind is None:
        return None
    ext = next(e for e, k in KINDS.items() if k == kind)
    data = [rel for rel in files if rel.lower().endswith(ext)]
    named = {rel: _split_of(rel) for rel in data}
    if all(named.values()):
        splits: dict[str, list[str]] = {}
        for rel in data:
            splits.setdefault(named[rel], []).append(rel)
    elif any(named.values()):
        odd = next(rel for rel, s in named.items() if s is None)
        raise SourceError(f"{place.shown(odd)}: in no split, while other files are in split folders; point SRC at one split, "
                          "or name each split's source with --split NAME=SRC")  # fmt: skip
    else:
        splits = {"train": data}
    empty = [rel for rel in data if files[rel] == 0]
    if empty:
        raise SourceError(f"{place.shown(empty[0])}: empty file (0 bytes)")
    dirs = sorted({posixpath.dirname(rel) for rel in data})
    return Found(layout=kind, place=place, splits={s: sorted(v) for s, v in splits.items()}, sizes=files, classes_at=[CLASSES_FILE] +
                 [posixpath.join(d, CLASSES_FILE) for d in dirs if d])  # fmt: skip


def find_pattern(src: str) -> Found:
    names = expand(src)
    shown = Place.at(src).shown()
    kind = _kind(names, shown)
    if kind is None or any(posixpath.splitext(n)[1].lower() not in KINDS for n in names):
        raise SourceError(f"{shown}: a brace pattern names webdataset shards (*.tar) or parquet files (*.parquet)")
    base = posixpath.dirname(names[0])
    while not all(n.startswith(base + "/") for n in names):
        base = posixpath.dirname(base)
    place = Place.at(base)
    rels = [n[len(base) + 1 :] for n in names]
    if len(set(rels)) != len(rels):
        raise SourceError(f"{shown}: the pattern names a file twice")
    sizes = _sizes(place, rels)
    present = [r for r in rels if sizes.get(r) is not None]
    if not present:
        raise SourceError(f"{shown}: " + ("the brace pattern matches no file" if is_pattern(src) else "no such file"))
    if len(present) != len(rels):
        missing = next(r for r in rels if sizes.get(r) is None)
        raise SourceError(f"{place.shown(missing)}: missing (named by the brace pattern, {len(rels) - len(present)} of {len(rels)} missing)")
    if any(sizes[r] == 0 for r in rels):
        raise SourceError(f"{place.shown(next(r for r in rels if sizes[r] == 0))}: empty file (0 bytes)")
    return Found(layout=kind, place=place, splits={"train": rels}, sizes=sizes, classes_at=[CLASSES_FILE])


def _sizes(place: Place, rels: list[str]) -> dict[str, int | None]:
    if place.remote and not place.root.lower().startswith(("http://", "https://")):
        try:
            listed = place.files()
        except SourceError:
            listed = {}
        return {r: listed.get(r) for r in rels}
    return {r: place.size(r) for r in rels}


def _classes(found: Found, opts: StreamOptions, builtin: list[str] | None = None,
             what: str = "") -> tuple[list[str] | None, str, str | None]:  # fmt: skip
    """Class names: --classes, else the source's own (a parquet ClassLabel), else a classes.txt
    beside the files; None: none given (label numbers). With where they came from and, from a
    file, its SHA-256."""
    if opts.classes is not None:
        names, sha = local_classes(opts.classes)
        return names, opts.classes, sha
    if builtin is not None:
        return builtin, what, None
    for rel in found.classes_at:
        if found.place.size(rel) is not None:
            names, sha = read_classes(found.place, rel)
            return names, found.place.shown(rel), sha
    return None, "", None


def _in_order(found: Found) -> list[str]:
    return [f for s in ordered_splits(found.splits) for f in found.splits[s]]


def _open_wds(found: Found, size: int | None, skip_bad: bool, opts: StreamOptions) -> Source:
    names, shown_classes, sha = _classes(found, opts)
    labels = Labels(names, shown_classes)
    spec = wds.probe(found.place, _in_order(found), size, skip_bad)
    loaders = {split: wds.WdsLoader(found.place, found.splits[split], [found.sizes[f] for f in found.splits[split]], spec, labels,
                                    skip_bad) for split in ordered_splits(found.splits)}  # fmt: skip
    return Source("wds", names or [], spec.shape, loaders, numbered=names is None, classes_files=_files(loaders, shown_classes, sha))


def _open_parquet(found: Found, size: int | None, skip_bad: bool, opts: StreamOptions) -> Source:
    place = found.place
    scanned = {s: parquet.scan(place, files, opts.image_column, opts.label_column) for s, files in found.splits.items()}
    cols = next(iter(scanned.values())).columns
    if any((c.columns.image, c.columns.label) != (cols.image, cols.label) for c in scanned.values()):
        raise SourceError(f"{place.shown()}: its splits' files have different image or label columns")
    names, shown_classes, sha = _classes(found, opts, cols.names, f"{place.shown()} (the Hugging Face ClassLabel of column {cols.label!r})")
    if names is None:
        names = parquet.numbered(set().union(*(c.label_values for c in scanned.values())), place.shown())
        shown_classes = f"{place.shown()} (its labels)"
    labels = Labels(names, shown_classes)
    spec = parquet.probe(place, _in_order(found), cols, size, skip_bad)
    loaders = {split: parquet.ParquetLoader(place, found.splits[split], scanned[split].groups, scanned[split].columns, spec, labels,
                                            skip_bad) for split in ordered_splits(found.splits)}  # fmt: skip
    return Source("parquet", names, spec.shape, loaders, classes_files=_files(loaders, shown_classes, sha))


def _files(loaders: dict, shown: str, sha: str | None) -> dict[str, tuple[str, str]]:
    """Source.classes_files: each split's classes file (where, SHA-256), when one named the classes."""
    return {} if sha is None else {split: (shown, sha) for split in loaders}


OPENERS = {"wds": _open_wds, "parquet": _open_parquet}  # a layout of KINDS: how its files become a Source


def open_found(found: Found, size: int | None, skip_bad: bool, opts: StreamOptions) -> Source:
    return OPENERS[found.layout](found, size, skip_bad, opts)
