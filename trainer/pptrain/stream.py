"""The streaming loader: shards -> webdataset pipeline -> DataLoader workers -> device.

A pipeline of small generator stages (webdataset's ``DataPipeline``), one per worker:

    epoch_shards   the split's shards in an order seeded by (seed, epoch), this worker's share
    read_shards    each shard decoded whole by ppencrypt.formats (tar or zarr chunk), with the
                   error handler passed in; --prefetch shards of the pass are fetched ahead
                   in threads (downloaded and hash-checked, for a URL), in order
    shuffle_pool   a pool of --shuffle-buffer samples mixed across shards, vectorised
    pieces         uint8 tensors of at most a batch, sent to the training process, which cuts
                   exact batches across workers

Seeding: webdataset's own shuffles (``shardshuffle=True``, ``shuffle(n)``) seed once per
pipeline, so a fresh DataLoader each epoch repeats the first epoch's order unless reseeded;
here every stage takes its seed from (seed, epoch, ...) explicitly (seeding.py).

Splitting: with at least as many shards as readers (ranks x workers), reader g of G takes
shards g, g+G, ... of the epoch's order; with fewer, every reader reads every shard and keeps
the samples at positions g, g+G, ... — slower, but no reader idles and nothing crashes.
Either way the readers' samples are disjoint. Equal batch counts: every rank takes exactly
``count // (batch x world)`` batches; training readers cycle over their share (reshuffled each
pass, as webdataset's ``with_epoch`` would), so a rank whose shards hold fewer samples than
its batches need repeats some of its own rather than stalling the others.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import webdataset as wds

from ppencrypt.errors import PipelineError
from ppencrypt.formats import Batch, Dataset, ShardInfo
from ppencrypt.formats.prefetch import read_ahead

from .distributed import Dist
from .loader import Loaded, train_batches
from .seeding import SAMPLE_ORDER, SHARD_ORDER, epoch_rng


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


@dataclass(frozen=True)
class Failure:
    """An error raised in a worker, carried to the training process to be raised there with
    its type and one-line message intact (DataLoader would wrap it in a traceback dump)."""

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
        # Read-ahead only within the first pass: the DataLoader asks a reader for more than the
        # epoch takes, so a reader often starts a pass nobody reads; fetched on demand, that
        # costs at most one shard, not --prefetch + 1 of them (from a URL without a cache,
        # downloads for nothing). Readers with a short share, which do cycle, read on demand.
        for (shard, first), fetched in read_ahead(items, lambda item: reader.fetch(item[0]), plan.prefetch if p == 0 else 0):
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


def shuffle_pool(src, plan: ReadPlan) -> Iterator[Batch]:
    """Mix samples across shards: fill a pool to ``buffer``, shuffle it, hand out half; at
    the end of a pass, hand out all of it. A pass that read nothing (every shard skipped by
    the handler) ends the stream instead of looping."""
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


def pieces(src, plan: ReadPlan) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Tensors of at most one batch each, for the trip to the training process."""
    for b in src:
        for at in range(0, len(b), plan.batch):
            yield _tensors(_take(b, slice(at, at + plan.batch)))


def _tensors(b: Batch):
    return torch.from_numpy(np.ascontiguousarray(b.images)), torch.from_numpy(b.labels), torch.from_numpy(b.indices)


def guarded(src) -> Iterator:
    try:
        yield from src
    except PipelineError as e:
        yield Failure(e)


class ReaderStream(torch.utils.data.IterableDataset):
    """One rank's stream; each DataLoader worker builds its own pipeline from its id."""

    def __init__(self, plans: list[ReadPlan], handler):
        super().__init__()
        self.plans, self.handler = plans, handler

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        plan = self.plans[info.id if info else 0]
        pipeline = wds.DataPipeline(
            functools.partial(epoch_shards, plan),
            functools.partial(read_shards, plan=plan, handler=self.handler),
            functools.partial(shuffle_pool, plan=plan),
            functools.partial(pieces, plan=plan),
            guarded,
        )
        return iter(pipeline)


@dataclass(frozen=True)
class Inherit:
    """A reader's environment: the training process's as it is when the epoch begins. A reader
    started from the fork server would otherwise have the server's, fixed when it started
    (credentials set later would be missing); multiprocessing already passes the working
    directory and ``sys.path``."""

    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def __call__(self, worker_id: int) -> None:
        os.environ.clear()
        os.environ.update(self.environ)


def reader_context() -> mp.context.BaseContext:
    """Readers start from a fork server (a fresh single-threaded process that has imported this
    module), never by forking the training process: by its first epoch a rank runs threads
    (gloo's, zarr's I/O loop, tqdm's monitor), and a fork copies any lock one of them holds at
    that instant. A reader forked that way once hung inside ``os.fork()`` in a two-rank run."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")  # macOS and Windows: no fork server; spawn is as safe
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


class StreamLoader:
    def __init__(self, ds: Dataset, split: str, batch: int, d: Dist, device: torch.device, seed: int, train: bool,
                 workers: int, buffer: int, prefetch: int = 2, handler=wds.reraise_exception, copies: int = 1):  # fmt: skip
        info = ds.manifest.splits[split]
        self.ds, self.split, self.shards, self.prefetch = ds, split, tuple(info.shards), prefetch
        self.count, self.batch, self.d, self.device, self.seed, self.train = info.count, batch, d, device, seed, train
        self.buffer, self.handler = buffer, handler
        # More readers than samples per rank would leave some with nothing to read.
        self.workers = max(0, min(workers, info.count // d.world))
        if train:
            # With client copies an epoch is a pass over the originals: the readers stop at the
            # quota, so each epoch reads a share of the copies in its own shard and pool order.
            self.batches = train_batches(self.count, batch, d, copies)
            self.images = self.batches * batch * d.world
        else:
            self.batches = -(-len(range(d.rank, self.count, d.world)) // batch)  # at most; exact per shard split
            self.images = self.count

    def plans(self, epoch: int) -> list[ReadPlan]:
        n = max(self.workers, 1)
        readers = self.d.world * n
        return [
            ReadPlan(ds=self.ds, split=self.split, shards=self.shards, batch=self.batch, seed=self.seed, epoch=epoch, train=self.train,
                     buffer=self.buffer, reader=self.d.rank * n + w, readers=readers, prefetch=self.prefetch)  # fmt: skip
            for w in range(n)
        ]

    def epoch(self, epoch: int) -> Iterator[Loaded]:
        stream = ReaderStream(self.plans(epoch), self.handler)
        cuda = self.device.type == "cuda"
        loader = torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=self.workers, pin_memory=cuda,
            prefetch_factor=4 if self.workers else None, persistent_workers=False,
            multiprocessing_context=reader_context() if self.workers else None,
            worker_init_fn=Inherit() if self.workers else None,
        )  # fmt: skip
        # Batches are cut here, across workers: a worker's share need not be a whole number
        # of batches, so no sample is dropped or repeated for the sake of batch boundaries.
        made, pending, size = 0, [], 0
        for item in loader:
            if isinstance(item, Failure):
                raise item.error
            pending.append(item)
            size += len(item[1])
            while size >= self.batch and (not self.train or made < self.batches):
                batch, pending = _cut(pending, self.batch)
                size -= self.batch
                made += 1
                yield tuple(t.to(self.device, non_blocking=cuda) for t in batch)
            if self.train and made == self.batches:
                break  # training readers cycle for ever; the epoch ends at the quota
        if size and not self.train:
            batch, _ = _cut(pending, size)
            yield tuple(t.to(self.device, non_blocking=cuda) for t in batch)

    def head(self, images: int) -> Iterator[Loaded]:
        """Read in this process, without workers: a few batches do not pay for starting them.
        On demand, without read-ahead: the few batches usually lie in the first shard or two,
        and shards fetched ahead would be read (from a URL, downloaded) for nothing."""
        plan = ReadPlan(ds=self.ds, split=self.split, shards=self.shards, batch=self.batch, seed=self.seed, epoch=0, train=False,
                        buffer=self.buffer, reader=self.d.rank, readers=self.d.world, prefetch=0)  # fmt: skip
        got = 0
        for item in ReaderStream([plan], self.handler):
            if isinstance(item, Failure):
                raise item.error
            if got >= images:
                break
            part = tuple(t[: images - got] for t in item)
            got += len(part[1])
            yield tuple(t.to(self.device) for t in part)


def _cut(pending: list[tuple], n: int) -> tuple[tuple, list[tuple]]:
    """The first ``n`` samples of the pending pieces, and what is left."""
    parts = [torch.cat(ts) for ts in zip(*pending)] if len(pending) > 1 else list(pending[0])
    return tuple(p[:n] for p in parts), ([tuple(p[n:] for p in parts)] if len(parts[1]) > n else [])
