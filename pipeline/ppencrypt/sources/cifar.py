"""CIFAR-10 and CIFAR-100 "python version" pickles (cifar-10-batches-py, cifar-100-python).

The pickles are loaded with an unpickler that resolves only numpy's array constructors: a
pickle can run arbitrary code, and a dataset folder is not a trusted program.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import SourceError
from .base import ArrayLoader, Source

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = CIFAR10_TRAIN + ("test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
NESTED = {"cifar-10-batches-py", "cifar-100-python"}

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays and nothing else, and no array larger than the file: numpy's
    ``_reconstruct`` allocates whatever shape the pickle names, so a few bytes could ask for
    terabytes."""

    def __init__(self, f, limit: int):
        super().__init__(f, encoding="bytes")
        self.limit = limit

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        found = super().find_class(module, name)
        return self._bounded(found) if name == "_reconstruct" else found

    def _bounded(self, reconstruct):
        def checked(subtype, shape, dtype):
            try:
                nbytes = math.prod(shape) * np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype).itemsize
            except (TypeError, ValueError):
                raise pickle.UnpicklingError("an array with a malformed shape or type") from None
            if nbytes > self.limit:
                raise pickle.UnpicklingError(f"an array of {nbytes} bytes in a {self.limit}-byte file")
            return reconstruct(subtype, shape, dtype)

        return checked


def _load(path: Path, display: str) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f, os.fstat(f.fileno()).st_size).load()
    except FileNotFoundError:
        raise SourceError(f"{display}: missing (a CIFAR layout needs {path.name})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError,
            MemoryError, RecursionError, OverflowError) as e:  # fmt: skip
        raise SourceError(f"{display}: not a readable CIFAR pickle ({e or type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise SourceError(f"{display}: not a readable CIFAR pickle (expected a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _names(meta: dict, key: str, display: str) -> list[str]:
    try:
        return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]
    except (KeyError, TypeError):
        raise SourceError(f"{display}: no {key} in the CIFAR meta file") from None


def _batch(path: Path, display: str, label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _load(path, display)
    try:
        data = np.asarray(d["data"], dtype=np.uint8)
        labels = np.asarray(d[label_key], dtype=np.int64)
    except (KeyError, ValueError, TypeError):
        raise SourceError(f"{display}: not a CIFAR batch (needs 'data' and '{label_key}')") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise SourceError(f"{display}: not a CIFAR batch (data {data.shape}, {len(labels)} labels)")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise SourceError(f"{display}: label out of range 0..{n_classes - 1}")
    # Rows are three 32x32 planes (R, G, B), row-major.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def detect_cifar(root: Path) -> str | None:
    names = {p.name for p in root.iterdir()}
    if names & set(CIFAR10_FILES):
        return "cifar10"
    if all((root / n).is_file() for n in CIFAR100_FILES):
        return "cifar100"
    return None


def load_cifar(root: Path, display: str, layout: str, size: int | None) -> Source:
    def shown(name: str) -> str:
        return f"{display.rstrip('/')}/{name}"

    if layout == "cifar10":
        classes = _names(_load(root / "batches.meta", shown("batches.meta")), "label_names", shown("batches.meta"))
        parts = [_batch(root / n, shown(n), "labels", len(classes)) for n in CIFAR10_TRAIN]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = _batch(root / "test_batch", shown("test_batch"), "labels", len(classes))
    else:
        classes = _names(_load(root / "meta", shown("meta")), "fine_label_names", shown("meta"))
        train = _batch(root / "train", shown("train"), "fine_labels", len(classes))
        test = _batch(root / "test", shown("test"), "fine_labels", len(classes))
    read = ["batches.meta", *CIFAR10_TRAIN, "test_batch"] if layout == "cifar10" else ["meta", "train", "test"]
    files = [str(root / n) for n in read]
    splits = {name: ArrayLoader(np.ascontiguousarray(x), y, size, files) for name, (x, y) in (("train", train), ("test", test))}
    shape = (size, size, 3) if size else (32, 32, 3)
    return Source(layout, classes, shape, splits)
