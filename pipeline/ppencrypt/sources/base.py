"""What every source layout produces: class names, an image shape, and per split a loader.

A loader cuts its split into tasks that each load a run of images in order. File tasks are
small and picklable and run in worker processes; array tasks (CIFAR, IDX: already decoded)
run in-process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BadImageError
from ..imageio import load_image, resize_array
from ..ring import stack
from .fingerprint import local_listing

SPLIT_ORDER = ("train", "test", "val")
FILE_TASK = 64  # files per task: enough to amortise the round trip to a worker
ARRAY_TASK = 4096  # images per in-process task: bounds the memory of the encrypted copy


@dataclass
class Chunk:
    images: np.ndarray  # k x H x W x C uint8: the images that decoded
    labels: np.ndarray  # k int64
    bad: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) skipped


def run_task(task) -> Chunk:
    return task.run()


def read_head(loader, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` images and labels of a split's loader (all when None), in order,
    in this process; only the tasks that hold them are run."""
    images, labels, got = [], [], 0
    for task in loader.tasks():
        if limit is not None and got >= limit:
            break
        chunk = run_task(task)
        images.append(chunk.images)
        labels.append(chunk.labels)
        got += len(chunk.labels)
    if not images:
        return np.empty((0, 1, 1, 1), np.uint8), np.empty(0, np.int64)
    return np.concatenate(images)[:limit], np.concatenate(labels)[:limit]


@dataclass
class ArrayTask:
    images: np.ndarray
    labels: np.ndarray
    size: int | None
    first: int = 0  # the index of its first image in the split

    def describe(self) -> str:
        return f"images {self.first}-{self.first + len(self.labels) - 1}"

    def run(self) -> Chunk:
        images = self.images
        if self.size is not None and images.shape[1:3] != (self.size, self.size):
            images = resize_array(images, self.size)
        return Chunk(np.ascontiguousarray(images), self.labels.astype(np.int64))


@dataclass
class ArrayLoader:
    images: np.ndarray  # N x H x W x C uint8
    labels: np.ndarray
    size: int | None = None
    files: list[str] = field(default_factory=list)  # the files they were read from (fingerprint.py)
    parallel = False

    def listing(self):
        return local_listing(self.files)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def count(self) -> int | None:  # None: unknown until read (a streamed source)
        return len(self)

    def tasks(self):
        for a in range(0, len(self), ARRAY_TASK):
            yield ArrayTask(self.images[a : a + ARRAY_TASK], self.labels[a : a + ARRAY_TASK], self.size, a)


@dataclass
class FileTask:
    paths: list[str]
    names: list[str]  # how errors name the files (the user's SRC joined with the relative path)
    labels: list[int]
    channels: int
    size: int | None
    skip_bad: bool

    def describe(self) -> str:
        return self.names[0] + (f" and {len(self.names) - 1} more" if len(self.names) > 1 else "")

    def run(self) -> Chunk:
        images, labels, bad = [], [], []
        for path, name, label in zip(self.paths, self.names, self.labels):
            try:
                images.append(load_image(path, name, self.channels, self.size))
            except BadImageError as e:
                if not self.skip_bad:
                    raise
                bad.append((e.name, e.reason))
                continue
            labels.append(label)
        stacked = stack(images, (0, 1, 1, self.channels))  # in a worker: into its shared-memory slot
        return Chunk(stacked, np.asarray(labels, dtype=np.int64), bad)


@dataclass
class FileLoader:
    paths: list[str]
    names: list[str]
    labels: list[int]
    channels: int
    size: int | None
    skip_bad: bool
    root: str = ""  # the folder the paths lie under (fingerprint.py lists them relative to it)
    parallel = True

    def __len__(self) -> int:
        return len(self.paths)

    def listing(self):
        return local_listing(self.paths, self.root)

    @property
    def count(self) -> int | None:
        return len(self)

    def tasks(self):
        for a in range(0, len(self), FILE_TASK):
            b = a + FILE_TASK
            yield FileTask(self.paths[a:b], self.names[a:b], self.labels[a:b], self.channels, self.size, self.skip_bad)


@dataclass
class Source:
    layout: str  # imagefolder | cifar10 | cifar100 | idx | wds | parquet | url-imagefolder | mixed
    classes: list[str]
    shape: tuple[int, int, int]  # H, W, C after --size and the mode rule
    splits: dict[str, ArrayLoader | FileLoader]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # bad files dropped while scanning
    warnings: list[str] = field(default_factory=list)
    # The class names are the label numbers, known once every label is read (webdataset shards
    # without a classes file): ``classes`` is empty until then, and dataset._encrypt finds them.
    numbered: bool = False
    # Per split, the layout of its source when it differs from ``layout`` (--split NAME=SRC)
    layouts: dict[str, str] = field(default_factory=dict)
    # Per split, the classes file that named its classes (--classes, a classes.txt): where it
    # is and the SHA-256 of its bytes, which a resume is bound to (fingerprint.py)
    classes_files: dict[str, tuple[str, str]] = field(default_factory=dict)


def ordered_splits(names) -> list[str]:
    known = [s for s in SPLIT_ORDER if s in names]
    return known + sorted(set(names) - set(known))
