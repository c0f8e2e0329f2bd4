"""Fetching files ahead of their use, so a download overlaps the decoding of the file before.

Fetching is I/O (sockets, disk, SHA-256 over large buffers), which releases the GIL: threads
suffice. The items keep their order, so whatever reads through this is as deterministic as a
plain loop; only the waiting moves.
"""

from __future__ import annotations

import functools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(items: Iterable[T], fetch: Callable[[T], R], ahead: int) -> Iterator[tuple[T, Callable[[], R]]]:
    """Each item, in order, with a function that returns its fetched value (raising what the
    fetch raised). With ``ahead`` > 0 the fetches of up to ``ahead`` further items run in
    threads while an item is used; with 0 each fetch runs when its value is asked for.
    ``items`` may be endless: only ``ahead`` of them are taken early."""
    if ahead <= 0:
        for item in items:
            yield item, functools.partial(fetch, item)
        return
    pool = ThreadPoolExecutor(ahead + 1, thread_name_prefix="ppencrypt-fetch")
    pending: deque = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(fetch, item)))
            if len(pending) > ahead:
                first, future = pending.popleft()
                yield first, future.result
        while pending:
            first, future = pending.popleft()
            yield first, future.result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # the consumer stopped early: drop what it will not use
