"""An ImageFolder under a URL prefix: ``s3://bucket/photos/<class>/...`` or
``s3://bucket/photos/{train,val}/<class>/...``, by the local ImageFolder's rules (split
folders, sorted class names, every visible file under a class folder an image) but streamed:
nothing is read before encrypting except the listing and the first image, which decides the
channels and, without ``--size``, the size (streamed.py). FILE_TASK files a task.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadImageError, SourceError
from .base import FILE_TASK, Chunk, Source, ordered_splits
from .imagefolder import SPLIT_FOLDERS, _visible
from .fingerprint import place_listing
from .place import Place
from .streamed import Spec, chunk_of, decoded_or_bad, first_spec

MAX_IMAGE = 256 << 20  # bytes of one image file; a larger one is an error naming it


def _read(place: Place, rel: str, size: int) -> bytes:
    if size > MAX_IMAGE:
        raise SourceError(f"{place.shown(rel)}: {size} bytes, more than the {MAX_IMAGE} an image file may have")
    with place.open(rel) as f:
        data = f.read(MAX_IMAGE + 1)
    if len(data) > MAX_IMAGE:
        raise SourceError(f"{place.shown(rel)}: more than the {MAX_IMAGE} bytes an image file may have")
    return data


@dataclass
class UrlFileTask:
    place: Place
    files: list[tuple[str, int, int]]  # (relative path, size, label)
    spec: Spec
    skip_bad: bool

    def describe(self) -> str:
        more = len(self.files) - 1
        return self.place.shown(self.files[0][0]) + (f" and {more} more" if more else "")

    def run(self) -> Chunk:
        images, labels, bad = [], [], []
        for rel, size, label in self.files:
            image = decoded_or_bad(_read(self.place, rel, size), self.place.shown(rel), self.spec, self.skip_bad, bad)
            if image is not None:
                images.append(image)
                labels.append(label)
        return chunk_of(images, labels, bad, self.spec.channels)


@dataclass
class UrlFileLoader:
    place: Place
    files: list[tuple[str, int, int]]
    spec: Spec
    skip_bad: bool
    parallel = True

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def inputs(self) -> list[str]:
        return [rel for rel, _, _ in self.files]

    def listing(self):
        return place_listing(self.place, self.inputs)

    def tasks(self):
        for a in range(0, len(self.files), FILE_TASK):
            yield UrlFileTask(self.place, self.files[a : a + FILE_TASK], self.spec, self.skip_bad)


def _layout(files: dict[str, int]) -> dict[str, dict[str, list[str]]]:
    """{split: {class: [relative paths]}}; split layout when a top folder is a split name with class folders."""
    visible = [rel for rel in files if all(_visible(p) for p in rel.split("/"))]
    split_tops = {rel.split("/", 1)[0] for rel in visible if rel.count("/") >= 2 and rel.split("/", 1)[0].lower() in SPLIT_FOLDERS}
    out: dict[str, dict[str, list[str]]] = {}
    for rel in visible:
        parts = rel.split("/")
        if split_tops:
            if parts[0] not in split_tops or len(parts) < 3:
                continue
            split, cls = SPLIT_FOLDERS[parts[0].lower()], parts[1]
        elif len(parts) >= 2:
            split, cls = "train", parts[0]
        else:
            continue
        out.setdefault(split, {}).setdefault(cls, []).append(rel)
    return out


def load_url_imagefolder(place: Place, files: dict[str, int], size: int | None, skip_bad: bool) -> Source:
    layout = _layout(files)
    if not layout:
        raise SourceError(f"{place.shown()}: no dataset found: expected class folders, split folders (train/, test/, val/) "
                          "of class folders, webdataset shards (*.tar) or parquet files under this prefix")  # fmt: skip
    classes = sorted({c for per in layout.values() for c in per})
    index = {c: i for i, c in enumerate(classes)}
    listing = {s: [(rel, files[rel], index[c]) for c in sorted(layout[s]) for rel in sorted(layout[s][c])] for s in ordered_splits(layout)}
    spec = None
    for rel, n, _ in (x for s in listing.values() for x in s):
        try:
            spec = first_spec(_read(place, rel, n), place.shown(rel), size)
            break
        except BadImageError:
            if not skip_bad:
                raise
    if spec is None:
        raise SourceError(f"{place.shown()}: no readable images found")
    loaders = {s: UrlFileLoader(place, entries, spec, skip_bad) for s, entries in listing.items()}
    return Source("url-imagefolder", classes, spec.shape, loaders)
