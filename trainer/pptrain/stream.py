"""The streaming loader: shards -> reader pipelines -> exact batches in the training process -> device.

A pipeline of small generator stages (webdataset's ``DataPipeline``), one per reader:

    epoch_shards   the split's shards in an order seeded by (seed, epoch), this reader's share
    read_shards    each shard decoded whole into arrays by ppencrypt.formats (tar or zarr chunk),
                   with the error handler passed in; up to --prefetch shards of the pass, and at
                   most PREFETCH_BYTES of them, are fetched ahead in threads (downloaded and
                   hash-checked, for a URL), in order
    shuffle_pool   a pool of --shuffle-buffer samples mixed across shards, vectorised
    guarded        a PipelineError becomes a Failure, raised in the training process in its turn

The training process takes pieces of at most a batch from the readers in turn — reader 0, 1,
..., a reader leaving the turn when its stream ends, the order torch's DataLoader gave its
workers — and cuts exact batches across them, so a reader's share need not be a whole number of
batches. Each pool output is cut into pieces from its start, wherever it is cut for transport.

Readers (``--workers N`` > 0): N processes per rank, started from a fork server on the loader's
first epoch and kept for the loader's life (:class:`Readers`). Each epoch sends every reader its
ReadPlan and the training process's environment; a reader writes its pool outputs, a whole
number of pieces at a time, into a ring of SLOTS chunks in shared memory, which the training
process copies out and hands back. So an epoch starts no process and pickles no samples, and a
reader holds at most SLOTS x CHUNK_BYTES of output, its shuffle pool and the shards it reads.
With 0 workers the same pipeline runs in the training process.

Seeding: webdataset's own shuffles (``shardshuffle=True``, ``shuffle(n)``) seed once per
pipeline, so a fresh pipeline each epoch repeats the first epoch's order unless reseeded;
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
import signal
import traceback
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Iterator

import numpy as np
import torch
import webdataset as wds

from ppencrypt.errors import PipelineError
from ppencrypt.formats import Batch, Dataset, ShardInfo
from ppencrypt.formats.prefetch import read_ahead

from .distributed import Dist
from .errors import OptionError
from .loader import Loaded, train_batches
from .seeding import SAMPLE_ORDER, SHARD_ORDER, epoch_rng

PREFETCH_BYTES = 256 << 20  # shards one reader fetches ahead, at most, whatever --prefetch says
CHUNK_BYTES = 4 << 20  # a reader's output goes to the training process this much at a time (or one piece)
SLOTS = 3  # chunks a reader may have written that the training process has not received yet


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


@dataclass(frozen=True)
class Slots:
    """The layout of a reader's ring in shared memory: SLOTS chunks of ``samples`` samples
    each (a whole number of pieces), every slot labels and indices (int64), then pixels."""

    samples: int
    shape: tuple[int, int, int]

    @staticmethod
    def sized(batch: int, shape: tuple[int, int, int]) -> Slots:
        piece = batch * (16 + shape[0] * shape[1] * shape[2])
        return Slots(max(1, CHUNK_BYTES // piece) * batch, tuple(shape))

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def size(self) -> int:
        return -(-self.samples * (16 + self.pixels) // 64) * 64

    def views(self, buf, slot: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        base = slot * self.size
        labels = np.frombuffer(buf, np.int64, n, base)
        indices = np.frombuffer(buf, np.int64, n, base + 8 * self.samples)
        images = np.frombuffer(buf, np.uint8, n * self.pixels, base + 16 * self.samples).reshape(n, *self.shape)
        return images, labels, indices

    def write(self, buf, slot: int, b: Batch, at: int) -> int:
        n = min(self.samples, len(b) - at)
        images, labels, indices = self.views(buf, slot, n)
        images[...], labels[...], indices[...] = b.images[at : at + n], b.labels[at : at + n], b.indices[at : at + n]
        return n

    def read(self, buf, slot: int, n: int, pin: bool) -> Loaded:
        """A copy of the chunk in a slot (in pinned memory with ``pin``): the slot may be reused."""
        views = [torch.from_numpy(a) for a in self.views(buf, slot, n)]
        if pin:
            return tuple(torch.empty_like(v, pin_memory=True).copy_(v) for v in views)
        return tuple(v.clone() for v in views)


class _Superseded(Exception):
    """The training process sent a command (a new epoch, idle, stop), not a freed slot or a
    request for more: the epoch is over."""


def _reader_main(conn, shm_name: str, slots: Slots, handler) -> None:
    """A reader process: for each epoch the training process sends, its pipeline's outputs into
    the ring, a message per chunk, then a message that ends the epoch (a Failure before it, if a
    shard failed). At the end of a training pass it waits until the training process has asked
    for a chunk beyond those sent. Any command but a freed slot or such a request arriving while
    it works ends the epoch early."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    shm = SharedMemory(shm_name)
    free = deque(range(SLOTS))
    try:
        command = conn.recv()
        while command[0] != "stop":
            if command[0] == "free":
                free.append(command[1])
            if command[0] != "epoch":
                command = conn.recv()
                continue
            _, gen, plan, environ = command
            command, sent, wanted = None, 0, 0
            os.environ.clear()  # the training process's environment as the epoch began (credentials set late)
            os.environ.update(environ)

            def take(block: bool) -> None:
                """Handle the training process's messages: a freed slot, a request for the chunk
                numbered ``wanted``; anything else ends the epoch."""
                nonlocal command, wanted
                while block or conn.poll():
                    c = conn.recv()
                    if c[0] == "free":
                        free.append(c[1])
                    elif c[0] == "more":
                        wanted = max(wanted, c[2]) if c[1] == gen else wanted
                    else:
                        command = c
                        raise _Superseded
                    block = False

            items = reader_items(plan, handler)
            try:
                for item in items:
                    if item is PASS_END:
                        # Another pass only when asked for: the epoch usually ends before it.
                        while wanted < sent:
                            take(block=True)
                        continue
                    if isinstance(item, Failure):
                        conn.send(("failure", gen, item))
                        continue
                    for at in range(0, len(item), slots.samples):
                        take(block=False)
                        while not free:
                            take(block=True)
                        slot = free.popleft()
                        conn.send(("chunk", gen, slot, slots.write(shm.buf, slot, item, at)))
                        sent += 1
                conn.send(("end", gen))
            except _Superseded:
                pass
            except Exception as e:  # a bug, not the data's fault: raised in the training process, traceback included
                _send_error(conn, gen, e)
            finally:
                items.close()
            command = command or conn.recv()
    except (EOFError, OSError):
        return  # the training process is gone
    finally:
        shm.close()


def _send_error(conn, gen: int, e: Exception) -> None:
    message = f"{type(e).__name__} in a streaming reader:\n{traceback.format_exc()}"
    try:
        conn.send(("error", gen, type(e), message))
    except Exception:  # an exception type that does not pickle
        conn.send(("error", gen, RuntimeError, message))


def reader_context() -> mp.context.BaseContext:
    """Readers start from a fork server (a fresh single-threaded process that has imported this
    module and the main script), never by forking the training process: by its first epoch a
    rank runs threads (gloo's, zarr's I/O loop, tqdm's monitor), and a fork copies any lock one
    of them holds at that instant. A reader forked that way once hung inside ``os.fork()`` in a
    two-rank run. The main script (a ``pptrain`` console script, a user's training script) is
    imported once there, as multiprocessing does by default, not once per reader."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")  # macOS and Windows: no fork server; spawn is as safe
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


class Readers:
    """One loader's reader processes: started once, fed an epoch at a time, stopped when the
    loader is dropped (or the process exits)."""

    def __init__(self, workers: int, slots: Slots, handler):
        _check_shared_memory(workers * SLOTS * slots.size, workers)
        ctx = reader_context()
        self.slots, self.gen = slots, 0
        self.procs, self.conns, self.shms = [], [], []
        self._stop = weakref.finalize(self, _stop_readers, self.procs, self.conns, self.shms)
        for w in range(workers):
            self.shms.append(SharedMemory(create=True, size=SLOTS * slots.size))
            here, there = ctx.Pipe()
            self.conns.append(here)
            p = ctx.Process(target=_reader_main, args=(there, self.shms[-1].name, slots, handler), name=f"pptrain-reader-{w}", daemon=True)
            p.start()
            self.procs.append(p)
            there.close()

    def epoch(self, plans: list[ReadPlan], pin: bool) -> list[Iterator[Loaded | Failure]]:
        """Start an epoch in every reader (ending the one before); each reader's chunks, copied
        out of its ring (into pinned memory with ``pin``)."""
        self.gen += 1
        environ = dict(os.environ)
        for w, plan in enumerate(plans):
            self._send(w, ("epoch", self.gen, plan, environ))
        return [self._chunks(w, self.gen, pin) for w in range(len(plans))]

    def idle(self, gen: int) -> None:
        """Epoch ``gen`` needs nothing more: the readers stop working on it."""
        if gen == self.gen:
            for conn in self.conns:
                try:
                    conn.send(("idle", gen))
                except OSError:  # a reader that died: the error that says so is on its way
                    pass

    def close(self) -> None:
        self._stop()

    def _chunks(self, w: int, gen: int, pin: bool) -> Iterator[Loaded | Failure]:
        conn, received = self.conns[w], 0
        while True:
            if gen != self.gen:
                raise RuntimeError("a later epoch of this streaming loader has started")
            if not conn.poll():  # nothing here: ask for the next chunk (a reader at a pass end waits for this)
                self._send(w, ("more", gen, received))
            kind, g, *rest = self._recv(w)
            if kind == "chunk":  # a chunk of an epoch stopped early is only handed back
                chunk = self.slots.read(self.shms[w].buf, rest[0], rest[1], pin) if g == gen else None
                self._send(w, ("free", rest[0]))
                if chunk is not None:
                    received += 1
                    yield chunk
            elif g != gen:
                continue
            elif kind == "end":
                return
            elif kind == "failure":
                yield rest[0]
                return
            else:  # "error": a bug in the reader, raised here as DataLoader did, its traceback in the message
                error_type, message = rest
                try:
                    error = error_type(message)
                except Exception:
                    error = RuntimeError(message)
                raise error

    def _send(self, w: int, message: tuple) -> None:
        try:
            self.conns[w].send(message)
        except OSError:
            raise self._died(w) from None

    def _recv(self, w: int) -> tuple:
        conn, p = self.conns[w], self.procs[w]
        while not conn.poll(1.0):
            if not p.is_alive() and not conn.poll():
                raise self._died(w)
        try:
            return conn.recv()
        except (EOFError, OSError):
            raise self._died(w) from None

    def _died(self, w: int) -> RuntimeError:
        p = self.procs[w]
        p.join(1.0)
        hint = f" (out of shared memory? {SHM} is full)" if p.exitcode == -signal.SIGBUS else ""
        return RuntimeError(f"streaming reader {w} (pid {p.pid}) exited unexpectedly (exit code {p.exitcode}){hint}")


SHM = "/dev/shm"  # where Linux keeps SharedMemory blocks


def _check_shared_memory(need: int, workers: int) -> None:
    """Refuse readers whose rings would not fit in the shared memory left (a container's
    /dev/shm is often 64 MiB): a reader writing past it dies of SIGBUS."""
    try:
        st = os.statvfs(SHM)
    except OSError:
        return  # not Linux: shared memory is not a filesystem of its own
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise OptionError("--workers", f"{workers} streaming readers need {need / 2**20:.0f} MiB of shared memory, and {SHM} has "
                                       f"{free / 2**20:.0f} MiB free: raise it (docker run --shm-size), or use fewer --workers (0: none)")  # fmt: skip


def _stop_readers(procs, conns, shms) -> None:
    for conn in conns:
        try:
            conn.send(("stop",))
        except OSError:
            pass
    for p in procs:
        p.join(2.0)
        if p.is_alive():
            p.terminate()
            p.join()
    for conn in conns:
        conn.close()
    for shm in shms:
        try:
            shm.close()
        except BufferError:  # a view still alive (an exception's frame): the mapping goes with the process
            pass
        shm.unlink()


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
