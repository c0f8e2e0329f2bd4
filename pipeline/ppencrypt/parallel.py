"""An order-preserving process pool with a bounded look-ahead.

Results come back in submission order whatever the worker count, which is what makes the
output byte-identical for any ``--workers``; the window bounds memory when the consumer is
slower than the workers. The processes are forked on the first parallel ``map`` — never for
jobs that have nothing to parallelise — and all at once, so that a library thread started
later (zarr's I/O loop) is never copied half-way into a child. A result's decoded images come
back through shared memory mapped before that fork (ring.py), not pickled.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator

from .ring import Ring


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _noop() -> None:
    return None


PR_SET_PDEATHSIG = 1  # linux/prctl.h


_ring: Ring | None = None  # in a worker: the pool's shared slots, inherited at the fork


def _worker_start(parent: int, ring: Ring | None = None) -> None:
    global _ring
    _ring = ring
    # Ctrl-C reaches the whole process group; the parent handles it and ends the pool, so
    # workers stay quiet instead of each printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent killed outright (SIGKILL, the OOM killer) runs no cleanup: the kernel then
    # kills the workers, which would otherwise wait on the task queue for ever under PID 1
    # (every worker holds the queue's write end, so none ever reads end-of-file).
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _in_slot(fn: Callable, item, slot: int | None):
    return fn(item) if _ring is None else _ring.run(fn, item, slot)


class WorkerPool:
    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._ring: Ring | None = None

    def __enter__(self) -> WorkerPool:
        return self

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            fork = "fork" in mp.get_all_start_methods()
            # the ring exists before the fork, so every worker maps it (ring.py); one slot per
            # task in flight (map's window) and one for the result being consumed
            self._ring = Ring(2 * self.workers + 1) if fork else None
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("fork") if fork else None,
                                             initializer=_worker_start, initargs=(os.getpid(), self._ring))  # fmt: skip
            self._pool.submit(_noop).result()  # fork every process now
        return self._pool

    def __exit__(self, exc_type, *exc) -> None:
        pool, self._pool, self._ring = self._pool, None, None  # the ring is unmapped with its last view
        if pool is None:
            return
        if exc_type is None:
            pool.shutdown(wait=True)
            return
        # An error or an interrupt: the workers' results are not wanted. Waiting for them
        # (shutdown's join) is what hung on Ctrl-C, a worker mid-task or a queue half-fed;
        # so they are killed — they hold nothing that needs cleaning up — and reaped.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for p in processes:
            with contextlib.suppress(OSError):
                p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.join(timeout=5)

    def map(self, fn: Callable, items: Iterable, parallel: bool = True) -> Iterator:
        """``map(fn, items)`` in order; in the worker processes when there are any and
        ``parallel`` is true (``fn`` and the items must then pickle). A result's ``images``
        array may then be a view of shared memory (ring.py): valid until the next result is
        asked for — copy what must outlive that."""
        if self.workers == 1 or not parallel:
            yield from map(fn, items)
            return
        pool = self._start()
        ring = self._ring
        pending: deque = deque()  # (future, slot)
        held = None  # the slot of the result last yielded
        try:
            for item in items:
                slot = None if ring is None else ring.acquire()
                pending.append((pool.submit(_in_slot, fn, item, slot), slot))
                if len(pending) >= 2 * self.workers:
                    result, held = self._next(ring, pending, held)
                    yield result
            while pending:
                result, held = self._next(ring, pending, held)
                yield result
        finally:
            if ring is not None:
                ring.release(held)
            for f, slot in pending:
                if ring is None or slot is None or f.cancel() or f.done():
                    f.cancel()
                    if ring is not None:
                        ring.release(slot)
                else:  # a worker may still write into it
                    f.add_done_callback(lambda _, s=slot: ring.release(s))

    @staticmethod
    def _next(ring: Ring | None, pending: deque, held: int | None):
        """The oldest result, its slot now held, and the slot held before released (the
        consumer asked for this result, so it is done with the one before)."""
        result = pending[0][0].result()
        _, slot = pending.popleft()
        if ring is None:
            return result, None
        ring.release(held)
        return ring.take(result), slot
