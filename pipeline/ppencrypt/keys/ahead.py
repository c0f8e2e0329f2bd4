"""Image-scope key material drawn ahead, in one background thread, while the encrypting
process does the rest of its work.

With a key per image, every image's draws (ChaCha20 key material, its bits unpacked, its
colour codes sampled) are work that a dataset key does once. In ``ppencrypt dataset`` the
encrypting process is the slower stage — it also hashes every image and writes every shard —
and those two release the GIL (hashlib, file writes), as do ChaCha20, numpy and OpenCV on
large arrays. So the draws of the next images are made in a thread while this chunk is
hashed, written and encrypted, and the image keys' cost leaves the critical path
(docs/benchmarks.md, issue 21). The bytes are the same: the thread runs the very calls the
cipher would (``KeyRing.draws``), for indices predicted as the continuation of the last
batch; a batch asked for that was not predicted is drawn on the spot.

Only a job that asks for it (engine.py, ``ImageCipher.looking_ahead``) has the thread, and
only while it runs: no other process — the decoding workers are forked before it starts —
ever holds it.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .derive import KeyRing
from .draws import Draw

AHEAD_IMAGES = 64  # images drawn ahead of the last batch asked for: one decoding task's worth


class Ahead:
    """Draws of consecutive images, made ahead in blocks by one thread; a batch asked for is
    cut from (or joined across) the blocks that cover it, so any batching of a run of images
    is served — every array a draw gives has one row per image."""

    def __init__(self, images: int = AHEAD_IMAGES):
        self.images = images
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ppencrypt-keys-ahead")
        self._key: tuple | None = None  # (ring, schedule, reduce) of the blocks
        self._blocks: deque[tuple[int, int, Future]] = deque()  # (first image, images, its draws), consecutive

    def draws(self, ring: KeyRing, schedule: tuple[Draw, ...], indices, reduce: bool) -> list[np.ndarray]:
        """``ring.draws(schedule, indices, reduce=reduce)``, from the blocks drawn ahead when
        they cover ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) == 0 or not np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
            return ring.draws(schedule, idx, reduce)  # not a run of consecutive images: nothing to foresee
        a, b = int(idx[0]), int(idx[-1]) + 1
        if self._key != (ring, schedule, reduce):  # rings compare by what they derive from
            self._clear()
            self._key = (ring, schedule, reduce)
        while self._blocks and self._blocks[0][0] + self._blocks[0][1] <= a:
            self._blocks.popleft()
        covered = bool(self._blocks) and self._blocks[0][0] <= a and self._blocks[-1][0] + self._blocks[-1][1] >= b
        if covered:
            parts = []
            for first, count, future in self._blocks:
                if first >= b:
                    break
                lo, hi = max(a, first) - first, min(b, first + count) - first
                parts.append([d[lo:hi] for d in future.result()])
            drawn = parts[0] if len(parts) == 1 else [np.concatenate(rows) for rows in zip(*parts)]
        else:
            self._clear()
            drawn = ring.draws(schedule, idx, reduce)
        self._top_up(ring, schedule, reduce, b, len(idx))
        return drawn

    def _top_up(self, ring, schedule, reduce, after: int, count: int) -> None:
        first = self._blocks[-1][0] + self._blocks[-1][1] if self._blocks else after
        while first < after + self.images:
            rows = np.arange(first, first + count, dtype=np.int64)
            self._blocks.append((first, count, self._pool.submit(ring.draws, schedule, rows, reduce)))
            first += count

    def _clear(self) -> None:
        while self._blocks:
            self._blocks.popleft()[2].cancel()

    def close(self) -> None:
        self._clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
