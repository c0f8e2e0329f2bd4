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
