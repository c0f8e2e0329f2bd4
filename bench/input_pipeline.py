"""Input pipeline throughput: encrypted shards to augmented, normalised training batches.

    python bench/input_pipeline.py [--images N] [--repeat R]

Same shards, same run: the baseline (trainer_common.BASELINE) next to pptrain's in-memory
loader (split resident as one uint8 tensor, batch = index gather, crop + flip by per-sample
coordinate maps on the whole batch) and its streaming loader (webdataset pipeline, whole-shard
decode in 2 workers, the same batched augmentation in the training process). Batch 128,
crop pad 4 + horizontal flip, float32 output on the CPU, Fashion-MNIST (60,000 train images,
28x28x1, pe). Best of R passes; the in-memory loader's one-time decode is timed on its own.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import machine
from ratios import Ratios, bench_args
from ppencrypt.formats import open_dataset
from pptrain.augment import BatchAugment
from pptrain.memory import MemoryLoader
from pptrain.distributed import Dist
from pptrain.stream import StreamLoader
from trainer_common import BASELINE, baseline_loader, encrypted_fmnist

BATCH = 128
CPU = torch.device("cpu")


def drain_baseline(root, limit: int) -> int:
    n = 0
    for x, _ in baseline_loader(root, batch=BATCH):
        n += len(x)
        if n >= limit:
            break
    return n


def drain_ours(loader, aug: BatchAugment, limit: int) -> int:
    rng = np.random.default_rng(0)
    n = 0
    for x, y, _ in loader.epoch(0):
        out, _ = aug(x, y, aug.draw(len(y), rng))
        n += len(out)
        if n >= limit:
            break
    return n


def rate(fn, repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - t))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=60_000, help="images per pass (at most the train split)")
    p.add_argument("--repeat", type=int, default=3)
    args = bench_args(p, quick={"images": 20_000, "repeat": 2})
    ratios = Ratios(__file__, args)
    root = encrypted_fmnist("wds")
    ds = open_dataset(root)
    shape = ds.manifest.shape
    aug = BatchAugment(("crop", "flip"), shape, len(ds.manifest.classes), pad=4)
    limit = min(args.images, ds.manifest.splits["train"].count // BATCH * BATCH)

    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"data: {root} ({limit} images per pass, {len(ds.manifest.splits['train'].shards)} shards, {shape})")
    base = rate(lambda: drain_baseline(root, limit), args.repeat)
    t = time.perf_counter()
    memory = MemoryLoader(ds, "train", BATCH, Dist(), CPU, 0, train=True)
    load = time.perf_counter() - t
    mem = rate(lambda: drain_ours(memory, aug, limit), args.repeat)
    stream = StreamLoader(ds, "train", BATCH, Dist(), CPU, 0, train=True, workers=2, buffer=20_000)
    stm = rate(lambda: drain_ours(stream, aug, limit), args.repeat)
    print(f"baseline ({BASELINE}): {base:,.0f} img/s")
    print(f"pptrain in memory:  {mem:,.0f} img/s  ({mem / base:.1f}x baseline; one-time decode to the device {load:.2f} s)")
    print(f"pptrain streaming:  {stm:,.0f} img/s  ({stm / base:.1f}x baseline; 2 workers)")
    print(f"| {base:,.0f} | {mem:,.0f} | {mem / base:.1f}x | {stm:,.0f} | {stm / base:.1f}x |")
    ratios.add("memory_speed", mem / base, "higher", "pptrain's in-memory loader: images/s / the baseline's", goal=20)
    ratios.add("streaming_speed", stm / base, "higher", "pptrain's streaming loader: images/s / the baseline's", goal=10)
    ratios.report()


if __name__ == "__main__":
    main()
