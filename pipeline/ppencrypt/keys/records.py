"""Version 3 key material: a fixed-size record per image, many images per ChaCha20 call.

Image i of a split (or the one image of a dataset-scope key, i = 0) owns ChaCha20 blocks
[c, c + b) of the split's subkey under nonce N, where b = ceil(size / 64) and

    G = floor(2^32 / b)                  records per nonce (the block counter is 32 bits)
    N = u64_le(i div G) || 00 00 00 00   c = (i mod G) · b

so no two images of a split ever share a block, and a run of consecutive images is one
contiguous stretch of one stream: one call into OpenSSL for a whole batch. A query image's
record is blocks [0, b) under the nonce its pixels give (derive.KeyRing.content_nonce).
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

BLOCK = 64  # bytes per ChaCha20 block
COUNTER_SPACE = 2**32  # RFC 8439's 32-bit block counter
NONCE_BYTES = 12


def blocks(size: int) -> int:
    return max(1, -(-size // BLOCK))


def _stretch(subkey: bytes, nonce: bytes, counter: int, n_blocks: int) -> np.ndarray:
    # cryptography takes OpenSSL's 16-byte IV: the 32-bit little-endian block counter, then the nonce
    enc = Cipher(algorithms.ChaCha20(subkey, counter.to_bytes(4, "little") + nonce), mode=None).encryptor()
    return np.frombuffer(enc.update(bytes(n_blocks * BLOCK)), np.uint8)


def records(subkey: bytes, indices, size: int) -> np.ndarray:
    """Rows of ``size`` bytes of key material, one per index (non-negative, < 2^63)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    b = blocks(size)
    per_nonce = COUNTER_SPACE // b
    if per_nonce == 0:
        raise ValueError(f"an image's key material ({size} bytes) exceeds one ChaCha20 nonce's 256 GiB")
    out = np.empty((len(indices), size), np.uint8)
    start = 0
    while start < len(indices):  # runs of consecutive indices under one nonce: one call each
        first = int(indices[start])
        group, offset = divmod(first, per_nonce)
        end = start + 1
        limit = min(len(indices), start + per_nonce - offset)
        while end < limit and indices[end] == indices[end - 1] + 1:
            end += 1
        stretch = _stretch(subkey, group.to_bytes(8, "little") + bytes(4), offset * b, (end - start) * b)
        out[start:end] = stretch.reshape(end - start, b * BLOCK)[:, :size]
        start = end
    return out


def record_at(subkey: bytes, nonce: bytes, size: int) -> np.ndarray:
    """One record under an explicit nonce, from block 0 (a query image): shape (1, size)."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be 12 bytes")
    return _stretch(subkey, nonce, 0, blocks(size))[:size].reshape(1, size)
