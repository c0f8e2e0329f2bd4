"""The pixel cipher with a key per image, computed on colour planes instead of by a gather.

Every permutation of three components is ``s01^a · s12^b · s01^c`` for swaps ``s01`` (R, G)
and ``s12`` (G, B) and bits (a, b, c): so a pixel's colour shuffle by code k is at most three
swaps, and the shuffle of a whole image is three passes of a *conditional swap* over its
contiguous colour planes,

    t = (p_i ^ p_j) & m;  p_i ^= t;  p_j ^= t        (m = 0xFF where the pixel swaps, else 0)

with the masks m looked up from the codes. That is byte for byte the gather of
:class:`~.transform.GatherXor` (``tests/test_planes.py`` holds them equal for every code and
direction), at about a third of its cost for 224 px photos (0.1 ms an image against 0.3;
bench/cipher_throughput.py): the gather builds an 8-byte index per component and reads the
image through it, where these passes are SIMD over bytes.
OpenCV splits and merges the planes and looks the masks up (``cv2.split``/``merge``/``LUT``);
it is imported only for RGB images, the only ones with a shuffle.

Decryption is the same swaps in reverse order (each swap is its own inverse), then the NP XOR.
"""

from __future__ import annotations

import functools
import itertools
import threading

import numpy as np

from .base import PERMUTATIONS

SWAPS = ((0, 1), (1, 2), (0, 1))  # the network's three stages: which two planes each may swap


def _program(code: int) -> tuple[int, int, int]:
    """The swap bits (a, b, c) whose network, applied in order, is code ``code``'s shuffle
    (output component j takes input component PERMUTATIONS[code][j])."""
    for bits in itertools.product((0, 1), repeat=3):
        order = [0, 1, 2]
        for bit, (i, j) in zip(bits, SWAPS):
            if bit:
                order[i], order[j] = order[j], order[i]
        if order == list(PERMUTATIONS[code]):
            return bits
    raise AssertionError(f"no swap program for code {code}")  # unreachable: the three swaps generate S3


@functools.lru_cache(maxsize=1)
def stage_tables() -> np.ndarray:
    """(3, 256) uint8: row s maps a code — or any byte congruent to it mod 6, so raw key bytes
    need no reduction (keys/draws.py, ``reduce=False``) — to stage s's mask byte. (Three
    lookups measured faster than one lookup of the program and shifts to spread its bits.)"""
    programs = np.array([_program(k) for k in range(len(PERMUTATIONS))], dtype=np.uint8)
    out = np.ascontiguousarray(programs[np.arange(256) % len(PERMUTATIONS)].T * np.uint8(255))
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=1)
def _cv2():
    import cv2

    cv2.setNumThreads(0)  # no thread pool: the encrypting process may fork workers later
    return cv2


class _Scratch(threading.local):
    """Per thread (a Dask worker encrypts in several), the planes of the last batch's shape:
    reused, because fresh ones cost a page fault per 4 KiB — more than the work itself."""

    shape: tuple[int, int] | None = None
    arrays: list[np.ndarray] = []

    def get(self, rows: int, w: int) -> list[np.ndarray]:
        if self.shape != (rows, w):
            self.shape, self.arrays = (rows, w), [np.empty((rows, w), np.uint8) for _ in range(8)]
        return self.arrays


_scratch = _Scratch()


def apply(images: np.ndarray, flips: list[np.ndarray], codes: np.ndarray | None, inverse: bool, out: np.ndarray) -> None:
    """Encrypt (``inverse``: decrypt) N x H x W x C uint8 ``images`` into ``out`` with one key
    per image: ``flips`` C arrays of 0/1 (N, H·W) — [P]'s NP bits per component — and
    ``codes`` (N, H·W) colour codes mod 6, or None for no shuffle."""
    n, h, w, c = images.shape
    rows = n * h
    work = _scratch.get(rows, w)
    masks = work[:c]
    for f, m in zip(flips, masks):
        np.negative(f.reshape(rows, w), out=m, dtype=np.uint8)  # 0/1 -> 0x00/0xFF
    if c == 1:
        np.bitwise_xor(images.reshape(rows, w), masks[0], out=out.reshape(rows, w))
        return
    cv2 = _cv2()
    flat = np.ascontiguousarray(images).reshape(rows, w, c)
    if codes is None:
        merged = cv2.merge(masks, out.reshape(rows, w, c))  # the interleaved mask, in place
        np.bitwise_xor(merged, flat, out=merged)
        return
    planes = work[3:6]
    cv2.split(flat, planes)
    if not inverse:
        for p, m in zip(planes, masks):
            p ^= m
    codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(rows, w)
    table = stage_tables()
    t, m = work[6], work[7]
    for s in reversed(range(3)) if inverse else range(3):
        i, j = SWAPS[s]
        cv2.LUT(codes, table[s], m)
        np.bitwise_xor(planes[i], planes[j], out=t)
        t &= m
        planes[i] ^= t
        planes[j] ^= t
    if inverse:
        for p, m in zip(planes, masks):
            p ^= m
    cv2.merge(planes, out.reshape(rows, w, c))
