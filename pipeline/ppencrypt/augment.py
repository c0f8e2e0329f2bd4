"""Augmentation in the client: K augmented copies of the train split, made before encryption
(``ppencrypt dataset --copies K``).

The client holds the key, so it may augment the plain images and encrypt the results; the
server then trains on ciphertext that needs no augmentation of its own ([P]'s "augmentation in
the client", Table 3). Under a dataset-scope key this matters most: shifting *ciphertext*
moves the mask against the image, which stalls learning, while a copy shifted before
encryption lies under the mask in its usual place (docs/results.md measures both).

Each copy is the cloud's own crop + flip (pptrain's ``--augment crop,flip``): a shift by up to
``pad`` pixels each way and a horizontal flip with probability 1/2, drawn per image. The draws
of copy k come from ``numpy.random.default_rng([seed, k])`` — dy for every image of the split,
then dx, then the flip bits, as ``pptrain.augment.BatchAugment.draw`` draws them — and image j
of the split takes entry j, so the output depends on the input, key and options only, never on
``--workers`` (tested). The border is :data:`FILL`: the cloud pads with 127.5, the fixed point
of the NP transform (255 - 127.5), which a uint8 image cannot hold; 128 encrypts under NP to
128 or 127, within 0.5 of the cloud's border under every key, where black would encrypt to a
key-dependent 0/255 border.

numpy only: pipeline/ never imports torch or the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .formats.manifest import AUGMENT_OPS as OPS  # what each copy applies, in pptrain's names

FILL = 128  # the uint8 nearest the cloud's 127.5 border (above)
SPLIT = "train"  # the split that gets the copies; the others are encrypted as they are


@dataclass(frozen=True)
class Draws:
    """One copy's random choices, one entry per image of the split."""

    dy: np.ndarray  # int64, -pad..pad: the crop window's vertical offset
    dx: np.ndarray  # int64: its horizontal offset
    flip: np.ndarray  # bool: mirror left-right

    def __getitem__(self, part: slice) -> Draws:
        return Draws(self.dy[part], self.dx[part], self.flip[part])

    @classmethod
    def joined(cls, parts: list[Draws]) -> Draws:
        """The draws of consecutive runs of samples, as one (a shard's, cut from its pieces)."""
        return cls(*(np.concatenate([getattr(d, f) for d in parts]) for f in ("dy", "dx", "flip")))


def draws(count: int, pad: int, seed: int, copy: int) -> Draws:
    """The draws of copy ``copy`` for a split of ``count`` images."""
    rng = np.random.default_rng([seed, copy])
    dy = rng.integers(-pad, pad + 1, count)
    dx = rng.integers(-pad, pad + 1, count)
    return Draws(dy, dx, rng.random(count) < 0.5)


def shift_flip(images: np.ndarray, d: Draws, fill: int = FILL) -> np.ndarray:
    """N x H x W x C ``images`` shifted and flipped as ``d`` says: output pixel (i, j) is input
    pixel (i + dy, j + dx), mirrored left-right after the shift where ``flip``, and ``fill``
    where the window leaves the image. One fancy-indexing gather for the batch."""
    n, h, w, _ = images.shape
    i = np.arange(h)[None, :] + d.dy[:, None]  # N x H source rows
    j = np.arange(w)[None, :] + d.dx[:, None]  # N x W source columns
    inside = ((i >= 0) & (i < h))[:, :, None] & ((j >= 0) & (j < w))[:, None, :]
    j = np.where(d.flip[:, None], w - 1 - j, j)
    out = images[np.arange(n)[:, None, None], i.clip(0, h - 1)[:, :, None], j.clip(0, w - 1)[:, None, :]]
    out[~inside] = fill
    return out


def check(copies: int, pad: int, shape: tuple[int, int, int]) -> str | None:
    """What is wrong with these options for images of ``shape`` (H, W, C), or None."""
    if copies < 1:
        return f"--copies must be at least 1, not {copies}"
    if pad < 0 or pad >= min(shape[:2]):
        return f"--pad {pad} must be in 0..{min(shape[:2]) - 1} for {shape[1]}x{shape[0]} images"
    return None
