"""Input pipeline throughput: encrypted shards to augmented, normalised training batches.

    python bench/input_pipeline.py [--images N] [--repeat R] [--workers W] [--threads T]

Same shards, same run: the baseline (trainer_common.BASELINE) next to pptrain's in-memory
loader (split resident as one uint8 tensor, batch = index gather, crop + flip by per-sample
coordinate maps on the whole batch) and its streaming loader (W reader processes decoding whole
shards into arrays, kept across epochs; the same batched augmentation in the training process).
Batch 128, crop pad 4 + horizontal flip, float32 output on the CPU, Fashion-MNIST (60,000 train
images, 28x28x1, pe).

Every pass is one epoch, timed three ways: whole (first batch asked for to last batch done),
start-up (to the first batch) and steady (the rest: images after the first batch over the time
after it). Best of R passes each. The baseline's DataLoader starts its workers every epoch, as
stock code does; the streaming loader starts its readers once, on its first epoch, timed on its
own, and the R passes are epochs 1..R. The in-memory loader's one-time decode is timed on its own.
The load average is printed before and after: on a shared machine compare ratios, not rates.

Threads: the streaming loader's training process runs torch on the cores its W readers leave
(``--threads``, default max(1, cores - W)): with more, OpenMP's threads wait at every barrier
for a core a reader holds, and the augmentation alone took 2-6 s an epoch instead of 0.25 s.
The baseline's DataLoader workers run torch on one thread each, as DataLoader sets; its
training process computes nothing. The in-memory loader has no readers and keeps torch's default.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from common import machine
from ratios import Ratios, bench_args
from ppencrypt.formats import open_dataset
from pptrain.augment import BatchAugment
from pptrain.distributed import Dist
from pptrain.memory import MemoryLoader
from pptrain.stream import StreamLoader
from trainer_common import BASELINE, baseline_loader, encrypted_fmnist

BATCH = 128
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Pass:
    images: int
    start: float  # seconds to the first batch
    seconds: float  # the whole pass
    first: int  # images in the first batch

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def steady(self) -> float:
        return (self.images - self.first) / (self.seconds - self.start)


def timed(batches, limit: int, work=lambda x, y: x) -> Pass:
    t = time.perf_counter()
    n, start, first = 0, 0.0, 0
    for x, y, *_ in batches:
        out = work(x, y)
        if not n:
            start, first = time.perf_counter() - t, len(out)
        n += len(out)
        if n >= limit:
            break
    return Pass(n, start, time.perf_counter() - t, first)


@dataclass(frozen=True)
class Best:
    rate: float
    start: float
    steady: float

    @staticmethod
    def of(passes: list[Pass]) -> Best:
        return Best(max(p.rate for p in passes), min(p.start for p in passes), max(p.steady for p in passes))


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=60_000, help="images per pass (at most the train split)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="streaming reader processes")
    p.add_argument("--threads", type=int, default=None, help="torch threads while streaming (default: cores - workers, at least 1)")
    args = bench_args(p, quick={"images": 20_000, "repeat": 2})
    ratios = Ratios(__file__, args)
    root = encrypted_fmnist("wds")
    ds = open_dataset(root)
    shape = ds.manifest.shape
    aug = BatchAugment(("crop", "flip"), shape, len(ds.manifest.classes), pad=4)
    limit = min(args.images, ds.manifest.splits["train"].count // BATCH * BATCH)
    rng = np.random.default_rng(0)
    augment = lambda x, y: aug(x, y, aug.draw(len(y), rng))[0]  # noqa: E731

    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"data: {root} ({limit} images per pass, {len(ds.manifest.splits['train'].shards)} shards, {shape})")
    print(f"load average at the start: {load()}")
    base = Best.of([timed(baseline_loader(root, batch=BATCH), limit) for _ in range(args.repeat)])

    t = time.perf_counter()
    memory = MemoryLoader(ds, "train", BATCH, Dist(), CPU, 0, train=True)
    decode = time.perf_counter() - t
    mem = Best.of([timed(memory.epoch(e), limit, augment) for e in range(args.repeat)])

    default = torch.get_num_threads()
    threads = args.threads or max(1, len(os.sched_getaffinity(0)) - args.workers)
    torch.set_num_threads(threads)
    stream = StreamLoader(ds, "train", BATCH, Dist(), CPU, 0, train=True, workers=args.workers, buffer=20_000)
    once = timed(stream.epoch(0), limit, augment)
    stm = Best.of([timed(stream.epoch(e), limit, augment) for e in range(1, args.repeat + 1)])
    stream.close()
    torch.set_num_threads(default)

    print(f"load average at the end: {load()}")
    print(f"baseline ({BASELINE}):")
    print(f"  {base.rate:,.0f} img/s per epoch; start-up {base.start:.2f} s, then {base.steady:,.0f} img/s")
    print(f"pptrain in memory: {mem.rate:,.0f} img/s per epoch ({mem.rate / base.rate:.1f}x baseline); one-time decode to the device {decode:.2f} s")
    print(f"pptrain streaming, {args.workers} workers, {threads} torch thread(s): {stm.rate:,.0f} img/s per epoch ({stm.rate / base.rate:.1f}x baseline)")
    print(f"  start-up {stm.start:.2f} s per epoch (baseline {base.start:.2f} s), then {stm.steady:,.0f} img/s "
          f"({stm.steady / base.steady:.1f}x the baseline's steady rate)")  # fmt: skip
    print(f"  first epoch, readers started: {once.start:.2f} s to the first batch, {once.rate:,.0f} img/s")
    print("| baseline | in memory | × | streaming | × | streaming start-up (baseline) | streaming steady | × | first epoch start-up |")
    print(f"| {base.rate:,.0f} | {mem.rate:,.0f} | {mem.rate / base.rate:.1f}× | {stm.rate:,.0f} | {stm.rate / base.rate:.1f}× "
          f"| {stm.start:.2f} s ({base.start:.2f} s) | {stm.steady:,.0f} | {stm.steady / base.steady:.1f}× | {once.start:.2f} s |")  # fmt: skip
    ratios.add("memory_speed", mem.rate / base.rate, "higher", "pptrain's in-memory loader: images/s / the baseline's", goal=20)
    ratios.add("streaming_speed", stm.rate / base.rate, "higher", "pptrain's streaming loader: images/s / the baseline's", goal=10)
    ratios.report()


if __name__ == "__main__":
    main()
