"""``--engine dask``: a split encrypted on a Dask cluster, one task per output shard.

    driver                                     workers
    list the split's tasks (no image read)
    submit decode(task t), a window ahead  ->  decode: a Chunk, kept on its worker
    learn each task's count (a few bytes)  <-
    cut the samples into shards [kS, (k+1)S)
    journal shard k's file names, then
    submit write(shard k, its chunks)      ->  PIECE images at a time: hash the plain pixels,
                                               encrypt under the sealed ring, append to the
                                               staged shard; then, off the worker's thread
                                               (secede: the next shard encrypts meanwhile),
                                               put it at OUT; return its record and the hash
    journal shard k (in order), sign the manifest at the end

A worker's memory: the decoded chunks of the shards it writes (dask holds a task's inputs
until it ends; the driver keeps WRITES shards in flight per thread of the cluster) and one
piece encrypted — never a concatenated or encrypted copy of a whole shard (at the default
256 MiB shards that pair of copies took a worker from about 600 MiB to 1 GiB,
bench/scale_write.py, docs/benchmarks.md).

The sample numbering is the local engine's (the driver's prefix sum over the counts, bad
files dropped), and shard k is written by one task from nothing but its inputs, so a retried
task (its worker killed) writes the same bytes, and the output is the local engine's byte
for byte. Workers receive the cipher and a sealed key ring — this split's subkeys for this
image shape, never the master key, the manifest's MAC subkey or the journal's (KeyRing.sealed).

With ``--copies`` the train split's tasks are run once per copy and cut into shards as the
local engine cuts them (a shard may span two copies); each shard task gets its samples'
shift/flip draws, made by the driver for the split's count.

The scheduler: ``--scheduler tcp://HOST:PORT``, else ``$DASK_SCHEDULER_ADDRESS``, else a
``distributed.LocalCluster`` on this machine (``--workers`` processes, one thread each).

Ctrl-C (or any error) ends the job at once: its tasks are cancelled on the scheduler and a
LocalCluster's worker processes killed (DaskEngine.__exit__). A task an external worker is
already running cannot be stopped; one writing to a local OUT finds the partial folder gone
and writes nothing, one uploading to a URL may still put its shard after the driver cleaned up
(not listed by any manifest; a rerun at that prefix refuses it as not its own).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import signal
import sys
import threading
import weakref
import shutil
import tempfile
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import augment as client_augment
from .augment import Draws
from .ciphers import ImageCipher
from .engine import SplitJob, label_limit, total
from .errors import EngineError, MissingExtraError, SourceError
from .formats import STORAGES, split_writer
from .formats.checksum import sha256_file
from .formats.journal import ShardEntry
from .formats.manifest import FileInfo, ShardInfo
from .formats.output import RemoteOutput
from .keys import KDF_V3, KeyRing
from .sources import Chunk, run_task

ENV = "DASK_SCHEDULER_ADDRESS"
AHEAD = 4  # decode tasks in flight per worker thread
WRITES = 2  # shard tasks in flight per worker thread: one uploading (seceded) while the next encrypts
PIECE = 256  # images a shard task encrypts and writes at once: its memory beyond its inputs (38 MB at 224 px)
PROGRESS = "ppencrypt-progress"  # the scheduler's event topic of encrypted pieces


def _count(chunk: Chunk) -> tuple[int, list]:
    return len(chunk.labels), chunk.bad


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to write shard ``k`` of a split (picklable, no master key)."""

    src: str
    split: str
    k: int
    first: int  # the shard's first sample index
    pieces: tuple[tuple[int, int], ...]  # per input chunk: the rows [a, b) that belong to this shard
    cipher: ImageCipher
    ring: KeyRing | None  # sealed
    storage: str
    shape: tuple[int, int, int]
    classes: int  # the class count known up front (0 for a source numbered by its labels)
    labels: int  # the labels allowed: below this (engine.label_limit)
    shard_size: int
    dest: object  # a local staging folder (str) or the RemoteDir of OUT
    draws: Draws | None = None  # --copies: each sample's shift and flip (augment.py), applied before encrypting
    piece: int = PIECE  # images encrypted and written at once


def spans(chunks: tuple[Chunk, ...], pieces, size: int):
    """(chunk, a, b): the shard's rows, chunk by chunk, in runs of at most ``size``."""
    for chunk, (a, b) in zip(chunks, pieces):
        for at in range(a, b, size):
            yield chunk, at, min(b, at + size)


def report(spec: ShardTask, images: int, piece: int) -> None:
    """Progress on the scheduler's event log (topic PROGRESS, ``client.get_events``): each piece
    as it is encrypted and written: the shard, its images so far, this piece's."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not in a worker (the task run by hand)
        return
    worker.log_event(PROGRESS, {"split": spec.split, "shard": spec.k, "images": images, "piece": piece})


def upload_aside() -> None:
    """Leave the worker's thread to the next task (the next shard's encryption) while this one
    uploads: at most WRITES shards per thread staged at once (the driver's window)."""
    try:
        from distributed import secede

        secede()
    except (ImportError, ValueError):  # not in a worker
        pass


def staging_root() -> str | None:
    """Where a task stages its shard: inside its worker's own directory, which Dask removes
    when the worker closes — and, for a worker that was killed, when the next worker on that
    machine starts (distributed's WorkSpace purges directories no live process holds); outside
    a worker (a task run by hand) the system's temporary folder."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return None


def _make_folders_within(dest: Path, folder: Path) -> None:
    """The folders from ``dest`` (exclusive) down to ``folder``, made one at a time: never
    ``dest`` itself, so a job that ended and removed its partial folder meanwhile is not given
    it back by a task still running (the task fails instead)."""
    for part in reversed([folder, *folder.parents][: len(folder.relative_to(dest).parts)]):
        try:
            part.mkdir(exist_ok=True)
        except FileNotFoundError:
            raise EngineError(f"{dest}: gone; the job this shard was for has ended") from None


def write_shard(spec: ShardTask, *chunks: Chunk) -> dict:
    for c, (a, b) in zip(chunks, spec.pieces):
        if b > a and c.images.shape[1:] != spec.shape:
            raise SourceError(f"{spec.src}: an image of split {spec.split} decoded to {c.images.shape[1:]}, expected {spec.shape}")
    labels = np.concatenate([c.labels[a:b] for c, (a, b) in zip(chunks, spec.pieces)])
    if labels.min() < 0 or labels.max() >= spec.labels:
        raise SourceError(f"{spec.src}: split {spec.split} has labels outside 0..{spec.labels - 1}")
    plain = hashlib.sha256()
    root = Path(tempfile.mkdtemp(prefix="ppencrypt-shard-", dir=staging_root()))
    try:
        writer = split_writer(spec.storage, root, spec.split, spec.shape, spec.shard_size)
        # as if shards 0..k-1 were written before: this one gets shard k's name and keys
        writer.resume([ShardInfo("", "", 0, spec.shard_size, i * spec.shard_size) for i in range(spec.k)])
        finals: list[tuple[str, str | None]] = []
        writer.on_final = lambda rel, sha: finals.append((rel, sha))
        at = spec.first
        # a piece at a time: no copy of the shard's images is made whole, plain or encrypted
        for chunk, a, b in spans(chunks, spec.pieces, spec.piece):
            images = np.ascontiguousarray(chunk.images[a:b])
            if spec.draws is not None:  # a --copies copy: shifted and flipped before it is hashed and encrypted, as locally
                done = at - spec.first
                images = client_augment.shift_flip(images, spec.draws[done : done + b - a])
            plain.update(images)  # the same bytes, in the same order, as the shard's images hashed at once
            writer.write(spec.cipher.encrypt(images, spec.ring, np.arange(at, at + b - a, dtype=np.int64)), chunk.labels[a:b])
            at += b - a
            report(spec, at - spec.first, b - a)
            del images
        shard = writer.close()[-1]
        upload_aside()
        files = []
        for rel, sha in finals:
            staged = root / rel  # hashed and uploaded from disk: the shard is not held again in memory
            info = FileInfo(rel, sha or sha256_file(staged), staged.stat().st_size)
            if isinstance(spec.dest, str):  # a local OUT: its partial folder, on this machine or a shared disk
                if not Path(spec.dest).is_dir():  # the job ended (an error, Ctrl-C) while this task ran: it is not wanted
                    raise EngineError(f"{spec.dest}: gone; the job this shard was for has ended")
                target = Path(spec.dest) / rel
                _make_folders_within(Path(spec.dest), target.parent)
                shutil.move(root / rel, target)
                if sha256_file(target) != info.sha256:
                    raise EngineError(f"{target}: changed while it was moved")
            else:
                spec.dest.put_file(rel, staged)
            files.append(info)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"shard": shard, "files": files, "per_class": np.bincount(labels, minlength=spec.classes).tolist(), "plain": plain.digest()}


@contextlib.contextmanager
def _sigint_held():
    """SIGINT blocked in this thread while a LocalCluster starts: a Ctrl-C then arrives (the
    pending signal, delivered on unblocking) once the cluster is whole, which this process can
    close (DaskEngine.__exit__); mid-start it would leave a half-made cluster that Dask's own
    exit hook trips over, with a traceback."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _stderr_to_null():
    """The LocalCluster's worker processes, started meanwhile, get /dev/null for stderr: a
    terminal's Ctrl-C reaches its whole process group, and a worker caught mid-import printed a
    traceback of its own, its logs more lines (a task's error reaches this process through its
    future all the same)."""
    try:
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no stderr to swap
        yield
        return
    try:
        sys.stderr.flush()
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _hush(name: str, level: int | None = None, saved: dict | None = None) -> None:
    """Log lines of ``name`` and the loggers below it only from ``level`` up (None: none at all).
    Dask configures levels on several of them, so the parent's level alone does not do. Each
    logger's level and state before the first change are kept in ``saved``, for _unhush."""
    for logger_name in [name, *logging.root.manager.loggerDict]:
        if logger_name == name or logger_name.startswith(name + "."):
            logger = logging.getLogger(logger_name)
            if saved is not None:
                saved.setdefault(logger_name, (logger.level, logger.disabled))
            if level is None:
                logger.disabled = True
            else:
                logger.setLevel(max(level, logger.getEffectiveLevel()))


class _KeptInterrupt:
    """While a job runs: a Ctrl-C that lands inside a finalizer (a Dask future's ``__del__``
    releasing its key) is "ignored" by Python — a traceback printed, and the job would go on
    to finish. This unraisable-exception hook keeps it instead: noted, not printed, and raised
    at the driver's next step (DaskEngine.check_interrupt). Any other unraisable exception is
    passed to the hook there was before."""

    def __init__(self):
        self.interrupted = False
        self._previous = None

    def __enter__(self):
        self._previous, sys.unraisablehook = sys.unraisablehook, self._hook
        return self

    def _hook(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            self.interrupted = True
        else:
            self._previous(unraisable)

    def __exit__(self, *exc) -> None:
        if sys.unraisablehook == self._hook:
            sys.unraisablehook = self._previous


class _SyncCancelRace(logging.Filter):
    """Drops the one log record of a race in ``distributed.utils.sync``: a Ctrl-C that arrives
    before the loop thread has started the call schedules ``cancel``, which then reads the
    not-yet-bound ``future`` and fails with NameError, logged by tornado's loop (seen in
    tests/test_dask.py's Ctrl-C tests). Nothing is left to cancel then; every other record
    passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, NameError) and "sync.<locals>.cancel" in record.getMessage())


_SYNC_CANCEL_RACE = _SyncCancelRace()


def _unhush(saved: dict) -> None:
    """The loggers as they were (a notebook's next cluster logs as it did)."""
    for logger_name, (level, disabled) in saved.items():
        logger = logging.getLogger(logger_name)
        logger.setLevel(level)
        logger.disabled = disabled
    saved.clear()


def _kill_workers(cluster) -> None:
    """A LocalCluster's worker processes, killed now (they hold nothing to clean up: a shard is
    put at OUT whole or not at all), their nannies told not to start them again."""
    from distributed.core import Status

    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(nanny, "pid", None)
        if getattr(nanny, "status", None) == Status.running:
            nanny.status = Status.closing_gracefully  # no restart when its worker dies: it closes
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def sealed(job: SplitJob) -> KeyRing | None:
    if job.ring is None:
        return None
    shape = job.source.shape
    ring = job.ring.bind(shape, job.cipher.params)
    purposes = set(job.cipher.purposes(shape[2])) | {d.purpose for d in job.cipher.draws(shape) or ()}
    if ring.kdf == KDF_V3:
        purposes.add(None)  # the record stream
    return ring.sealed(sorted(purposes, key=str))


class DaskEngine:
    name = "dask"

    def __init__(self, pool, scheduler: str | None = None):
        try:
            import distributed  # noqa: F401  (only whether it is there)
        except ImportError:
            raise MissingExtraError("--engine dask needs the 'dask' extra: pip install 'ppencrypt[dask]'") from None
        self.address = scheduler or os.environ.get(ENV) or None
        self.workers = pool.workers
        self.client = self.cluster = None
        # this job's tasks still referenced (weakly: a decoded chunk is released on its worker as
        # soon as the driver drops it): what an error or Ctrl-C cancels
        self.futures: weakref.WeakSet = weakref.WeakSet()
        self.hushed: dict = {}  # the loggers _hush changed, as they were
        self._aborted = False
        self._kept = _KeptInterrupt()

    def __enter__(self) -> DaskEngine:
        from distributed import Client, LocalCluster

        logging.getLogger("tornado.application").addFilter(_SYNC_CANCEL_RACE)  # once: a filter is added only if absent
        self._kept.__enter__()

        try:
            if self.address is None:
                # the scheduler's HTTP server (health checks; there is no dashboard without bokeh) on
                # a free local port: 8787 may be another cluster's
                # Its scheduler runs in this process and logs to this stderr: only its errors, for
                # the warnings of a worker lost (a Ctrl-C reaches them all) add nothing to the
                # error the job's future raises
                _hush("distributed", logging.ERROR, self.hushed)
                with _sigint_held(), _stderr_to_null():
                    self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                                dashboard_address="127.0.0.1:0")  # fmt: skip
                    self.client = Client(self.cluster)
            else:
                self.client = Client(self.address, timeout="30s")
        except (OSError, TimeoutError) as e:
            self.__exit__()
            raise EngineError(f"{self.address or 'LocalCluster'}: cannot reach the Dask scheduler ({e})") from None
        except BaseException:  # Ctrl-C while the cluster starts
            self.__exit__(*sys.exc_info())
            raise
        return self

    def abort(self) -> None:
        """An error or Ctrl-C: nothing more is wanted. Dask's own shutdown waits for the
        workers to finish their tasks (4 s, then kills them) and logs each step; so its logs
        are hushed, this job's tasks cancelled on the scheduler (an external cluster's workers
        drop them), and a LocalCluster's worker processes killed — called by the job before it
        removes its partial output, so that no task of a LocalCluster writes there after."""
        if self._aborted:
            return
        self._aborted = True
        _hush("distributed", None, self.hushed)
        if self.client is not None and self.futures:
            with contextlib.suppress(Exception):
                self.client.cancel(list(self.futures), force=True)
        if self.cluster is not None:
            _kill_workers(self.cluster)

    def check_interrupt(self) -> None:
        """Raise the Ctrl-C a finalizer swallowed (_KeptInterrupt), if one did."""
        if self._kept.interrupted:
            self._kept.interrupted = False
            raise KeyboardInterrupt

    def __exit__(self, exc_type=None, *exc) -> None:
        self._kept.__exit__()
        if exc_type is not None:
            self.abort()
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        self.futures.clear()
        for part in (client, cluster):
            if part is not None:
                with contextlib.suppress(Exception) if exc_type is not None else contextlib.nullcontext():
                    part.close()
        _unhush(self.hushed)

    def encrypt_split(self, job: SplitJob, start: dict) -> None:
        run, client = job.run, self.client
        writer_cls = STORAGES[job.storage].writer
        if job.journal is None or writer_cls.shard_names(run.name, 0) is None:
            raise EngineError(f"--engine dask: storage {job.storage!r} cannot write a shard by itself")
        loader = job.source.splits[run.name]
        S, o, ring = job.shard_size, job.output, sealed(job)
        dest = o.loc if isinstance(o, RemoteOutput) else str(o.staging)
        threads = max(1, sum(client.nthreads().values()))
        tag = uuid.uuid4().hex[:8]
        augment = job.augment
        passes = augment.copies if augment is not None and run.name == augment.split else None
        window: deque = deque()
        writes: deque = deque()
        pieces: list = []  # (decoded future, a, b, the draws of rows [a, b) or None) of the shard being cut

        def fill(tasks, copy: int) -> None:
            for t, task in itertools.islice(tasks, max(0, AHEAD * threads - len(window))):
                decoded = client.submit(run_task, task, key=f"decode-{run.name}-{copy}-{t}-{tag}", pure=False)
                counted = client.submit(_count, decoded, key=f"count-{run.name}-{copy}-{t}-{tag}", pure=False)
                self.futures.update((decoded, counted))
                window.append((t, decoded, counted))

        def submit(state: dict) -> None:
            k = (run.count - 1) // S
            names = writer_cls.shard_names(run.name, k)
            if isinstance(o, RemoteOutput):  # journaled before a worker uploads them
                o.name(names)
            first_sample = k * S
            draws = None if pieces[0][3] is None else Draws.joined([d for *_, d in pieces])
            spec = ShardTask(src=job.src, split=run.name, k=k, first=first_sample, pieces=tuple((a, b) for _, a, b, _ in pieces),
                             cipher=job.cipher, ring=ring, storage=job.storage, shape=job.source.shape,
                             classes=len(job.source.classes), labels=label_limit(job.source), shard_size=S, dest=dest,
                             draws=draws, piece=PIECE)  # fmt: skip
            future = client.submit(write_shard, spec, *[f for f, *_ in pieces], key=f"shard-{run.name}-{k}-{tag}", pure=False)
            self.futures.add(future)
            writes.append((future, state))
            pieces.clear()

        def finish(wait_for: int) -> None:
            while len(writes) > wait_for:
                self.check_interrupt()
                future, state = writes.popleft()
                got = future.result()
                for f in got["files"]:
                    o.published[f.path] = f
                run.add(got["per_class"])
                digest = None if run.digest is None else run.digest.add_shard(got["plain"])
                entry = ShardEntry(shard=got["shard"], files=got["files"], per_class=got["per_class"], digest=digest, at=state)
                run.entries.append(entry)
                job.journal(entry)

        count = total(loader)
        copy = start["copy"]
        at = start["at"]
        with job.progress(None if count is None else count * (passes or 1), f"encrypt {run.name}") as bar:
            # as the local engine (engine.encrypt_split): copy k of image j is sample k x N + j,
            # shifted and flipped by draw j of copy k; a shard may hold the end of one copy and
            # the start of the next
            for copy in range(start["copy"], passes or 1):
                draws = client_augment.draws(loader.count, augment.pad, augment.seed, copy) if passes else None
                resumed = copy == start["copy"]
                first = start["task"] if resumed else 0
                at = start["at"] if resumed else 0  # the image's position in the split (after skipped files): its draw
                tasks = enumerate(itertools.islice(loader.tasks(), first, None), first)
                fill(tasks, copy)
                while window:
                    t, decoded, counted = window.popleft()
                    fill(tasks, copy)
                    n, bad = counted.result()
                    if copy == 0:
                        run.bad.extend(bad)
                    bar.update(n + len(bad))
                    pos = start["offset"] if resumed and t == first else 0
                    while pos < n:
                        take = min(n - pos, S - run.count % S)
                        pieces.append((decoded, pos, pos + take, None if draws is None else draws[at : at + take]))
                        run.count += take
                        pos += take
                        at += take
                        if run.count % S == 0:
                            bad_before = run.bad_before + len(run.bad) - (len(bad) if copy == 0 else 0)
                            submit({"copy": copy, "task": t, "offset": pos, "at": at, "bad": bad_before})
                    finish(WRITES * threads)
            if pieces:
                submit({"copy": copy, "task": -1, "offset": 0, "at": at, "bad": run.bad_before + len(run.bad)})
            finish(0)
            self.check_interrupt()  # one swallowed while the last shard was awaited: the job is not finished
        run.writer.resume([e.shard for e in run.entries])  # the driver's writer: the split's shards (zarr: its metadata)
