"""The global variants a ciphertext-only reconstruction is left with, which a viewer settles by
eye.

Some attacks recover an image only up to one transform applied to the whole of it, which no
statistic of the ciphertexts can tell apart: fr-shared (one colour order and negation for the
whole set, since the key is shared), the jigsaw solver (a rotation / flip, negation and colour
order per image, that of its seed block). A person looking at the few candidates picks the
natural-looking one at once; the audit stands in for that person (audit.pick_variant).

Each kind is a group, so "every variant of the reconstruction" contains the right one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..ciphers import PERMUTATIONS
from .candidates import PixelCandidates


class Variants(ABC):
    per_image: bool  # one choice per image (else one for the whole set)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def apply(self, images: np.ndarray, t: int) -> np.ndarray:
        """N × H × W × C uint8 images under variant ``t``."""


class PixelVariants(Variants):
    """One pixel candidate (colour order and per-component negation) applied to every pixel."""

    per_image = False

    def __init__(self, candidates: PixelCandidates):
        self.candidates = candidates

    def __len__(self) -> int:
        return len(self.candidates)

    def apply(self, images, t):
        return images[..., self.candidates.inv_src[t]] ^ self.candidates.inv_xor[t]


class WholeImageVariants(Variants):
    """A symmetry of the image (code g: rotate by 90° g mod 4 times, then mirror left-right if
    g >= 4, as a block's symmetry in block.symmetry_table; only the four that keep a non-square
    shape), a negation (``whole``: of every component, or none; ``per-component``: of any
    subset of the components, 2^C), and (RGB) a colour order."""

    def __init__(self, channels: int, square: bool, per_image: bool, negations: str = "whole"):
        self.symmetries = tuple(range(8)) if square else (0, 2, 4, 6)
        self.orders = PERMUTATIONS if channels == 3 else np.arange(channels)[None]
        bits = np.arange(2**channels if negations == "per-component" else 2)
        self.negations = ((bits[:, None] >> np.arange(channels)) & 1) if negations == "per-component" else np.repeat(bits[:, None], channels, 1)
        self.per_image = per_image

    def __len__(self) -> int:
        return len(self.symmetries) * len(self.negations) * len(self.orders)

    def apply(self, images, t):
        g, negate, order = np.unravel_index(t, (len(self.symmetries), len(self.negations), len(self.orders)))
        g = self.symmetries[g]
        out = np.rot90(images, g % 4, axes=(1, 2))
        out = out[:, :, ::-1] if g >= 4 else out
        out = out[..., self.orders[order]]
        return np.ascontiguousarray(out ^ (255 * self.negations[negate]).astype(np.uint8))
