"""Key derivation: every pseudo-random bit the ciphers use comes from here.

Construction (docs/cipher.md has the full text and known-answer vectors):

    subkey = HKDF-SHA256(ikm=master key, salt=<kdf>, info=label, L=32)   (RFC 5869)
    stream = ChaCha20(key=subkey, counter=0, nonce=12-byte nonce)         (RFC 8439)

``kdf`` is ``ppencrypt/v3`` for datasets written now, ``ppencrypt/v2`` and ``ppencrypt/v1``
for datasets written before (they still decrypt). A v2 label names everything that must give
another mask:

    ppencrypt/v2|method=<m>|purpose=<p>|scope=<s>|shape=<H>x<W>x<C>[|<param>=<value>...]
        [|salt=<32 hex>|split=<name>]     image scope, dataset images
        [|salt=<32 hex>|query]            image scope, query images

so two datasets (a fresh salt each), two image shapes, two block sizes, or queries and dataset
images never share a mask. A dataset-scope label has no salt on purpose: [P]'s model shares one
mask between the training, test and query images of every dataset made with the key.

The nonce is all zeros for a dataset-scope key and the image's index (64-bit little-endian,
zero-padded to 12 bytes) for an image-scope key, so every image of a split gets an independent
stream without a second HKDF call.

Version 3 keeps v2's labels but for the purpose, and draws a method's whole key for an image
from one fixed-size record of one stream per split, image i at its own stretch of blocks
(records.py): every image's key in one call for a whole batch, and vectorised (draws.py). A
purpose appears only in the labels of secondary keys (``…|purpose=query-nonce``), at the end.

numpy's generators never produce key material; they are not cryptographic.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..formats.manifest import KEY_SCOPES
from .draws import Draw, from_records, from_stream
from .records import record_at, records

KDF_V1, KDF_V2, KDF_V3 = "ppencrypt/v1", "ppencrypt/v2", "ppencrypt/v3"
KDFS = (KDF_V1, KDF_V2, KDF_V3)
KDF_LATEST = KDF_V3  # what new datasets use
SALT = KDF_V1.encode()  # the HKDF salt of v1 and of the key id
NONCE_BYTES = 12
ZERO_NONCE = bytes(NONCE_BYTES)
SCOPES = KEY_SCOPES
DATASET_SALT_BYTES = 16  # 128 bits, fresh per dataset (image scope)


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
    """The subkeys of one (master key, method, scope, split or query, dataset salt, kdf) for
    images of one shape under one set of parameters: :meth:`bind` fixes those two, and the
    cipher binds them from the images it is given, so a label can never name another shape."""

    master: bytes | None = field(repr=False)  # None: a sealed ring (:meth:`sealed`), its subkeys only
    method: str
    scope: str
    split: str | None = None  # image scope, dataset images
    salt: bytes | None = None  # image scope, v2 and v3: the dataset's salt
    kdf: str = KDF_LATEST  # a new dataset's; KeyUse passes the manifest's for one written before
    query: bool = False  # image scope: a query image (its nonce is a keyed hash of its pixels)
    shape: tuple[int, int, int] | None = None
    params: tuple[tuple[str, object], ...] = ()
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"unknown key scope {self.scope!r}")
        if self.kdf not in KDFS:
            raise ValueError(f"unknown key derivation {self.kdf!r}")
        if self.kdf != KDF_V1 and self.scope == "image":
            if self.salt is None or len(self.salt) != DATASET_SALT_BYTES:
                raise ValueError(f"a {self.kdf} image-scope key needs the dataset's 16-byte salt")
            if self.query == (self.split is not None):
                raise ValueError("an image-scope key is for one split's images or for queries")

    def bind(self, shape: tuple[int, int, int], params: dict) -> KeyRing:
        """This ring for H x W x C images and the method's parameters."""
        shape = tuple(int(s) for s in shape)
        params = tuple(sorted(params.items()))
        if (shape, params) == (self.shape, self.params):
            return self
        return replace(self, shape=shape, params=params, _cache={})

    def label(self, purpose: str | None = None) -> str:
        """The HKDF info of the subkey for ``purpose``; version 3: of the record stream when
        ``purpose`` is None, of a secondary key otherwise."""
        if self.kdf == KDF_V1:
            label = f"{KDF_V1}|method={self.method}|purpose={purpose}|scope={self.scope}"
            if self.scope == "image":
                label += f"|split={'query' if self.query else self.split}"
            return label
        if self.shape is None:
            raise ValueError(f"a {self.kdf} key ring must be bound to an image shape (KeyRing.bind)")
        if self.kdf == KDF_V2 and purpose is None:
            raise ValueError("a v2 subkey is for one purpose")
        h, w, c = self.shape
        named = f"|purpose={purpose}" if self.kdf == KDF_V2 else ""
        label = f"{self.kdf}|method={self.method}{named}|scope={self.scope}|shape={h}x{w}x{c}"
        label += "".join(f"|{k}={v}" for k, v in self.params)
        if self.scope == "image":
            label += f"|salt={self.salt.hex()}" + ("|query" if self.query else f"|split={self.split}")
        if self.kdf == KDF_V3 and purpose is not None:
            label += f"|purpose={purpose}"
        return label

    def subkey(self, purpose: str | None = None) -> bytes:
        if purpose not in self._cache:
            if self.master is None:
                raise ValueError(f"a sealed key ring holds no subkey for {self.label(purpose)!r}")
            self._cache[purpose] = hkdf_sha256(self.master, self.label(purpose).encode(), salt=self.kdf.encode())
        return self._cache[purpose]

    def sealed(self, purposes) -> KeyRing:
        """This bound ring with the subkeys of ``purposes`` (None: v3's record stream) derived
        and the master key dropped: what a worker on another machine receives. It encrypts
        this split's images of this shape as the ring does, and can derive nothing else."""
        if self.shape is None:
            raise ValueError("only a bound ring is sealed (KeyRing.bind)")
        return replace(self, master=None, _cache={p: self.subkey(p) for p in purposes})

    def stream(self, purpose: str, index: int | bytes | None = None) -> Keystream:
        """The keystream for ``purpose``; ``index`` selects the image under image scope."""
        if self.scope == "dataset":
            return Keystream(self.subkey(purpose))
        if index is None:
            raise ValueError("an image-scope key needs the image's index")
        nonce = index if isinstance(index, bytes) else index_nonce(index)
        return Keystream(self.subkey(purpose), nonce)

    def draws(self, schedule: tuple[Draw, ...], indices=None, reduce: bool = True) -> list[np.ndarray]:
        """Every draw of ``schedule`` (a method's key for one image) for the images
        ``indices`` — positions in their split, or nonces from :meth:`content_nonce` for query
        images; None for the one key of a dataset-scope ring — one row per image.
        ``reduce=False``: ``integers`` may come back as any value congruent mod k (draws.py)."""
        if self.kdf == KDF_V3:
            size = sum(d.record_bytes() for d in schedule)
            if indices is None:
                rows = records(self.subkey(), [0], size)
            elif self.query:
                rows = np.concatenate([record_at(self.subkey(), nonce, size) for nonce in indices])
            else:
                rows = records(self.subkey(), indices, size)
            return from_records(rows, schedule, reduce)
        keys = [None] if indices is None else list(indices)
        return [np.stack([from_stream(self.stream(d.purpose, i), d) for i in keys]) for d in schedule]

    def content_nonce(self, data: bytes) -> bytes:
        """A nonce for a query image under image scope: a keyed hash of its pixels, so that
        different queries never share a mask and the same query always gets the same one."""
        digest = hmac.new(self.subkey("query-nonce"), data, hashlib.sha256).digest()
        return digest[:NONCE_BYTES]

