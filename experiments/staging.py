"""Plain-image sources the harness stages for ``ppencrypt dataset``: a subset of a dataset
(small budgets), and the client's augmented training images (Table 3, "in client").

Both are written as MNIST-style IDX files (``train-*``, ``t10k-*``, ``classes.txt``), a layout
``ppencrypt dataset`` reads for grayscale and colour alike, so every row is still encrypted by
the one ``ppencrypt dataset`` command.

Client augmentation is the cloud's own crop + flip (``trainer.augment.BatchAugment``, the same
draws), applied to plain images before encryption. Its padding value is 128: the cloud pads
with 127.5, the fixed point of the NP transform, which a uint8 image cannot hold; 128 is the
nearer of the two uint8 values to it, and it encrypts (NP) to 128 or 127, within 0.5 of the
cloud's border under every key. Zero would encrypt to a key-dependent 0/255 border.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.sources import open_source, read_head
from trainer.augment import BatchAugment

from .errors import ExperimentError

CLIENT_FILL = 128  # the uint8 nearest the cloud's 127.5 padding (see the module docstring)
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


def augment_copies(images: np.ndarray, labels: np.ndarray, num_classes: int, copies: int, pad: int, seed: int):
    """``copies`` augmented copies of plain uint8 N x H x W x C ``images``, copy by copy: each a
    fresh crop (shift up to ``pad``, border :data:`CLIENT_FILL`) and flip draw per image, from
    the cloud's own augmentation code and seeded by (seed, copy)."""
    aug = BatchAugment(("crop", "flip"), images.shape[1:], num_classes, pad)
    x = torch.from_numpy(images)
    for k in range(copies):
        draw = aug.draw(len(images), np.random.default_rng([seed, k]))
        yield aug.warp(x, draw, CLIENT_FILL).numpy(), labels


def write_client_augmented(src: str, dest: str, copies: int, pad: int, seed: int) -> dict[str, int]:
    """The client's side of Table 3: ``copies`` augmented copies of the plain train split of
    ``src`` (copy-major) and its test split unchanged, as IDX files in ``dest``."""
    if copies < 1:
        raise ExperimentError(f"--copies must be at least 1, not {copies}")
    out = prepare_dest(src, dest)
    images, labels, classes = read_split(src, "train")
    if pad < 0 or pad >= min(images.shape[1:3]):
        raise ExperimentError(f"--pad {pad} must be in 0..{min(images.shape[1:3]) - 1} for {images.shape[2]}x{images.shape[1]} images")
    n = len(labels) * copies
    with open(out / "train-images-idx3-ubyte", "wb") as fx, open(out / "train-labels-idx1-ubyte", "wb") as fy:
        fx.write(idx_header(image_shape(n, images.shape[1:])))
        fy.write(idx_header((n,)))
        for x, y in augment_copies(images, labels, len(classes), copies, pad, seed):
            fx.write(x.tobytes())
            fy.write(y.astype(np.uint8).tobytes())
    test_images, test_labels, _ = read_split(src, "test")
    write_split(out, "test", test_images, test_labels)
    write_classes(out, classes)
    return {"train": n, "test": len(test_labels)}
