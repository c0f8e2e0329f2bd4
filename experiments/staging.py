"""Plain-image sources staged as files: a subset of a dataset (small budgets), and the
client's augmented training images as plain files (``python -m experiments augment``).

Both are written as MNIST-style IDX files (``train-*``, ``t10k-*``, ``classes.txt``), a layout
``ppencrypt dataset`` reads for grayscale and colour alike.

The augmented copies are ``ppencrypt dataset --copies``'s own (pipeline/ppencrypt/augment.py: the cloud's
crop + flip draws, border 128), written plain instead of encrypted; the reproduction harness
itself encrypts its client rows with ``ppencrypt dataset --copies``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ppencrypt import augment as client
from ppencrypt.errors import PipelineError
from ppencrypt.sources import open_source, read_head

from .errors import ExperimentError

FMNIST = "/usr/share/datasets/fashion-mnist"  # the plain source read by default (Fashion-MNIST's IDX files)
IDX_NAMES = {"train": "train", "test": "t10k"}
UBYTE = 0x08


def read_split(src: str, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first ``limit`` images of ``split`` in ``src`` (any layout ppencrypt reads), its
    labels and the dataset's class names."""
    try:
        source = open_source(src)
    except PipelineError as e:
        raise ExperimentError(str(e)) from None
    if split not in source.splits:
        raise ExperimentError(f"{src}: no {split!r} split (it has {', '.join(source.splits)})")
    x, y = read_head(source.splits[split], limit)
    return x, y, source.classes


def idx_header(shape: tuple[int, ...]) -> bytes:
    return bytes((0, 0, UBYTE, len(shape))) + b"".join(int(d).to_bytes(4, "big") for d in shape)


def image_shape(n: int, hwc: tuple[int, ...]) -> tuple[int, ...]:
    """IDX image dimensions: N x H x W for grayscale (as MNIST ships), N x H x W x C otherwise."""
    return (n, *hwc[:2]) if hwc[2] == 1 else (n, *hwc)


def write_split(dest: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    name = IDX_NAMES[split]
    (dest / f"{name}-images-idx3-ubyte").write_bytes(idx_header(image_shape(len(images), images.shape[1:])) + images.tobytes())
    (dest / f"{name}-labels-idx1-ubyte").write_bytes(idx_header((len(labels),)) + labels.astype(np.uint8).tobytes())


def write_classes(dest: Path, classes: list[str]) -> None:
    if len(classes) > 256:
        raise ExperimentError(f"{dest}: {len(classes)} classes do not fit IDX's one-byte labels")
    (dest / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")


def prepare_dest(src: str, dest: str) -> Path:
    out = Path(dest)
    if out.resolve() == Path(src).resolve() or Path(src).resolve() in out.resolve().parents:
        raise ExperimentError(f"{dest}: the output must not be inside the source {src}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_subset(src: str, dest: str, train: int | None, test: int | None) -> dict[str, int]:
    """The first ``train`` training and ``test`` test images of ``src`` as IDX files in ``dest``."""
    out = prepare_dest(src, dest)
    counts = {}
    for split, limit in (("train", train), ("test", test)):
        images, labels, classes = read_split(src, split, limit)
        write_split(out, split, images, labels)
        counts[split] = len(labels)
    write_classes(out, classes)
    return counts


def write_client_augmented(src: str, dest: str, copies: int, pad: int, seed: int) -> dict[str, int]:
    """The client's side of Table 3: ``copies`` augmented copies of the plain train split of
    ``src`` (copy-major) and its test split unchanged, as IDX files in ``dest``."""
    images, labels, classes = read_split(src, "train")
    problem = client.check(copies, pad, images.shape[1:])
    if problem:
        raise ExperimentError(problem)
    out = prepare_dest(src, dest)
    n = len(labels) * copies
    with open(out / "train-images-idx3-ubyte", "wb") as fx, open(out / "train-labels-idx1-ubyte", "wb") as fy:
        fx.write(idx_header(image_shape(n, images.shape[1:])))
        fy.write(idx_header((n,)))
        for k in range(copies):
            fx.write(client.shift_flip(images, client.draws(len(labels), pad, seed, k)).tobytes())
            fy.write(labels.astype(np.uint8).tobytes())
    test_images, test_labels, _ = read_split(src, "test")
    write_split(out, "test", test_images, test_labels)
    write_classes(out, classes)
    return {"train": n, "test": len(test_labels)}
