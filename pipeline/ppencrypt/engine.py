"""Where a split's images are decoded, encrypted and written: the engine seam.

    local   this machine's process pool (parallel.py): workers decode, the driver encrypts and
            writes every shard in order (encrypt_split below), a chunk's piece at a time; a
            URL's shard uploads while the next is encrypted (formats/lane.py). The default.
    dask    a Dask cluster (daskengine.py): one task per output shard encrypts and writes it
            to OUT on a worker; the driver only plans, journals and signs.

An engine gets a :class:`SplitJob` — everything about one split but the master key — and must
leave ``job.run`` as the local engine does: its samples, per-class counts, bad files, the
shards' journal entries (``journal(entry)`` called for each, in order) and the source digest.
Every engine writes the same bytes for the same input: sample i is image i of the split in
source order, shard k holds samples [kS, (k+1)S). Ray or Spark would be one more module of the
shape of daskengine.py and one line in ENGINES.
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import augment as client
from .ciphers import ImageCipher
from .errors import OptionError, SourceError
from .formats import SplitWriter
from .formats.journal import ShardEntry
from .formats.manifest import ClientAugment
from .formats.output import Output
from .keys import KeyRing, SourceDigest
from .parallel import WorkerPool
from .progress import ProgressFactory, no_progress
from .sources import Source, run_task
from .sources.streamed import MAX_LABEL


@dataclass(kw_only=True)
class SplitJob:
    src: str
    source: Source
    run: SplitRun
    cipher: ImageCipher
    ring: KeyRing | None  # holds the master key: an engine that ships it elsewhere seals it first
    storage: str
    shard_size: int
    output: Output
    augment: ClientAugment | None
    progress: ProgressFactory
    journal: Callable | None  # called with each shard's journal entry, in order (None: the writer does not stream)


START = {"copy": 0, "task": 0, "offset": 0, "at": 0, "bad": 0}  # where a split's input starts


@dataclass
class SplitRun:
    """One split being written: what it has so far (samples, per class, bad files, the
    shards' journal entries) and the files the writer made final since the last shard."""

    name: str
    writer: SplitWriter
    digest: SourceDigest | None
    per_class: np.ndarray
    entries: list[ShardEntry] = field(default_factory=list)
    count: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # this run's; an earlier run's are only counted
    bad_before: int = 0
    files: list = field(default_factory=list)  # FileInfo of the files final since the last shard closed
    labels_since: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # their labels

    def add(self, per_class) -> None:
        """Add counts per class to ``per_class``, which grows when a source numbered by its labels
        (Source.numbered) shows a larger label than any before."""
        per_class = np.asarray(per_class, np.int64)
        if len(per_class) > len(self.per_class):
            self.per_class = np.pad(self.per_class, (0, len(per_class) - len(self.per_class)))
        self.per_class[: len(per_class)] += per_class

    def resume(self, entries: list[ShardEntry]) -> dict:
        """Continue after ``entries`` (an interrupted job's, checked): where the input continues."""
        self.entries = list(entries)
        if entries:
            self.writer.resume([e.shard for e in entries])
            for e in entries:
                self.add(e.per_class)
                if self.digest is not None:
                    self.digest.resumed(e.digest)
            self.count = entries[-1].shard.first + entries[-1].shard.count
        at = dict(entries[-1].at) if entries else dict(START)
        self.bad_before = at["bad"]
        return at

    def shard_closed(self, at: dict) -> ShardEntry:
        shard = self.writer.shards[-1]
        per_class = np.bincount(self.labels_since, minlength=len(self.per_class))
        entry = ShardEntry(shard=shard, files=self.files, per_class=per_class.tolist(),
                           digest=None if self.digest is None else self.digest.end_shard(), at=at)  # fmt: skip
        self.entries.append(entry)
        self.files, self.labels_since = [], np.empty(0, np.int64)
        return entry


def encrypt_split(
    src: str, source: Source, run: SplitRun, cipher: ImageCipher, ring: KeyRing | None, pool: WorkerPool, start: dict,
    augment: ClientAugment | None = None, progress: ProgressFactory = no_progress, journal=None,
) -> None:  # fmt: skip
    """Encrypt split ``run.name`` of ``source`` (read from ``src``) into ``run.writer`` from
    ``start`` on: image j as sample j, or, when ``augment`` copies this split, copy k of image j
    as sample k x N + j; the digest is fed every plain image as it is encrypted, and
    ``journal(entry)`` is called as each shard closes. Tasks before ``start`` are not run."""
    name, writer = run.name, run.writer
    loader = source.splits[name]
    shard = writer.shard_size
    limit = label_limit(source)
    passes = augment.copies if augment is not None and name == augment.split else None
    with progress(None if total(loader) is None else total(loader) * (passes or 1), f"encrypt {name}") as bar:
        for copy in range(start["copy"], passes or 1):
            draws = client.draws(loader.count, augment.pad, augment.seed, copy) if passes else None
            resumed = copy == start["copy"]
            first = start["task"] if resumed else 0
            at = start["at"] if resumed else 0  # the image's position in the split (after skipped files): its draw
            tasks = itertools.islice(loader.tasks(), first, None)
            # chunk.images may lie in the pool's shared memory (ring.py), valid until the next chunk is
            # asked for: it is only hashed and encrypted (into a new array) here, never kept
            for t, chunk in enumerate(pool.map(run_task, tasks, parallel=loader.parallel), first):
                if copy == 0:
                    run.bad.extend(chunk.bad)
                bar.update(len(chunk.labels) + len(chunk.bad))
                pos = start["offset"] if resumed and t == first else 0  # images an earlier run wrote already
                n = len(chunk.labels)
                if n == 0:
                    continue
                if chunk.images.shape[1:] != source.shape:
                    raise SourceError(f"{src}: an image of split {name} decoded to {chunk.images.shape[1:]}, expected {source.shape}")
                if chunk.labels.min() < 0 or chunk.labels.max() >= limit:
                    raise SourceError(f"{src}: split {name} has labels outside 0..{limit - 1}")
                while pos < n:  # in pieces that end where shards end: each shard's state is journaled
                    take = min(n - pos, shard - run.count % shard)
                    images = chunk.images[pos : pos + take]
                    labels = chunk.labels[pos : pos + take]
                    if draws is not None:
                        images = client.shift_flip(images, draws[at : at + take])
                    if run.digest is not None:
                        run.digest.update(np.ascontiguousarray(images))
                    writer.write(cipher.encrypt(images, ring, np.arange(run.count, run.count + take, dtype=np.int64)), labels)
                    run.add(np.bincount(labels, minlength=len(source.classes)))
                    run.labels_since = np.concatenate([run.labels_since, labels])
                    run.count += take
                    at += take
                    pos += take
                    if run.count % shard == 0 and journal is not None:
                        bad = run.bad_before + len(run.bad) - (len(chunk.bad) if copy == 0 else 0)
                        journal(run.shard_closed({"copy": copy, "task": t, "offset": pos, "at": at, "bad": bad}))


def label_limit(source: Source) -> int:
    """The labels a split may hold: below its class count, or, for a source whose class names
    are the label numbers found as they come (Source.numbered), below MAX_LABEL."""
    return MAX_LABEL if source.numbered else len(source.classes)


def total(loader) -> int | None:
    """The images a split's loader holds, for a progress bar: None while a streamed source
    (``count`` None) has not been read."""
    count = getattr(loader, "count", None)
    if count is None and not hasattr(loader, "count"):
        count = len(loader)
    return count


class LocalEngine:
    name = "local"

    def __init__(self, pool: WorkerPool, scheduler: str | None = None):
        if scheduler is not None:
            raise OptionError("--scheduler", "--scheduler belongs to --engine dask")
        self.pool = pool

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def abort(self) -> None:
        """Nothing runs outside this process's pool, whose workers never write to OUT."""

    def encrypt_split(self, job: SplitJob, start: dict) -> None:
        encrypt_split(job.src, job.source, job.run, job.cipher, job.ring, self.pool, start, job.augment, job.progress, job.journal)


# name -> "module:class", imported only when chosen (dask is an optional extra)
ENGINES = {"local": "ppencrypt.engine:LocalEngine", "dask": "ppencrypt.daskengine:DaskEngine"}


def make_engine(name: str, pool: WorkerPool, scheduler: str | None):
    if name not in ENGINES:
        raise OptionError("--engine", f"unknown engine {name!r} (one of {', '.join(ENGINES)})")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)(pool, scheduler)
