"""An order-preserving process pool with a bounded look-ahead.

Results come back in submission order whatever the worker count, which is what makes the
output byte-identical for any ``--workers``; the window bounds memory when the consumer is
slower than the workers. The processes are forked on the first parallel ``map`` — never for
jobs that have nothing to parallelise — and all at once, so that a library thread started
later (zarr's I/O loop) is never copied half-way into a child.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _noop() -> None:
    return None


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; the parent handles it and shuts the pool down,
    # so workers stay quiet instead of each printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class WorkerPool:
    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        return self

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_ignore_sigint)
            self._pool.submit(_noop).result()  # fork every process now
        return self._pool

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, fn: Callable, items: Iterable, parallel: bool = True) -> Iterator:
        """``map(fn, items)`` in order; in the worker processes when there are any and
        ``parallel`` is true (``fn`` and the items must then pickle)."""
        if self.workers == 1 or not parallel:
            yield from map(fn, items)
            return
        pool = self._start()
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
