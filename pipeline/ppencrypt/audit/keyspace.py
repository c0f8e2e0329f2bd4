"""The size of a method's key space, in bits: what a brute-force search over keys would face.

Each method states its own count (``ImageCipher.key_space_bits``, with the derivation in its
docstring; docs/privacy.md repeats them): for ``pe`` on RGB n·(3 + log2 6) bits for n pixels,
for the block-wise baselines the permutations of their blocks and nibbles, 0 for ``plain``.

That is the space of *masks*. Every mask here is derived from a 256-bit master key (HKDF +
ChaCha20, docs/cipher.md), so a search over master keys costs at most 2^256 whatever the mask
space: ``effective_bits`` = min(bits, 256). Neither number says anything about the attacks the
audit runs, which do not search keys at all. Under a dataset-scope key one key protects every
image; under an image-scope key every image has its own key of that size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..ciphers import make_cipher

MASTER_KEY_BITS = 256


@dataclass(frozen=True)
class KeySpace:
    bits: float  # log2 of the number of masks one key selects among
    per: str  # what one key protects: "dataset", "image" or "nothing"

    @property
    def effective_bits(self) -> float:
        return min(self.bits, MASTER_KEY_BITS)

    def to_dict(self) -> dict:
        known = not math.isnan(self.bits)
        return {"bits": round(self.bits, 1) if known else None,
                "effective_bits": round(self.effective_bits, 1) if known else None, "one_key_per": self.per}  # fmt: skip


def key_space(method: str, params: dict, scope: str | None, shape: tuple[int, int, int]) -> KeySpace:
    cipher = make_cipher(method, params)
    if not cipher.needs_key:
        return KeySpace(0.0, "nothing")
    return KeySpace(cipher.key_space_bits(shape), "image" if scope == "image" else "dataset")
