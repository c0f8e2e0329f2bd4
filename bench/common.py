"""Shared bits of the benchmarks: timing, the machine's name, real test images."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FMNIST = Path(os.environ.get("FMNIST", "/usr/share/datasets/fashion-mnist"))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}, numpy {np.__version__}"


def best_of(fn, repeat: int = 5) -> float:
    """Fastest of ``repeat`` runs after one warm-up, in seconds: the least disturbed one."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def real_cifar(n: int) -> np.ndarray:
    """n real 32x32 RGB images: the 20 vendored CIFAR-10 test images, tiled."""
    files = sorted((ROOT / "tests" / "data" / "cifar10").glob("*.png"))
    base = np.stack([np.asarray(Image.open(f)) for f in files])
    return np.ascontiguousarray(np.resize(base, (n, *base.shape[1:])))


def public_cifar(root: Path, n: int = 400) -> Path:
    """Colour images for the learned attacker of ``ppencrypt audit --learned`` on CIFAR-10-like
    data, none of them a CIFAR-10 image: the 20 vendored CIFAR-100 test images, rolled
    (tests/conftest.py ``tile_real``; rolls repeat after the image width) and every other one
    mirrored, written as a cifar-100-python folder (other classes: no recognition score)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import load_vendored, tile_real, write_cifar100

    images, labels = tile_real(*load_vendored("cifar100"), n)
    images[1::2] = images[1::2, :, ::-1]
    return write_cifar100(root, images, labels, n_test=20)
