"""The streaming loader: shards -> reader pipelines -> exact batches in the training process -> device.

Each reader runs one pipeline of small generator stages an epoch (stages.py: the shards in a
seeded order, this reader's share, read ahead and decoded, mixed in a shuffle pool), in a
reader process (readers.py, its output through a ring in shared memory, slots.py) or, with 0
workers, here in the training process (:func:`in_process`).

The training process takes pieces of at most a batch from the readers in turn — reader 0, 1,
..., a reader leaving the turn when its stream ends, the order torch's DataLoader gave its
workers — and cuts exact batches across them, so a reader's share need not be a whole number of
batches. Each pool output is cut into pieces from its start, wherever it is cut for transport.

Equal batch counts: every rank takes exactly ``count // (batch x world)`` batches; training
readers cycle over their share, so no rank stalls the others.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import webdataset as wds

from ppencrypt.formats import Dataset

from .distributed import Dist
from .loader import Loaded, train_batches
from .readers import Readers
from .slots import Slots
from .stages import PASS_END, Failure, ReadPlan, reader_items

__all__ = ["PASS_END", "Failure", "ReadPlan", "StreamLoader", "in_process", "interleave", "reader_items"]


def in_process(plan: ReadPlan, handler) -> Iterator[Loaded | Failure]:
    """A reader's stream read in this process (no workers), as tensors sharing its arrays."""
    for item in reader_items(plan, handler):
        if item is PASS_END:
            continue
        if isinstance(item, Failure):
            yield item
        else:
            # A batch decoded straight from a shard's bytes can be a read-only view of them (a
            # one-sample shard's slice is already contiguous): torch needs writable memory.
            images = np.require(item.images, requirements=["C", "W"])
            yield torch.from_numpy(images), torch.from_numpy(item.labels), torch.from_numpy(item.indices)


def interleave(sources: list[Iterator], batch: int) -> Iterator[Loaded | Failure]:
    """Pieces of at most ``batch`` samples, one from each source in turn; a source that ends
    leaves the turn, a Failure is passed on in its turn. A source yields chunks (images,
    labels, indices) that begin at a piece boundary of a pool output: a chunk is cut into
    pieces from its start. This is the order in which torch's DataLoader took pieces from
    IterableDataset workers, so batches are what they were with it, for any worker count."""
    held: list = [None] * len(sources)  # per source: [chunk, offset of its next piece]
    active = list(range(len(sources)))
    turn = 0
    while active:
        s = active[turn]
        while held[s] is None or held[s][1] >= len(held[s][0][1]):
            item = next(sources[s], None)
            if item is None or isinstance(item, Failure):
                held[s] = None
                break
            held[s] = [item, 0]
        if held[s] is None:
            if item is not None:
                yield item
            del active[turn]
            turn = turn % len(active) if active else 0
            continue
        chunk, at = held[s]
        held[s][1] = at + batch
        yield tuple(t[at : at + batch] for t in chunk)
        turn = (turn + 1) % len(active)



class StreamLoader:
    def __init__(self, ds: Dataset, split: str, batch: int, d: Dist, device: torch.device, seed: int, train: bool,
                 workers: int, buffer: int, prefetch: int = 2, handler=wds.reraise_exception, copies: int = 1):  # fmt: skip
        info = ds.manifest.splits[split]
        self.ds, self.split, self.shards, self.prefetch = ds, split, tuple(info.shards), prefetch
        self.count, self.batch, self.d, self.device, self.seed, self.train = info.count, batch, d, device, seed, train
        self.buffer, self.handler = buffer, handler
        # More readers than samples per rank would leave some with nothing to read.
        self.workers = max(0, min(workers, info.count // d.world))
        self.readers: Readers | None = None  # started by the first epoch, kept for the next
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
        cuda = self.device.type == "cuda"
        plans = self.plans(epoch)
        if self.workers:
            if self.readers is None:
                self.readers = Readers(self.workers, Slots.sized(self.batch, self.ds.manifest.shape), self.handler)
            sources, gen = self.readers.epoch(plans, pin=cuda), self.readers.gen
        else:
            sources = [in_process(plans[0], self.handler)]
        try:
            # Batches are cut here, across readers: a reader's share need not be a whole number
            # of batches, so no sample is dropped or repeated for the sake of batch boundaries.
            made, pending, size = 0, [], 0
            for item in interleave(sources, self.batch):
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
        finally:
            if self.workers:
                self.readers.idle(gen)

    def close(self) -> None:
        """Stop the reader processes now (else they stop when the loader is dropped)."""
        if self.readers is not None:
            self.readers.close()
            self.readers = None

    def head(self, images: int) -> Iterator[Loaded]:
        """Read in this process, without workers: a few batches do not pay for starting them.
        On demand, without read-ahead: the few batches usually lie in the first shard or two,
        and shards fetched ahead would be read (from a URL, downloaded) for nothing."""
        plan = ReadPlan(ds=self.ds, split=self.split, shards=self.shards, batch=self.batch, seed=self.seed, epoch=0, train=False,
                        buffer=self.buffer, reader=self.d.rank, readers=self.d.world, prefetch=0)  # fmt: skip
        got = 0
        for item in interleave([in_process(plan, self.handler)], self.batch):
            if isinstance(item, Failure):
                raise item.error
            if got >= images:
                break
            part = tuple(t[: images - got] for t in item)
            got += len(part[1])
            yield tuple(t.to(self.device) for t in part)


def _cut(pending: list[tuple], n: int) -> tuple[tuple, list[tuple]]:
    """The first ``n`` samples of the pending pieces, and what is left. Joined by numpy: torch.cat
    splits a copy this small across its threads, which took ~3 ms a batch on 2 busy cores."""
    parts = [torch.from_numpy(np.concatenate([t.numpy() for t in ts])) for ts in zip(*pending)] if len(pending) > 1 else list(pending[0])
    return tuple(p[:n] for p in parts), ([tuple(p[n:] for p in parts)] if len(parts[1]) > n else [])
