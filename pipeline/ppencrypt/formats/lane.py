"""Uploads overlap encryption: a URL's shards go up, in order, on one background thread while
the driver encrypts the next shard (issue 23: "at most a few shards staged").

    lane.submit(upload shard N)                 # returns at once; the thread uploads
    lane.checkpoint(journal shard N)            # after shard N's upload; first waits for N-1's
    ... the driver encrypts shard N+1 ...
    lane.settle()                               # everything done (the manifest goes next)

One thread, so uploads and journal saves happen in the order they were submitted: a shard is
journaled only once its files are uploaded, and the journal is never written by two threads.
``checkpoint`` waits for the previous checkpoint, so the driver runs at most one shard ahead
of the uploads: a shard uploading and the next being written are the most on local disk.
After a failure nothing more runs (no journal entry for a shard that did not go up); the
error is raised to the driver at its next ``checkpoint`` or ``settle``.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


class Lane:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._queued: deque[Future] = deque()
        self._mark: Future | None = None  # the last checkpoint
        self._failed: BaseException | None = None

    def _run(self, fn: Callable[[], None]) -> None:
        if self._failed is not None:
            return
        try:
            fn()
        except BaseException as e:
            self._failed = e
            raise

    def submit(self, fn: Callable[[], None]) -> Future:
        if self._pool is None:  # started on first use: a job that uploads nothing starts no thread
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ppencrypt-upload")
        future = self._pool.submit(self._run, fn)
        self._queued.append(future)
        return future

    def wait(self, upto: Future | None = None) -> None:
        """Until everything submitted up to ``upto`` (all, when None) is done; raises the first
        error any of it raised."""
        if upto is not None and upto not in self._queued:
            return  # waited for already
        while self._queued:
            first = self._queued.popleft()
            first.result()
            if first is upto:
                return

    def checkpoint(self, fn: Callable[[], None]) -> None:
        """``fn`` once everything submitted before it is done; first waits for the previous
        checkpoint's ``fn`` (the bound on what is staged)."""
        if self._mark is not None:
            self.wait(self._mark)
        self._mark = self.submit(fn)

    def settle(self) -> None:
        self.wait()
        self._mark = None

    def stop(self) -> None:
        """After an error or an interrupt: what has not started is dropped, what runs (an
        upload of the staged file about to be removed) is waited for; no error is raised."""
        pool, self._pool = self._pool, None
        self._failed = self._failed or RuntimeError("stopped")
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._queued.clear()
        self._mark = None
