"""The one way a command that holds the key opens a dataset: :func:`open_keyed`.

It hands out the dataset, its cipher and its key rings only after the key has authenticated
the manifest (mac.py), so nothing that decrypts, or encrypts a query, with the key acts on a
manifest the server rewrote. As in cryptography's Fernet, every public path verifies; the one
step that reads a cipher from a manifest nobody has checked is private and says so
(:func:`_unverified_cipher`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

# The module, not its names: ppencrypt.ciphers imports keys.derive, so when the ciphers are
# imported first this package loads while they are half built; make_cipher is looked up later.
from .. import ciphers
from ..errors import KeyFileError
from ..formats import Dataset, open_dataset
from ..formats.manifest import Manifest
from .derive import KeyRing
from .file import MasterKey
from . import binding
from .mac import authenticate
from .scope import KeyUse

if TYPE_CHECKING:
    from ..ciphers import ImageCipher


def _unverified_cipher(m: Manifest) -> ImageCipher:
    """The cipher ``m`` names, whether or not anyone has checked that ppencrypt wrote ``m``."""
    return ciphers.make_cipher(m.cipher.method, m.cipher.params)


@dataclass(frozen=True)
class KeyedDataset:
    """A dataset as a command holding the key uses it; made by :func:`open_keyed` only."""

    dataset: Dataset
    key: MasterKey | None  # None: a plain dataset, which no key encrypts and no MAC covers
    warnings: list[str]  # for the user: a version 1 manifest, which has no MAC to check

    @property
    def manifest(self) -> Manifest:
        return self.dataset.manifest

    # Built on first use, after open_keyed's check: verify --key needs no cipher, so a method
    # this process has not registered does not stop it from authenticating a manifest.
    @cached_property
    def cipher(self) -> ImageCipher:
        return _unverified_cipher(self.manifest)

    @cached_property
    def use(self) -> KeyUse:
        return KeyUse.of(self.manifest.cipher)

    def ring(self, split: str | None = None, query: bool = False) -> KeyRing | None:
        """The key ring for one split's images (or, with ``query``, for query images)."""
        return self.use.ring(self.cipher, self.key, split, query)


def open_keyed(root: str | os.PathLike, key: MasterKey | None, *, accept_v1: bool = True, dataset_id: str | None = None) -> KeyedDataset:
    """The dataset at ``root`` (a folder or a URL), its manifest authenticated by ``key``.

    Raises unless ``key`` is the dataset's and the manifest is the one ppencrypt wrote with it
    (a version 1 manifest, which has no MAC, passes with a warning under ``accept_v1`` and is
    refused otherwise), and unless it is the dataset meant at that place (binding.py: the id
    ``dataset_id``, or the one this machine's ppencrypt wrote there). Without a key only a plain
    dataset opens: nothing encrypted it, so there is nothing for a key to check."""
    ds = open_dataset(root)
    if key is not None:
        warnings = authenticate(ds, key, accept_v1)
        binding.check(ds, key.key_id, dataset_id)
        return KeyedDataset(ds, key, warnings)
    if _unverified_cipher(ds.manifest).needs_key:
        raise KeyFileError(f"this dataset is encrypted ({ds.manifest.cipher.method}): pass --key")
    return KeyedDataset(ds, None, [])
