"""What the attacker can do with the method's public definition: encrypt its own images under
keys of its own, with the target's method, parameters and key scope.

The attacker never holds the target's key. Its keys are derived from the audit's ``--seed``
(so an audit is reproducible) through the same key derivation as ``ppencrypt dataset``; this is
the one place the audit touches key derivation (pipeline.encrypt.key_ring / derive.KeyRing), so
a change there is a change here only.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..ciphers import make_cipher
from ..encrypt import key_ring
from ..keys import MasterKey

SPLIT = "public"  # the split name the attacker's own image-scope keys are derived for


def attacker_key(seed: int, purpose: str) -> MasterKey:
    """A master key of the attacker's, fixed by the seed and what it is for (not secret: the
    attacker's own)."""
    return MasterKey(hashlib.sha256(f"ppencrypt-audit/attacker|seed={seed}|{purpose}".encode()).digest())


def attacker_encrypt(method: str, params: dict, scope: str | None, images: np.ndarray, seed: int, purpose: str = "train") -> np.ndarray:
    """``images`` encrypted as the target's method would, under the attacker's key: one key for
    the set under ``dataset`` scope, a fresh key per image under ``image`` scope."""
    cipher = make_cipher(method, params)
    if not cipher.needs_key:
        return images.copy()
    ring = key_ring(cipher, attacker_key(seed, purpose), scope, SPLIT)
    return cipher.encrypt(images, ring, np.arange(len(images), dtype=np.int64))
