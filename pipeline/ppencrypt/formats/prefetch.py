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


def read_ahead(items: Iterable[T], fetch: Callable[[T], R], ahead: int, size: Callable[[T], int] | None = None,
               budget: int | None = None) -> Iterator[tuple[T, Callable[[], R]]]:  # fmt: skip
    """Each item, in order, with a function that returns its fetched value (raising what the
    fetch raised). With ``ahead`` > 0 the fetches of up to ``ahead`` further items run in
    threads while an item is used; with 0 each fetch runs when its value is asked for.
    ``items`` may be endless: only ``ahead`` of them (and one more, looked at) are taken
    early. With ``budget``, the items fetched ahead and not yet handed out (``size`` bytes
    each) hold at most ``budget`` bytes together — or one item, however large: what a fetch
    returns is held in memory, and a server may claim GiB-sized files."""
    if ahead <= 0:
        for item in items:
            yield item, functools.partial(fetch, item)
        return
    pool = ThreadPoolExecutor(ahead + 1, thread_name_prefix="ppencrypt-fetch")
    pending: deque = deque()  # (item, future, bytes)
    held = 0
    source = iter(items)
    following = next(source, _END)

    def fill(most: int) -> None:
        nonlocal following, held
        while following is not _END and len(pending) < most:
            weight = size(following) if size is not None and budget is not None else 0
            if budget is not None and pending and held + weight > budget:  # never refuses the first: each item is fetched
                return
            pending.append((following, pool.submit(fetch, following), weight))
            held += weight
            following = next(source, _END)

    try:
        fill(ahead + 1)
        while pending:
            first, future, weight = pending.popleft()
            held -= weight
            fill(ahead)  # the next fetches start before this item is used
            yield first, future.result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # the consumer stopped early: drop what it will not use


_END = object()
