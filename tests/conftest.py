"""Fixtures: real dataset layouts built from the vendored real images (tests/data/README.md).

Every layout a user can bring is built here the way the real thing is laid out: CIFAR python
pickles, IDX (gzip) files, ImageFolder trees with and without split folders.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).parent / "data"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_vendored(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """The vendored PNGs of one folder as (N x H x W x C uint8, labels), in file order."""
    files = sorted((DATA / folder).glob("*.png"))
    images = [np.asarray(Image.open(f)) for f in files]
    images = np.stack([im[..., None] if im.ndim == 2 else im for im in images])
    labels = np.array([int(f.stem.rsplit("_", 1)[1]) for f in files], dtype=np.int64)
    return images, labels


@pytest.fixture(scope="session")
def cifar10():
    return load_vendored("cifar10")


@pytest.fixture(scope="session")
def fmnist():
    return load_vendored("fashion-mnist")


@pytest.fixture(scope="session")
def master_key():
    from pipeline.keys import MasterKey

    return MasterKey(bytes(range(32)))


@pytest.fixture
def key_file(tmp_path):
    from pipeline.keys import generate_key_file

    path = tmp_path / "keys" / "test.key"
    generate_key_file(path)
    return path


def write_cifar10(root: Path, images: np.ndarray, labels: np.ndarray, n_test: int = 5) -> Path:
    """The cifar-10-batches-py layout: five training batches, a test batch, the meta file."""
    root.mkdir(parents=True, exist_ok=True)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R plane, G plane, B plane
    train_x, train_y, test_x, test_y = rows[n_test:], labels[n_test:], rows[:n_test], labels[:n_test]
    parts = np.array_split(np.arange(len(train_x)), 5)
    for i, idx in enumerate(parts, 1):
        batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": train_y[idx].tolist(), b"data": train_x[idx]}
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": test_y.tolist(), b"data": test_x}
    (root / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": 10000, b"num_vis": 3072}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def write_fmnist_idx(root: Path, images: np.ndarray, labels: np.ndarray, n_test: int = 5) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte.gz", images[n_test:, ..., 0])
    write_idx(root / "train-labels-idx1-ubyte.gz", labels[n_test:])
    write_idx(root / "t10k-images-idx3-ubyte.gz", images[:n_test, ..., 0])
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels[:n_test])
    return root


def write_imagefolder(root: Path, images: np.ndarray, labels: np.ndarray, names=None, splits=None) -> Path:
    """root/<class>/img_NN.png, or root/<split>/<class>/img_NN.png with ``splits`` = {split: n}."""
    names = names or [f"class_{i}" for i in range(int(labels.max()) + 1)]
    groups = {None: range(len(images))}
    if splits:
        bounds = np.cumsum([0, *splits.values()])
        groups = {s: range(bounds[i], bounds[i + 1]) for i, s in enumerate(splits)}
    for split, idx in groups.items():
        for i in idx:
            folder = root / (split or "") / names[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            im = images[i]
            Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / f"img_{i:02d}.png")
    return root


@pytest.fixture
def cifar10_dir(tmp_path, cifar10):
    return write_cifar10(tmp_path / "cifar-10-batches-py", *cifar10)


@pytest.fixture
def fmnist_dir(tmp_path, fmnist):
    return write_fmnist_idx(tmp_path / "fashion-mnist", *fmnist)


@pytest.fixture
def folder_dir(tmp_path, cifar10):
    images, labels = cifar10
    return write_imagefolder(tmp_path / "folder", images, labels, CIFAR10_NAMES, splits={"train": 15, "test": 5})


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path: for byte-identity checks."""
    return {
        str(Path(d, f).relative_to(root)): Path(d, f).read_bytes()
        for d, _, files in os.walk(root)
        for f in files
    }
