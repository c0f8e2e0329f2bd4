"""Every way the pixel cipher can encrypt one pixel, as small lookup tables.

``pe`` sends a pixel x of C components to ``y[c] = x[P[c]] ^ 255·f[P[c]]`` (NP bits f first,
then the colour permutation P = PERMUTATIONS[code]; docs/cipher.md); ``np`` and grayscale ``pe``
have no permutation. Candidate t is one (code, f): 6 · 2^3 = 48 for ``pe`` on RGB, 2^C for the
others. The tables let the attacks try all of them at once with one gather and one XOR:

    y = x[fwd_src[t]] ^ fwd_xor[t]        (encrypt under candidate t)
    x = y[inv_src[t]] ^ inv_xor[t]        (decrypt under candidate t: x[j] = y[P⁻¹[j]] ^ 255·f[j])

The candidates form a group (the signed permutations of the components), so the inverses of
all candidates are again all candidates: "try every decryption" and "try every encryption" are
the same set, and applying one candidate to every pixel of an image is a whole-image symmetry
(a global colour order and per-component negation) that no smoothness measure can see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ciphers import PERMUTATIONS, make_cipher
from ..ciphers.pixel import CODES_PURPOSE, PixelCipher


@dataclass(frozen=True)
class PixelCandidates:
    codes: np.ndarray  # (T,) colour code of each candidate (0 where the method has no shuffle)
    flips: np.ndarray  # (T, C) NP bits of each candidate, per input component
    fwd_src: np.ndarray  # (T, C)
    fwd_xor: np.ndarray  # (T, C) uint8, 0 or 255
    inv_src: np.ndarray  # (T, C)
    inv_xor: np.ndarray  # (T, C) uint8, 0 or 255

    def __len__(self) -> int:
        return len(self.codes)

    def decryptions(self, pixels: np.ndarray) -> np.ndarray:
        """(..., C) ciphertext pixels -> (..., T, C): the pixel decrypted under every candidate."""
        return pixels[..., self.inv_src] ^ self.inv_xor

    def encryptions(self, pixels: np.ndarray) -> np.ndarray:
        """(..., C) plain pixels -> (..., T, C): the pixel encrypted under every candidate."""
        return pixels[..., self.fwd_src] ^ self.fwd_xor

    def fold(self, pixels: np.ndarray) -> np.ndarray:
        """The candidate index that keeps the colour order and negates every component above
        127 (fr-basic's guess), for (..., C) pixels -> (...)."""
        bits = (pixels > 127).astype(np.int64)
        return bits @ (1 << np.arange(pixels.shape[-1]))  # identity code comes first, f in binary

    def decryptor(self, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) candidate indices -> (src, xor) over the flat H·W·C image, for GatherXor."""
        c = self.inv_src.shape[1]
        pixel = np.arange(choice.size, dtype=np.int64)[:, None] * c
        return (pixel + self.inv_src[choice.reshape(-1)]).reshape(-1), self.inv_xor[choice.reshape(-1)].reshape(-1)


def is_pixel_method(method: str) -> bool:
    return isinstance(make_cipher(method), PixelCipher)


def pixel_candidates(method: str, channels: int) -> PixelCandidates:
    """The candidates of a pixel method (``pe``, ``np``) for images with ``channels`` components."""
    shuffles = CODES_PURPOSE in make_cipher(method).purposes(channels)
    identity = np.arange(channels)
    codes, flips, fwd_src, fwd_xor, inv_src, inv_xor = [], [], [], [], [], []
    for code in range(6) if shuffles else (0,):
        perm = PERMUTATIONS[code] if shuffles else identity
        for f in range(2**channels):
            bits = (f >> identity) & 1  # f in binary, component 0 least significant
            codes.append(code)
            flips.append(bits)
            fwd_src.append(perm)
            fwd_xor.append(255 * bits[perm])
            inv_src.append(np.argsort(perm))
            inv_xor.append(255 * bits)
    u8 = lambda a: np.array(a, np.uint8)  # noqa: E731
    return PixelCandidates(np.array(codes), np.array(flips), np.array(fwd_src), u8(fwd_xor), np.array(inv_src), u8(inv_xor))
