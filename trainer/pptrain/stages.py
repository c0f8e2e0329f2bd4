"""One reader's pipeline for one epoch: its ReadPlan, and the small generator stages (webdataset's
``DataPipeline``) that turn the plan into the reader's stream of samples:

    epoch_shards   the split's shards in an order seeded by (seed, epoch), this reader's share
    read_shards    each shard decoded whole into arrays by ppencrypt.formats (tar or zarr chunk),
                   with the error handler passed in; up to --prefetch shards of the pass, and at
                   most PREFETCH_BYTES of them, are fetched ahead in threads (downloaded and
                   hash-checked, for a URL), in order
    shuffle_pool   a pool of --shuffle-buffer samples mixed across shards, vectorised
    guarded        a PipelineError becomes a Failure, raised in the training process in its turn

The pipeline runs in a reader process (readers.py) or, with no workers, in the training process
(stream.in_process).

Seeding: webdataset's own shuffles (``shardshuffle=True``, ``shuffle(n)``) seed once per
pipeline, so a fresh pipeline each epoch repeats the first epoch's order unless reseeded;
here every stage takes its seed from (seed, epoch, ...) explicitly (seeding.py).

Splitting: with at least as many shards as readers (ranks x workers), reader g of G takes
shards g, g+G, ... of the epoch's order; with fewer, every reader reads every shard and keeps
the samples at positions g, g+G, ... — slower, but no reader idles and nothing crashes.
Either way the readers' samples are disjoint. Training readers cycle over their share
(reshuffled each pass, as webdataset's ``with_epoch`` would), so a rank whose shards hold fewer
samples than its batches need repeats some of its own rather than stalling the others.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import webdataset as wds

from ppencrypt.errors import PipelineError
from ppencrypt.formats import Batch, Dataset, ShardInfo
from ppencrypt.formats.prefetch import read_ahead

from .seeding import SAMPLE_ORDER, SHARD_ORDER, epoch_rng

PREFETCH_BYTES = 256 << 20  # shards one reader fetches ahead, at most, whatever --prefetch says


@dataclass(frozen=True, kw_only=True)
class ReadPlan:
    """What one reader (one worker of one rank) does in one epoch; picklable for workers."""

    ds: Dataset  # location (local folder or URL, with its cache) and the manifest checked once
    split: str
    shards: tuple[ShardInfo, ...]  # the split's, in manifest order
    batch: int  # images per piece sent to the training process: the batch per rank
    seed: int
    epoch: int  # from 0
    train: bool  # shuffled, cycling pass after pass; else one pass in order
    buffer: int  # samples in the shuffle pool
    reader: int  # g: rank x workers + worker
    readers: int  # G: world x workers
    prefetch: int  # shards fetched ahead of the one being decoded (0: on demand)

    @property
    def by_shard(self) -> bool:
        return len(self.shards) >= self.readers

    @property
    def ahead(self) -> int:
        """Shards fetched ahead: --prefetch, as far as PREFETCH_BYTES of the largest shard allow."""
        largest = max((s.bytes for s in self.shards), default=0)
        return min(self.prefetch, PREFETCH_BYTES // largest) if largest else self.prefetch


@dataclass(frozen=True)
class Failure:
    """An error raised in a reader, carried to the training process to be raised there with
    its type and one-line message intact."""

    error: PipelineError


PASS_END = None  # between passes: the shuffle pool empties, so a pass ends before the next begins


def epoch_shards(plan: ReadPlan) -> Iterator[tuple[ShardInfo, int | None] | None]:
    """(shard, position of its first sample in the epoch's order, or None when whole shards
    are split), pass after pass while training, with PASS_END after each pass."""
    order = list(plan.shards)
    if plan.train:
        order = [order[i] for i in epoch_rng(plan.seed, plan.epoch, SHARD_ORDER).permutation(len(order))]
    if plan.by_shard:
        mine = order[plan.reader :: plan.readers]
        for p in range(1 << 62 if plan.train else 1):
            if p:  # further passes over the same shards, in a new order: still disjoint from other readers
                mine = [mine[i] for i in epoch_rng(plan.seed, plan.epoch, SHARD_ORDER, plan.reader, p).permutation(len(mine))]
            for shard in mine:
                yield shard, None
            yield PASS_END
    else:
        starts = np.cumsum([0] + [s.count for s in order])
        for _ in range(1 << 62 if plan.train else 1):
            for shard, first in zip(order, starts):
                yield shard, int(first)
            yield PASS_END


def read_shards(src, plan: ReadPlan, handler) -> Iterator[Batch]:
    reader = plan.ds.split(plan.split)
    for p, items in enumerate(passes(src)):
        # Read-ahead only within the first pass: a later pass (a reader with a short share
        # cycling) may end with the epoch after a shard or two, and fetched ahead it would cost
        # --prefetch + 1 of them (from a URL without a cache, downloads for nothing). A reader
        # process starts another pass only when the training process asks for more (Readers).
        for (shard, first), fetched in read_ahead(items, lambda item: reader.fetch(item[0]), plan.ahead if p == 0 else 0):
            try:
                b = reader.read_shard(shard, fetched())
            except PipelineError as e:
                if handler(e):
                    continue
                raise
            if first is not None:
                keep = (first + np.arange(len(b))) % plan.readers == plan.reader
                b = Batch(b.images[keep], b.labels[keep], b.indices[keep])
            if len(b):
                yield b
        yield PASS_END


def passes(src) -> Iterator[list]:
    """The items of each pass, a list per PASS_END."""
    items = []
    for item in src:
        if item is PASS_END:
            yield items
            items = []
        else:
            items.append(item)


def shuffle_pool(src, plan: ReadPlan) -> Iterator[Batch | None]:
    """Mix samples across shards: fill a pool to ``buffer``, shuffle it, hand out half; at
    the end of a pass, hand out all of it, then PASS_END. A pass that read nothing (every
    shard skipped by the handler) ends the stream instead of looping."""
    if not plan.train:
        yield from (b for b in src if b is not PASS_END)
        return
    rng = epoch_rng(plan.seed, plan.epoch, SAMPLE_ORDER, plan.reader)
    pool: list[Batch] = []
    read = 0
    for b in src:
        if b is PASS_END:
            if not read:
                return
            if pool:
                yield _shuffled(pool, rng)
            yield PASS_END
            pool, read = [], 0
            continue
        pool.append(b)
        read += len(b)
        if sum(len(p) for p in pool) >= plan.buffer:
            whole = _shuffled(pool, rng)
            half = len(whole) // 2
            yield _take(whole, slice(0, half))
            pool = [_take(whole, slice(half, None))]
    if pool:
        yield _shuffled(pool, rng)


def _shuffled(pool: list[Batch], rng: np.random.Generator) -> Batch:
    whole = Batch.concat(pool, pool[0].images.shape[1:])
    return _take(whole, rng.permutation(len(whole)))


def _take(b: Batch, idx) -> Batch:
    return Batch(b.images[idx], b.labels[idx], b.indices[idx])


def guarded(src) -> Iterator:
    try:
        yield from src
    except PipelineError as e:
        yield Failure(e)


def reader_items(plan: ReadPlan, handler) -> Iterator[Batch | Failure | None]:
    """One reader's stream for one epoch: the shuffle pool's outputs with PASS_END after each
    training pass, then a Failure if a shard failed (the stream ends there)."""
    return iter(wds.DataPipeline(
        functools.partial(epoch_shards, plan),
        functools.partial(read_shards, plan=plan, handler=handler),
        functools.partial(shuffle_pool, plan=plan),
        guarded,
    ))  # fmt: skip

