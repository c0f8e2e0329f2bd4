"""Source datasets, recognised from what SRC holds (docs/formats.md, "Inputs")."""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from ..parallel import WorkerPool
from ..progress import ProgressFactory, no_progress
from .base import ArrayLoader, Chunk, FileLoader, Source, read_head, run_task
from .cifar import NESTED, detect_cifar, load_cifar
from .idx import find_idx, load_idx
from .imagefolder import load_imagefolder, looks_like_imagefolder

__all__ = ["ArrayLoader", "Chunk", "FileLoader", "Source", "open_source", "read_head", "run_task"]


def open_source(
    src: str,
    size: int | None = None,
    pool: WorkerPool | None = None,
    skip_bad: bool = False,
    progress: ProgressFactory = no_progress,
) -> Source:
    pool = pool or WorkerPool(1)
    root = Path(src)
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
        return open_source(str(nested[0]), size, pool, skip_bad, progress)
    layout = detect_cifar(root)
    if layout:
        return load_cifar(root, src, layout, size)
    if find_idx(root):
        return load_idx(root, src, size)
    if looks_like_imagefolder(root):
        return load_imagefolder(root, src, size, pool, skip_bad, progress)
    if not entries:
        raise SourceError(f"{src}: empty directory: no images to encrypt")
    raise SourceError(
        f"{src}: no dataset found: expected class folders, split folders (train/, test/, val/) of class "
        "folders, CIFAR-10/100 python batches, or MNIST-style IDX files"
    )
