"""Decoded images handed from the worker processes to the encrypting process in shared memory.

A worker's result used to come back pickled through a pipe: a chunk of 64 photos at 224 px is
9.6 MB, copied into a pickle, through the pipe in 64 KiB pieces, and out of it again, with the
executor's result thread taking the GIL from the encrypting thread all the while. Instead the
pool maps one anonymous shared mapping, cut into slots of SLOT_BYTES, *before* it forks its
workers: every worker inherits it, each task is given a free slot, the worker stacks its chunk's
pixels straight into the slot (:func:`stack`), and only the small rest of the result (labels,
skipped files, where the pixels are) is pickled. The encrypting process reads the pixels where
they lie; the slot is free again when it asks for the next result.

Anonymous memory has no name: nothing is left to unlink on any exit, a SIGKILL of the parent
included — the kernel frees it with the last process that maps it. A chunk that does not fit a
slot (a large ``--size``) comes back pickled as before; so do all results on systems that cannot
fork.
"""

from __future__ import annotations

import copy
import mmap
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

SLOT_BYTES = 16 << 20  # 64 images of 224 x 224 x 3 is 9.6 MB; pages are only resident once written

_worker_slot = threading.local()  # in a worker: (ring, slot) of the task it runs, for stack()


@dataclass(frozen=True, kw_only=True)
class InSlot:
    """Where a result's pixels are: what is pickled in place of the array."""

    slot: int
    shape: tuple[int, ...]
    dtype: str


class Ring:
    def __init__(self, slots: int, slot_bytes: int = SLOT_BYTES):
        self.slot_bytes = slot_bytes
        self._mem = mmap.mmap(-1, slots * slot_bytes)  # MAP_SHARED | MAP_ANONYMOUS: shared with children forked later
        self._free = deque(range(slots))  # thread-safe appends: a future's callback may free a slot

    def acquire(self) -> int | None:
        try:
            return self._free.popleft()
        except IndexError:  # all in use (slots of abandoned tasks still running): pickle instead
            return None

    def release(self, slot: int | None) -> None:
        if slot is not None:
            self._free.append(slot)

    def array(self, slot: int, shape, dtype) -> np.ndarray | None:
        """A view of ``slot`` as an array, or None when it would not fit."""
        dtype = np.dtype(dtype)
        if int(np.prod(shape)) * dtype.itemsize > self.slot_bytes:
            return None
        return np.ndarray(shape, dtype, buffer=self._mem, offset=slot * self.slot_bytes)

    def run(self, fn, item, slot: int | None):
        """In a worker: ``fn(item)``, its ``images`` left in ``slot`` and replaced by an InSlot."""
        _worker_slot.current = None if slot is None else (self, slot)
        try:
            result = fn(item)
        finally:
            _worker_slot.current = None
        images = getattr(result, "images", None)
        if slot is None or not isinstance(images, np.ndarray) or images.dtype.hasobject:
            return result
        view = self.array(slot, images.shape, images.dtype)
        if view is None:
            return result
        in_place = images.ctypes.data == view.ctypes.data and images.flags.c_contiguous  # fn stack()ed into the slot
        if not in_place:  # a copy first when it is a shifted view of the slot (a stacked chunk sliced)
            view[...] = images.copy() if np.shares_memory(view, images) else images
        result = copy.copy(result)
        result.images = InSlot(slot=slot, shape=images.shape, dtype=images.dtype.str)
        return result

    def take(self, result):
        """In the encrypting process: ``result`` with its pixels a view of their slot (valid
        until the slot is released)."""
        where = getattr(result, "images", None)
        if isinstance(where, InSlot):
            result.images = self.array(where.slot, where.shape, where.dtype)
        return result


def stack(arrays: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    """``np.stack(arrays)`` — into the slot of the task this worker runs when it fits, so the
    pixels are written once; ``empty_shape`` the shape when there are none."""
    if not arrays:
        return np.empty(empty_shape, np.uint8)
    current = getattr(_worker_slot, "current", None)
    if current is not None and all(a.shape == arrays[0].shape and a.dtype == arrays[0].dtype for a in arrays):
        ring, slot = current
        out = ring.array(slot, (len(arrays), *arrays[0].shape), arrays[0].dtype)
        if out is not None:
            return np.stack(arrays, out=out)
    return np.stack(arrays)
