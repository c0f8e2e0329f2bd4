"""Progress bars: tqdm on stderr, silent off a terminal or when asked to be quiet."""

from __future__ import annotations

from typing import Callable, Protocol

from tqdm import tqdm


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Bar": ...
    def __exit__(self, *exc) -> None: ...


ProgressFactory = Callable[[int, str], Bar]


def progress_bars(quiet: bool = False) -> ProgressFactory:
    def make(total: int, desc: str) -> Bar:
        # disable=None: tqdm turns itself off when stderr is not a terminal.
        return tqdm(total=total, desc=desc, unit="img", disable=True if quiet else None, leave=False, dynamic_ncols=True)

    return make


def no_progress(total: int, desc: str) -> Bar:
    return tqdm(total=total, disable=True)
