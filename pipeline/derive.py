"""Key derivation: every pseudo-random bit the ciphers use comes from here.

Construction (docs/cipher.md has the full text and known-answer vectors):

    subkey = HKDF-SHA256(ikm=master key, salt="ppencrypt/v1", info=label, L=32)   (RFC 5869)
    stream = ChaCha20(key=subkey, counter=0, nonce=12-byte nonce)                  (RFC 8439)

``label`` is ``ppencrypt/v1|method=<m>|purpose=<p>|scope=<s>`` and, for per-image keys,
``|split=<name>``. The nonce is all zeros for a dataset-scope key and the image's index
(64-bit little-endian, zero-padded to 12 bytes) for an image-scope key, so every image of a
split gets an independent stream without a second HKDF call.

numpy's generators never produce key material; they are not cryptographic.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SALT = b"ppencrypt/v1"
NONCE_BYTES = 12
ZERO_NONCE = bytes(NONCE_BYTES)
SCOPES = ("dataset", "image")


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes = SALT) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def index_nonce(index: int) -> bytes:
    return int(index).to_bytes(8, "little") + bytes(NONCE_BYTES - 8)


class Keystream:
    """A ChaCha20 keystream read front to back; ``read`` continues where it stopped."""

    def __init__(self, subkey: bytes, nonce: bytes = ZERO_NONCE):
        if len(nonce) != NONCE_BYTES:
            raise ValueError("nonce must be 12 bytes")
        # cryptography takes OpenSSL's 16-byte IV: 32-bit little-endian block counter, then nonce.
        algo = algorithms.ChaCha20(subkey, bytes(4) + nonce)
        self._enc = Cipher(algo, mode=None).encryptor()

    def read(self, n: int) -> bytes:
        return self._enc.update(bytes(n))

    def bits(self, n: int) -> np.ndarray:
        """n pseudo-random bits (uint8 0/1), least significant bit of each byte first."""
        raw = np.frombuffer(self.read((n + 7) // 8), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")[:n]

    def integers(self, n: int, k: int) -> np.ndarray:
        """n integers uniform in [0, k) for k <= 256, by rejection: a byte b is used as
        b mod k only when b < 256 - 256 mod k, otherwise skipped. Values come in stream order."""
        if not 1 <= k <= 256:
            raise ValueError("k must be in 1..256")
        limit = 256 - 256 % k
        out = np.empty(0, dtype=np.uint8)
        while out.size < n:
            want = n - out.size
            raw = np.frombuffer(self.read(want + want // 16 + 16), dtype=np.uint8)
            out = np.concatenate([out, raw[raw < limit]])
        return (out[:n].astype(np.uint16) % k).astype(np.uint8)  # k = 256 does not fit a uint8

    def permutations(self, m: int, n: int) -> np.ndarray:
        """m independent uniform permutations of 0..n-1 (shape m x n): each is the stable
        argsort of n 64-bit little-endian words of the stream (a tie, probability below
        n^2 / 2^65, keeps stream order)."""
        words = np.frombuffer(self.read(8 * m * n), dtype="<u8").reshape(m, n)
        return np.argsort(words, axis=1, kind="stable")


@dataclass(frozen=True)
class KeyRing:
    """The subkeys of one (master key, method, scope, split): one per purpose, cached."""

    master: bytes = field(repr=False)
    method: str
    scope: str
    split: str | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"unknown key scope {self.scope!r}")

    def label(self, purpose: str) -> str:
        label = f"ppencrypt/v1|method={self.method}|purpose={purpose}|scope={self.scope}"
        if self.scope == "image":
            label += f"|split={self.split}"
        return label

    def subkey(self, purpose: str) -> bytes:
        if purpose not in self._cache:
            self._cache[purpose] = hkdf_sha256(self.master, self.label(purpose).encode())
        return self._cache[purpose]

    def stream(self, purpose: str, index: int | bytes | None = None) -> Keystream:
        """The keystream for ``purpose``; ``index`` selects the image under image scope."""
        if self.scope == "dataset":
            return Keystream(self.subkey(purpose))
        if index is None:
            raise ValueError("an image-scope key needs the image's index")
        nonce = index if isinstance(index, bytes) else index_nonce(index)
        return Keystream(self.subkey(purpose), nonce)

    def content_nonce(self, data: bytes) -> bytes:
        """A nonce for a query image under image scope: a keyed hash of its pixels, so that
        different queries never share a mask and the same query always gets the same one."""
        digest = hmac.new(self.subkey("query-nonce"), data, hashlib.sha256).digest()
        return digest[:NONCE_BYTES]
