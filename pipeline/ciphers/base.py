"""The cipher interface and the registry of methods.

A method is a subclass of :class:`ImageCipher` decorated with :func:`register`; the CLI lists
methods from the registry, so adding one touches no command.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ..derive import SCOPES, KeyRing
from ..errors import CipherError

_REGISTRY: dict[str, type[ImageCipher]] = {}


def register(cls: type[ImageCipher]) -> type[ImageCipher]:
    if cls.name in _REGISTRY:
        raise ValueError(f"cipher method {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def method_names() -> list[str]:
    return list(_REGISTRY)


def cipher_class(name: str) -> type[ImageCipher]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CipherError(f"unknown method {name!r} (choose from {', '.join(_REGISTRY)})") from None


def make_cipher(name: str, params: dict | None = None) -> ImageCipher:
    """Build a method from its name and parameters (as recorded in a manifest)."""
    cls = cipher_class(name)
    params = dict(params or {})
    unknown = set(params) - set(cls.defaults)
    if unknown:
        raise CipherError(f"method {name!r} takes no parameter {', '.join(sorted(unknown))}")
    return cls(**{**cls.defaults, **params})


class ImageCipher(ABC):
    """Encrypts batches of N x H x W x C uint8 images.

    ``indices`` are the images' positions in their split (or 12-byte nonces for query images);
    image-scope keys depend on them, dataset-scope keys do not.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_key: ClassVar[bool] = True
    scopes: ClassVar[tuple[str, ...]] = SCOPES
    defaults: ClassVar[dict] = {}

    def __init__(self, **params):
        self._params = params

    @property
    def params(self) -> dict:
        return dict(self._params)

    def purposes(self, channels: int) -> tuple[str, ...]:
        """The derivation purposes this method uses for images with ``channels`` channels."""
        return ()

    def check(self, shape: tuple[int, int, int], scope: str | None) -> None:
        """Raise CipherError if this method cannot encrypt images of ``shape`` under ``scope``."""
        if self.needs_key and scope not in self.scopes:
            raise CipherError(f"method {self.name!r} supports key scope {' or '.join(self.scopes)}, not {scope!r}")

    @abstractmethod
    def encrypt(self, images: np.ndarray, ring: KeyRing | None, indices: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def decrypt(self, images: np.ndarray, ring: KeyRing | None, indices: np.ndarray) -> np.ndarray: ...
