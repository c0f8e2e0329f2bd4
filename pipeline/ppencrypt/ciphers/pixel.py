"""The paper's pixel-based cipher ([P], steps 2 and 3) and its NP-only variant.

Step 2, NP transform: per pixel and component, p -> p XOR 255 where the key bit r = 1.
Step 3, colour shuffle: each pixel's (R, G, B) is permuted by a code in 0..5.
Grayscale images get step 2 only. Each method draws its bits from its own labels
(docs/cipher.md): one stream per component for the NP bits ([P]'s K_R, K_G, K_B), one for
the colour codes ([P]'s K_s). docs/paper.md restates [P]'s definitions.
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from ..keys.derive import KeyRing
from ..keys.draws import Draw
from . import planes
from .base import PERMUTATIONS, ImageCipher, PixelGroup, register
from .transform import GatherXor

CODE_NAMES = ("RGB", "RBG", "GRB", "GBR", "BRG", "BGR")
NP_PURPOSE = "np-bits-c{}"
CODES_PURPOSE = "colour-codes"


# Output component c of a pixel with code k takes input component c + OFFSETS[k][c].
OFFSETS = (PERMUTATIONS - np.arange(3)).astype(np.intp)  # intp: np.take would convert any other index type
# The code of each code's inverse permutation: undoing code k is shuffling by INVERSE[k].
INVERSE = np.array([next(j for j in range(6) if (PERMUTATIONS[j][PERMUTATIONS[k]] == np.arange(3)).all()) for k in range(6)])
IMAGE_BATCH_BYTES = 1 << 20  # image-scope keys are built and applied this many image bytes at a time (in cache)


@functools.lru_cache(maxsize=8)
def _positions(pixels: int, channels: int) -> np.ndarray:
    """0..D-1 as (pixels, channels) intp, made once per shape (read-only)."""
    out = np.arange(pixels * channels, dtype=np.intp).reshape(pixels, channels)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class PixelKey:
    """A per-position key: ``flips`` (..., H, W, C) of 0/1 and ``codes`` (..., H, W) in 0..5,
    or None for no colour shuffle. A leading axis, when present, is one key per image."""

    flips: np.ndarray
    codes: np.ndarray | None = None

    def gather_xor(self, inverse: bool = False) -> GatherXor:
        """Encryption (or, with ``inverse``, decryption) as one gather and one XOR: NP on the
        input, then the shuffle; decryption shuffles back with the inverse codes, then NP."""
        *lead, h, w, c = self.flips.shape
        # one pass: 0/1 -> 0/255 (flips made by hand, e.g. an audit's candidates, may be wider than uint8)
        flips = self.flips.reshape(*lead, h * w * c).astype(np.uint8, copy=False)
        mask = np.multiply(flips, np.uint8(255), dtype=np.uint8)
        if self.codes is None:
            return GatherXor(None, mask)
        codes = self.codes.reshape(*lead, h * w)
        src = np.take(OFFSETS, INVERSE[codes] if inverse else codes, axis=0)
        src += _positions(h * w, c)
        src = src.reshape(*lead, h * w * c)
        if not lead and not inverse:  # one shared transform: gather its mask once, XOR after
            return GatherXor(src, mask[src])
        return GatherXor(src, mask, before=not inverse)

    def apply(self, images: np.ndarray) -> np.ndarray:
        return self.gather_xor().apply(images)

    def invert(self, images: np.ndarray) -> np.ndarray:
        return self.gather_xor(inverse=True).apply(images)


class GatherXorCipher(ImageCipher):
    """A method whose per-image transform is a :class:`GatherXor`. Dataset-scope transforms
    are built once per (key, shape) and cached; image-scope ones are built and applied a
    batch of about IMAGE_BATCH_BYTES at a time, so neither keys nor indices outgrow the cache."""

    def __init__(self, **params):
        super().__init__(**params)
        self._cache: dict = {}

    @abstractmethod
    def build(self, ring: KeyRing | None, shape: tuple[int, int, int], indices: list | None) -> GatherXor:
        """The transform for one shared key (``indices`` None) or one per index."""

    def build_inverse(self, ring: KeyRing | None, shape: tuple[int, int, int], indices: list | None) -> GatherXor:
        """The inverse of :meth:`build`'s transform; a method that knows it directly says so."""
        return self.build(ring, shape, indices).inverse()

    def _transform(self, ring, shape, indices, inverse: bool) -> GatherXor:
        return (self.build_inverse if inverse else self.build)(ring, shape, indices)

    def apply(self, images, ring, indices, inverse):
        shape = tuple(int(s) for s in images.shape[1:])
        if ring is None or ring.scope != "image":
            key = (ring, shape, inverse)
            if key not in self._cache:
                self._cache[key] = self._transform(ring, shape, None, inverse)
            return self._cache[key].apply(images)
        indices = list(indices)
        step = max(1, IMAGE_BATCH_BYTES // max(1, images[0].size if len(images) else 1))
        out = np.empty_like(images)
        for a in range(0, len(images), step):
            self.apply_image_keys(images[a : a + step], ring, shape, indices[a : a + step], inverse, out[a : a + step])
        return out

    def apply_image_keys(self, images, ring, shape, indices, inverse: bool, out: np.ndarray) -> None:
        """A batch under image-scope keys, one per index, into ``out``; a method with a faster
        way than building the batch's transforms says so."""
        out[...] = self._transform(ring, shape, indices, inverse).apply(images)


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

    def draws(self, shape) -> tuple[Draw, ...]:
        """[P]'s K_R, K_G, K_B (a bit per pixel each), then K_s (a colour code per pixel)."""
        h, w, c = shape
        bits = tuple(Draw(NP_PURPOSE.format(ch), "bits", h * w) for ch in range(c))
        return bits + ((Draw(CODES_PURPOSE, "integers", h * w, 6),) if self._shuffles(c) else ())

    def _shuffles(self, channels: int) -> bool:
        return self.shuffle_colours and channels == 3

    def pixel_keys(self, ring: KeyRing, shape, indices=None) -> PixelKey:
        """The keys of the images ``indices`` (None: the shared key), one row per image."""
        ring = self._bound(ring, shape)
        h, w, c = shape
        drawn = ring.draws(self.draws(shape), indices)
        flips = np.stack(drawn[:c], axis=-1).reshape(-1, h, w, c)
        return PixelKey(flips, drawn[c].reshape(-1, h, w) if self._shuffles(c) else None)

    def pixel_key(self, ring: KeyRing, shape, index=None) -> PixelKey:
        """The key of one image (or the shared key when ``index`` is None)."""
        keys = self.pixel_keys(ring, shape, None if index is None else [index])
        return PixelKey(keys.flips[0], None if keys.codes is None else keys.codes[0])

    def apply_image_keys(self, images, ring, shape, indices, inverse, out):
        """The same bytes as the batch's :class:`PixelKey` transforms, on colour planes
        (planes.py): no per-component index is built."""
        c = shape[2]
        drawn = self._bound(ring, shape).draws(self.draws(shape), indices, reduce=False)
        planes.apply(images, drawn[:c], drawn[c] if self._shuffles(c) else None, inverse, out)

    def build(self, ring, shape, indices):
        if indices is None:
            return self.pixel_key(ring, shape).gather_xor()
        return self.pixel_keys(ring, shape, indices).gather_xor()

    def build_inverse(self, ring, shape, indices):
        if indices is None:
            return self.pixel_key(ring, shape).gather_xor(inverse=True)
        return self.pixel_keys(ring, shape, indices).gather_xor(inverse=True)


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
