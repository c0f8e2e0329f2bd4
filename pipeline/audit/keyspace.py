"""The size of a method's key space, in bits: what a brute-force search over keys would face.

Derivations, for an H×W image with C components, n = H·W pixels, B×B blocks, nb = H·W/B²
blocks (docs/privacy.md repeats them):

* ``pe`` on RGB: per pixel 3 NP bits and one of 6 colour orders: n·(3 + log2 6) ([P]: 2^(3n)·6^n,
  5,719 bits for 32×32). On grayscale ``pe`` is NP only: n bits.
* ``np``: n·C bits.
* ``le``: one permutation of the L = 2·B²·C nibble positions, the inversion mask following from
  it: log2(L!) (log2 96! ≈ 500 bits for 4×4 RGB).
* ``ele``: a permutation per block and one of the blocks: nb·log2(L!) + log2(nb!).
* ``etc``: the block order, and per block 8 symmetries, an NP bit and (RGB) 6 colour orders:
  log2(nb!) + nb·(3 + 1 + log2 6).
* ``plain``: 0.

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
from ..ciphers.pixel import CODES_PURPOSE

MASTER_KEY_BITS = 256


def log2_factorial(n: int) -> float:
    return math.lgamma(n + 1) / math.log(2)


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
    h, w, c = shape
    cipher = make_cipher(method, params)
    if not cipher.needs_key:
        return KeySpace(0.0, "nothing")
    per = "image" if scope == "image" else "dataset"
    n = h * w
    if method in ("pe", "np"):
        colour = math.log2(6) if CODES_PURPOSE in cipher.purposes(c) else 0.0
        return KeySpace(n * (c + colour), per)  # colour only for pe on RGB, where c = 3
    b = cipher.block
    blocks = n // (b * b)
    length = 2 * b * b * c  # nibble positions per block (LE, ELE)
    if method == "le":
        return KeySpace(log2_factorial(length), per)
    if method == "ele":
        return KeySpace(blocks * log2_factorial(length) + log2_factorial(blocks), per)
    if method == "etc":
        colour = math.log2(6) if c == 3 else 0.0
        return KeySpace(log2_factorial(blocks) + blocks * (3 + 1 + colour), per)
    return KeySpace(math.nan, per)  # a method added without a formula: reported as unknown
