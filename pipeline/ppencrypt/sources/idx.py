"""MNIST-style IDX files: <prefix>-images-idx3-ubyte[.gz] with <prefix>-labels-idx1-ubyte[.gz].

Split names come from the prefix: ``train`` or ``t10k``/``test``. IDX has no class names: a
``classes.txt`` next to the files (one name per line) supplies them; otherwise a folder named
like Fashion-MNIST gets its ten names and any other gets "0", "1", ...
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from pathlib import Path

import numpy as np

from ..errors import SourceError
from .base import ArrayLoader, Source, ordered_splits

IMAGES = re.compile(r"^(?P<prefix>.*?)(?P<sep>[-_.])images[-_.]idx3[-_.]ubyte(?P<gz>\.gz)?$", re.IGNORECASE)
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
UBYTE = 0x08
MAX_DEFLATE_RATIO = 1032  # the most DEFLATE can compress: 258-byte matches in about 2 bits each


def _split_of(prefix: str) -> str | None:
    p = prefix.lower()
    if "train" in p:
        return "train"
    if "t10k" in p or "test" in p:
        return "test"
    return None


def _parse(path: Path, display: str, ndims: tuple[int, ...]) -> np.ndarray:
    """The array of an IDX file, read only as far as its header says: the declared size is
    computed exactly (Python integers: four 32-bit dimensions can overflow int64) and checked
    against what the file can hold before anything is allocated, and a gzip file is
    decompressed no further than that size (a small .gz can expand to terabytes)."""
    gz = path.suffix.lower() == ".gz"
    try:
        stored = path.stat().st_size
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != UBYTE or head[3] not in ndims:
                raise SourceError(f"{display}: not an unsigned-byte IDX file with {' or '.join(map(str, ndims))} dimensions")
            nd = head[3]
            raw_dims = f.read(4 * nd)
            if len(raw_dims) != 4 * nd:
                raise SourceError(f"{display}: truncated or corrupt (the header ends early)")
            dims = tuple(int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big") for i in range(nd))
            size = math.prod(dims)
            most = stored * MAX_DEFLATE_RATIO if gz else stored - 4 - 4 * nd
            if size > most:
                raise SourceError(f"{display}: the header says {dims} ({size} bytes), more than this {stored}-byte file can hold")
            body = f.read(size + 1)
    except FileNotFoundError:
        raise SourceError(f"{display}: missing") from None
    except (EOFError, OSError, zlib.error) as e:
        raise SourceError(f"{display}: truncated or corrupt ({e})") from None
    if len(body) != size:
        raise SourceError(f"{display}: truncated or corrupt (header says {dims}, {len(body) if len(body) <= size else 'more'} bytes of data)")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def find_idx(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and IMAGES.match(p.name))


def _class_names(root: Path, n: int) -> list[str]:
    listed = root / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) < n:
            raise SourceError(f"{listed}: names {len(names)} classes, the labels need {n}")
        return names
    if "fashion" in root.resolve().name.lower() and n <= len(FASHION_CLASSES):
        return FASHION_CLASSES[:n]
    return [str(i) for i in range(n)]


def load_idx(root: Path, display: str, size: int | None) -> Source:
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    files: list[str] = [str(root / "classes.txt")] if (root / "classes.txt").is_file() else []
    for img_path in find_idx(root):
        m = IMAGES.match(img_path.name)
        split = _split_of(m["prefix"])
        if split is None or split in arrays:
            continue
        lbl_name = re.sub(r"images([-_.])idx3", r"labels\1idx1", img_path.name, flags=re.IGNORECASE)
        shown = f"{display.rstrip('/')}/"
        images = _parse(img_path, shown + img_path.name, (3, 4))
        labels = _parse(root / lbl_name, shown + lbl_name, (1,)).astype(np.int64)
        if len(labels) != len(images):
            raise SourceError(f"{shown + lbl_name}: {len(labels)} labels for {len(images)} images in {img_path.name}")
        if images.ndim == 3:
            images = images[..., None]
        if images.shape[-1] not in (1, 3):
            raise SourceError(f"{shown + img_path.name}: {images.shape[-1]} channels; expected 1 or 3")
        arrays[split] = (images, labels)
        files += [str(img_path), str(root / lbl_name)]
    if not arrays:
        raise SourceError(f"{display}: IDX files found, but none named like train-images-idx3-ubyte or t10k-images-idx3-ubyte")
    shapes = {v[0].shape[1:] for v in arrays.values()}
    if len(shapes) > 1 and size is None:
        raise SourceError(f"{display}: the IDX splits differ in image size ({sorted(shapes)}); pass --size N")
    n_classes = int(max(v[1].max(initial=-1) for v in arrays.values())) + 1
    classes = _class_names(root, n_classes)
    h, w, c = next(iter(shapes))
    splits = {s: ArrayLoader(*arrays[s], size, files) for s in ordered_splits(arrays)}
    return Source("idx", classes, (size, size, c) if size else (h, w, c), splits)
