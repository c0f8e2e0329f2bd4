"""A name -> class registry, for the plug-in points of the pipeline: cipher methods
(ciphers/base.py) and audit attacks (audit/attacks.py).

A plug-in is a class with a ``name`` class attribute, decorated with the registry's
``register``; everything that lists or looks up plug-ins (the CLI's choices, the audit's rows)
reads the registry. The package's ``__init__`` imports the built-in plug-in modules, which
registers them in the order it names them; the module that holds a registry never imports its
plug-ins (they import it). Adding one touches its own module and that import line.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """``what`` names the kind of plug-in in messages ("cipher method"); ``error`` is the typed
    error an unknown name raises."""

    def __init__(self, what: str, error: Callable[[str], Exception]):
        self.what, self._error = what, error
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator. A name registered twice is a programming error, not bad input."""
        name = cls.name  # type: ignore[attr-defined]
        if name in self._classes:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        """In registration order: the order the CLI lists them and the audit runs them."""
        return list(self._classes)

    def classes(self) -> list[type[T]]:
        return list(self._classes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            raise self._error(f"unknown {self.what} {name!r} (choose from {', '.join(self._classes)})") from None

    @contextlib.contextmanager
    def temporarily(self, cls: type[T]) -> Iterator[type[T]]:
        """Register ``cls`` for the duration of a ``with`` block (plug-ins defined in tests)."""
        self.register(cls)
        try:
            yield cls
        finally:
            del self._classes[cls.name]  # type: ignore[attr-defined]
