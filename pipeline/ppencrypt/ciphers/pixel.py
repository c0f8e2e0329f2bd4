"""The paper's pixel-based cipher ([P], steps 2 and 3) and its NP-only variant.

Step 2, NP transform: per pixel and component, p -> p XOR 255 where the key bit r = 1.
Step 3, colour shuffle: each pixel's (R, G, B) is permuted by a code in 0..5.
Grayscale images get step 2 only. Each method draws its bits from its own labels
(docs/cipher.md): one stream per component for the NP bits ([P]'s K_R, K_G, K_B), one for
the colour codes ([P]'s K_s). docs/paper.md restates [P]'s definitions.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from ..keys.derive import KeyRing
from .base import PERMUTATIONS, ImageCipher, PixelGroup, register
from .transform import GatherXor

CODE_NAMES = ("RGB", "RBG", "GRB", "GBR", "BRG", "BGR")
NP_PURPOSE = "np-bits-c{}"
CODES_PURPOSE = "colour-codes"


@dataclass(frozen=True)
class PixelKey:
    """A per-position key: ``flips`` (..., H, W, C) of 0/1 and ``codes`` (..., H, W) in 0..5,
    or None for no colour shuffle. A leading axis, when present, is one key per image."""

    flips: np.ndarray
    codes: np.ndarray | None = None

    def gather_xor(self) -> GatherXor:
        *lead, h, w, c = self.flips.shape
        flips = self.flips.reshape(*lead, h * w, c).astype(np.uint8)
        if self.codes is None:
            return GatherXor(None, (flips * np.uint8(255)).reshape(*lead, h * w * c))
        perm = PERMUTATIONS[self.codes.reshape(*lead, h * w)]  # (..., HW, 3)
        src = np.arange(h * w, dtype=np.int32)[:, None] * np.int32(c) + perm
        # NP comes first, so output component c carries the flip bit of input component perm[c].
        xor = np.take_along_axis(flips, perm, axis=-1) * np.uint8(255)
        return GatherXor(src.reshape(*lead, h * w * c), xor.reshape(*lead, h * w * c))

    def apply(self, images: np.ndarray) -> np.ndarray:
        return self.gather_xor().apply(images)

    def invert(self, images: np.ndarray) -> np.ndarray:
        return self.gather_xor().inverse().apply(images)


class GatherXorCipher(ImageCipher):
    """A method whose per-image transform is a :class:`GatherXor`. Dataset-scope transforms
    are built once per (key, shape) and cached; image-scope ones are built per batch."""

    def __init__(self, **params):
        super().__init__(**params)
        self._cache: dict = {}

    @abstractmethod
    def build(self, ring: KeyRing | None, shape: tuple[int, int, int], indices: list | None) -> GatherXor:
        """The transform for one shared key (``indices`` None) or one per index."""

    def _transform(self, ring, shape, indices, inverse: bool) -> GatherXor:
        shape = tuple(int(s) for s in shape)
        if ring is not None and ring.scope == "image":
            t = self.build(ring, shape, list(indices))
            return t.inverse() if inverse else t
        key = (ring, shape, inverse)
        if key not in self._cache:
            t = self.build(ring, shape, None)
            self._cache[key] = t.inverse() if inverse else t
        return self._cache[key]

    def apply(self, images, ring, indices, inverse):
        return self._transform(ring, images.shape[1:], indices, inverse).apply(images)


class PixelCipher(GatherXorCipher):
    family = "pixel"
    shuffle_colours: bool

    def key_space_bits(self, shape) -> float:
        """Per pixel C NP bits and, with the colour shuffle, one of 6 orders: n·(C + log2 6)
        for n = H·W pixels ([P]: 2^(3n)·6^n, 5,719 bits for 32×32 RGB)."""
        h, w, c = shape
        return h * w * (c + (math.log2(6) if self._shuffles(c) else 0.0))

    def pixel_group(self, channels: int) -> PixelGroup:
        return PixelGroup.generated(channels, negates=True, permutes=self._shuffles(channels))

    def purposes(self, channels: int) -> tuple[str, ...]:
        bits = tuple(NP_PURPOSE.format(c) for c in range(channels))
        return bits + ((CODES_PURPOSE,) if self._shuffles(channels) else ())

    def _shuffles(self, channels: int) -> bool:
        return self.shuffle_colours and channels == 3

    def pixel_key(self, ring: KeyRing, shape, index=None) -> PixelKey:
        """The key of one image (or the shared key when ``index`` is None)."""
        ring = self._bound(ring, shape)
        h, w, c = shape
        flips = np.stack([ring.stream(NP_PURPOSE.format(ch), index).bits(h * w) for ch in range(c)], axis=-1)
        codes = ring.stream(CODES_PURPOSE, index).integers(h * w, 6) if self._shuffles(c) else None
        return PixelKey(flips.reshape(h, w, c), None if codes is None else codes.reshape(h, w))

    def build(self, ring, shape, indices):
        if indices is None:
            return self.pixel_key(ring, shape).gather_xor()
        keys = [self.pixel_key(ring, shape, i) for i in indices]
        codes = None if keys[0].codes is None else np.stack([k.codes for k in keys])
        return PixelKey(np.stack([k.flips for k in keys]), codes).gather_xor()


@register
class PE(PixelCipher):
    name = "pe"
    summary = "[P] steps 2+3: NP transform per pixel and component, then per-pixel colour shuffle"
    shuffle_colours = True


@register
class NP(PixelCipher):
    name = "np"
    summary = "[P] step 2 only: NP transform per pixel and component"
    shuffle_colours = False


@register
class Plain(ImageCipher):
    name = "plain"
    summary = "no encryption (a baseline); recorded as such in the manifest"
    family = "none"
    needs_key = False
    scopes = ()

    def key_space_bits(self, shape) -> float:
        return 0.0

    def pixel_group(self, channels: int) -> PixelGroup:
        return PixelGroup.generated(channels, negates=False, permutes=False)

    def apply(self, images, ring, indices, inverse):
        return np.array(images, copy=True)
