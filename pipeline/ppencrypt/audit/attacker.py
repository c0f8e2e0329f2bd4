"""What the attacker can do with the method's public definition: encrypt its own images under
keys of its own, with the target's method, parameters and key scope.

The attacker never holds the target's key. Its keys are derived from the audit's ``--seed``
(so an audit is reproducible) through the same key derivation as ``ppencrypt dataset``; this is
the one place the audit touches key derivation (ppencrypt.keys.KeyUse), so a change there is
a change here only. Under image scope the salt is derived from the seed too: the attacker's
keys are fresh per image, and the audit is still reproducible.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..ciphers import make_cipher
from ..keys import DATASET_SALT_BYTES, KeyUse, MasterKey

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
    key = attacker_key(seed, purpose)
    salt = hashlib.sha256(b"salt|" + key.secret).digest()[:DATASET_SALT_BYTES] if scope == "image" else None
    ring = KeyUse.new(scope, salt).ring(cipher, key, SPLIT)
    return cipher.encrypt(images, ring, np.arange(len(images), dtype=np.int64))
