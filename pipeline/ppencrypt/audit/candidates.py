"""Every way a pixel-wise cipher can encrypt one pixel, as small lookup tables.

The cipher states the maps (``ImageCipher.pixel_group``): element t sends a pixel x of C
components to ``y[c] = x[P[c]] ^ 255·f[P[c]]`` (NP bits f first, then the colour order P;
docs/cipher.md) — 6 · 2^3 = 48 for ``pe`` on RGB, 2^C for ``np`` and grayscale ``pe``. The
tables let the attacks try all of them at once with one gather and one XOR:

    y = x[fwd_src[t]] ^ fwd_xor[t]        (encrypt under candidate t)
    x = y[inv_src[t]] ^ inv_xor[t]        (decrypt under candidate t: x[j] = y[P⁻¹[j]] ^ 255·f[j])

For ``pe`` and ``np`` the candidates form a group (the signed permutations of the components,
or the negations), so the inverses of all candidates are again all candidates: "try every
decryption" and "try every encryption" are the same set, and applying one candidate to every
pixel of an image is a whole-image symmetry (a global colour order and per-component
negation) that no smoothness measure can see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ciphers import PERMUTATIONS, make_cipher


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
        """fr-basic's guess for (..., C) pixels -> (...): the first candidate whose decryption
        has the fewest components above 127 — for ``pe`` and ``np``, the one that keeps the
        colour order and negates exactly the components above 127."""
        moved = pixels[..., self.inv_src]
        decrypted = np.where(self.inv_xor > 0, 255 - moved, moved)  # arithmetic: pixels may be means
        return (decrypted > 127).sum(-1).argmin(-1)

    def decryptor(self, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) candidate indices -> (src, xor) over the flat H·W·C image, for GatherXor."""
        c = self.inv_src.shape[1]
        pixel = np.arange(choice.size, dtype=np.int64)[:, None] * c
        return (pixel + self.inv_src[choice.reshape(-1)]).reshape(-1), self.inv_xor[choice.reshape(-1)].reshape(-1)


def pixel_candidates(method: str, channels: int, params: dict | None = None) -> PixelCandidates | None:
    """The candidates of a pixel-wise method for images with ``channels`` components; None for
    a method whose ciphertext pixel depends on more than its own plain value (block-wise)."""
    cipher = make_cipher(method, params)
    group = cipher.pixel_group(channels) if cipher.family == "pixel" else None
    if group is None:
        return None
    inv_src = np.argsort(group.perms, axis=1)
    fwd_xor = 255 * np.take_along_axis(group.flips, group.perms, axis=1)
    u8 = lambda a: np.asarray(a, np.uint8)  # noqa: E731
    return PixelCandidates(colour_codes(group.perms), group.flips.astype(np.int64), group.perms, u8(fwd_xor), inv_src, u8(255 * group.flips))


def colour_codes(perms: np.ndarray) -> np.ndarray:
    """[P]'s colour code of each (T, 3) order; 0 for fewer components (there is no order)."""
    if perms.shape[1] != 3:
        return np.zeros(len(perms), np.int64)
    return (perms[:, None, :] == PERMUTATIONS[None]).all(-1).argmax(-1)
