"""What the streamed sources (webdataset shards, parquet files, an ImageFolder at a URL) share:
how a sample's bytes become an image of the dataset's shape, how a label becomes a class
index, and how a split's ordered inputs are described in the manifest.

A streamed source is not scanned before it is encrypted — a 100-million-image collection would
be read twice — so its first image decides what a scan would have: the channels (grayscale
only when the first image is; a colour image after it is an error naming it, a grayscale one
in a colour dataset is replicated into R = G = B as everywhere) and, without ``--size``, the
size every image must have.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import BadImageError, SourceError
from ..imageio import decode_image
from ..ring import stack
from .base import Chunk
from .place import Place

CLASSES_FILE = "classes.txt"
CLASSES_LIMIT = 16 << 20  # bytes of a classes file
MAX_LABEL = 1 << 16  # label numbers without a classes file: below this (their names and counts fit the manifest)


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What each image becomes: ``channels`` (1 or 3) and ``size`` (--size) or, without it,
    the ``shape`` (H, W) of the first image, which every image must have."""

    channels: int
    size: int | None
    hw: tuple[int, int]
    first: str  # how messages name the first image

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.hw, self.channels)


def first_spec(data: bytes, name: str, size: int | None) -> Spec:
    image = decode_image(data, name, None, size)
    return Spec(channels=image.shape[2], size=size, hw=image.shape[:2], first=name)


def decode(data: bytes, name: str, spec: Spec) -> np.ndarray:
    image = decode_image(data, name, None if spec.channels == 1 else 3, spec.size)
    if image.shape[2] != spec.channels:
        raise SourceError(f"{name}: a colour image in a grayscale dataset (a streamed source is grayscale when its first "
                          f"image, {spec.first}, is)")  # fmt: skip
    if image.shape[:2] != spec.hw:
        raise SourceError(f"images differ in size: {spec.first} is {spec.hw[1]}x{spec.hw[0]}, {name} is "
                          f"{image.shape[1]}x{image.shape[0]}; pass --size N to resize and centre-crop every image to N x N")  # fmt: skip
    return image


class Labels:
    """A label as the source gives it (an integer, a number in text, a class name) -> a class
    index. ``classes`` None: the class names are the label numbers, found as they come."""

    def __init__(self, classes: list[str] | None, shown_classes: str = ""):
        self.classes, self.shown_classes = classes, shown_classes
        self.index = {c: i for i, c in enumerate(classes)} if classes is not None else {}

    def __call__(self, value, name: str, number: bool = False) -> int:
        """``number``: the value is a class index (webdataset's cls), even if a class is named like one."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace").strip()
        if isinstance(value, str) and (number or value not in self.index) and value.lstrip("-").isdigit():
            value = int(value)  # a number in text, unless it is a class's name
        if isinstance(value, (bool, float)) or value is None or not isinstance(value, (int, np.integer, str)):
            raise SourceError(f"{name}: label {value!r} is not a class index or name")
        if isinstance(value, str):
            if value not in self.index:
                where = f"in {self.shown_classes}" if self.classes is not None else "(no classes.txt or --classes gives class names)"
                raise SourceError(f"{name}: label {value!r} is not a class name {where}")
            return self.index[value]
        value = int(value)
        limit = len(self.classes) if self.classes is not None else MAX_LABEL
        if not 0 <= value < limit:
            where = f"the {limit} classes of {self.shown_classes}" if self.classes is not None else f"0..{MAX_LABEL - 1}"
            raise SourceError(f"{name}: label {value} is outside {where}")
        return value


def read_classes(place: Place, rel: str) -> tuple[list[str], str]:
    """A classes file: one class name a line, in label order; blank lines at the end ignored.
    With the SHA-256 of its bytes, which a resume is bound to (fingerprint.py)."""
    text = place.read_small(rel, CLASSES_LIMIT)
    try:
        names = text.decode("utf-8").rstrip("\n").split("\n")
    except UnicodeDecodeError:
        raise SourceError(f"{place.shown(rel)}: not UTF-8 text") from None
    names = [n.rstrip("\r") for n in names]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise SourceError(f"{place.shown(rel)}: a classes file holds one distinct, non-empty class name a line")
    return names, hashlib.sha256(text).hexdigest()


def local_classes(path: str) -> tuple[list[str], str]:
    """``--classes FILE``: a local file, or a URL."""
    from ..formats.location import is_url

    if is_url(path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return read_classes(Place.at(head), tail)
    import os

    return read_classes(Place.at(os.path.dirname(os.path.abspath(path))), os.path.basename(path))


def inputs_digest(names: list[str]) -> str:
    """SHA-256 of a split's ordered input names (relative to its source), one a line: records
    the order without listing the names (which may say what the data is)."""
    return hashlib.sha256("".join(f"{n}\n" for n in names).encode("utf-8")).hexdigest()


def chunk_of(images: list[np.ndarray], labels: list[int], bad: list[tuple[str, str]], channels: int) -> Chunk:
    stacked = stack(images, (0, 1, 1, channels))  # in a worker: into its shared-memory slot
    return Chunk(stacked, np.asarray(labels, dtype=np.int64), bad)


def decoded_or_bad(data: bytes, name: str, spec: Spec, skip_bad: bool, bad: list) -> np.ndarray | None:
    try:
        return decode(data, name, spec)
    except BadImageError as e:
        if not skip_bad:
            raise
        bad.append((e.name, e.reason))
        return None
