"""How a dataset uses its key: the scope, the key derivation and, under image scope, the
dataset's salt — taken from the options when a dataset is encrypted and from its manifest
afterwards, so that encryption, decryption, previews and queries build the same key rings."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..formats.manifest import CipherInfo
from .derive import DATASET_SALT_BYTES, KDF_LATEST, KDF_V3, KeyRing
from .file import MasterKey

if TYPE_CHECKING:  # the ciphers import this package's derivation: a run-time import would be circular
    from ..ciphers import ImageCipher


@dataclass(frozen=True)
class KeyUse:
    scope: str | None  # 'dataset' | 'image'; None: no key (plain)
    kdf: str = KDF_LATEST
    salt: bytes | None = None  # image scope (v2, v3): 16 bytes, fresh per dataset

    @classmethod
    def new(cls, scope: str | None, salt: bytes | None = None) -> KeyUse:
        """For a dataset about to be encrypted: a fresh salt under image scope, unless one is
        given to reproduce a dataset byte for byte."""
        if scope != "image":
            return cls(scope, KDF_LATEST)
        return cls(scope, KDF_LATEST, salt if salt is not None else secrets.token_bytes(DATASET_SALT_BYTES))

    @classmethod
    def of(cls, c: CipherInfo) -> KeyUse:
        return cls(c.key_scope, c.kdf, bytes.fromhex(c.salt) if c.salt else None)

    @property
    def salt_hex(self) -> str | None:
        return None if self.salt is None else self.salt.hex()

    def ring(self, cipher: ImageCipher, key: MasterKey | None, split: str | None = None, query: bool = False) -> KeyRing | None:
        """The ring for one split's images (or, with ``query``, for query images)."""
        if not cipher.needs_key:
            return None
        image = self.scope == "image"
        return KeyRing(key.secret, cipher.name, self.scope, split if image and not query else None,
                       self.salt if image else None, self.kdf, query=image and query)  # fmt: skip

    def labels(self, cipher: ImageCipher, key: MasterKey | None, splits, shape) -> list[str]:
        """The derivation labels a dataset of these splits and image shape uses (the manifest
        lists them: they reveal nothing about the key)."""
        if not cipher.needs_key:
            return []
        rings = [self.ring(cipher, key, s).bind(shape, cipher.params) for s in (sorted(splits) if self.scope == "image" else [None])]
        if self.kdf == KDF_V3 and cipher.draws(shape) is not None:  # one record stream per ring
            return [r.label() for r in rings]
        return [r.label(p) for r in rings for p in cipher.purposes(shape[2])]
