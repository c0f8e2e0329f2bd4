"""The rules by which ``--size N`` makes a source image N x N, named in the manifest
(``image.resize_rule``) so that a dataset is always reproduced, and its queries encrypted, by
the rule that made it.

* ``pillow-bicubic`` — every dataset written before the field existed (a manifest without it):
  full decode (a JPEG of 1024 px or more: Pillow's ``draft`` to at least 2 N), the shorter side
  resized to N with Pillow's antialiased bicubic, the centre N x N cropped (imageio.py).
* ``dct-linear`` — the default since issue 21. A JPEG is decoded by libjpeg-turbo (jpeg.py) at the
  smallest of its M/8 DCT scales (M = 1..8) that keeps both sides at least N: the inverse DCT
  itself does the antialiasing, and a 500x375 photo is decoded at 5/8 (313x235) for N = 224.
  The centre square of the decoded image (integer offsets, the extra pixel on the bottom or
  right) is then shrunk by an integer box average while it is at least twice N, and resized
  to N x N by OpenCV's ``INTER_LINEAR_EXACT``. Other images (and JPEGs that need Pillow: an
  EXIF rotation, CMYK) are decoded by Pillow (a JPEG at its power-of-two ``draft`` scale) and
  take the same square, box and linear steps.

Why these libraries: both compute in integers and were checked to give the same bytes whatever
SIMD code the CPU dispatches to — libjpeg-turbo's scaled decode with its SIMD off
(``JSIMD_FORCENONE``) and OpenCV's ``INTER_LINEAR_EXACT`` (documented bit-exact) with AVX/AVX2
off (``OPENCV_CPU_DISABLE``); tests/test_resize.py repeats both checks. OpenCV's ``warpAffine``,
which would have placed the square to the sub-pixel, gives different bytes with AVX2 on and off
and is not used. The versions are pinned in pyproject.toml: a new version is a new rule. Not
checked: CPUs of another architecture (ARM's NEON paths). Against Pillow's bicubic over the
same source square the rule stays above 30 dB PSNR per photo, 35-38 dB on average (its linear
step is softer); it costs 0.39x the CPU time per 500x375 photo (bench/photo_decode.py).
"""

from __future__ import annotations

import numpy as np

BICUBIC = "pillow-bicubic"  # the rule of a manifest without image.resize_rule
DCT_LINEAR = "dct-linear"
DEFAULT = DCT_LINEAR  # a new dataset's
RULES = (BICUBIC, DCT_LINEAR)


class Size(int):
    """``--size N`` with the rule that resizes to it: an int everywhere a size is compared or
    shown, so the rule travels with the size to every decoder (worker processes, dask tasks)."""

    rule: str

    def __new__(cls, n: int, rule: str):
        if rule not in RULES:
            raise ValueError(f"unknown resize rule {rule!r} (known: {', '.join(RULES)})")
        self = super().__new__(cls, n)
        self.rule = rule
        return self

    def __reduce__(self):
        return (Size, (int(self), self.rule))

    # No __repr__ of its own: shapes hold a Size, and what writes them (npy headers, labels) must see a number


def sized(n: int | None, rule: str | None) -> Size | None:
    """``--size`` under ``rule`` (None: the rule of a manifest without one)."""
    return None if n is None else Size(n, rule or BICUBIC)


def preload(size: Size | None) -> None:
    """Import what decoding under ``size``'s rule needs, in the process that forks the
    decoding workers, before it forks them: each worker then starts with it loaded instead of
    paying the import itself (OpenCV's is 0.17 s of CPU per process)."""
    if size is not None and size.rule == DCT_LINEAR:
        import cv2
        import simplejpeg  # noqa: F401

        cv2.setNumThreads(0)  # no pool of its own; the OpenBLAS it loads stops its threads at a fork (pthread_atfork)


def rule_of(size: int | None) -> str:
    """A plain int is the rule of the datasets written before rules were named."""
    return getattr(size, "rule", BICUBIC)


def square_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """``dct-linear``'s crop of an H x W image: (top, left, side, factor) — the centre square,
    whole pixels (the extra one bottom or right), its side a multiple of the box factor, which
    is side // size when the side is at least twice ``size``, else 1."""
    side = min(height, width)
    factor = side // size if side >= 2 * size else 1
    side -= side % factor
    return (height - side) // 2, (width - side) // 2, side, factor


def square(image: np.ndarray, size: int) -> np.ndarray:
    """``dct-linear``'s resize of a decoded H x W x C image: the square of :func:`square_box`,
    its box average by the factor, then linear to size x size."""
    h, w, c = image.shape
    top, left, side, factor = square_box(h, w, size)
    sq = image[top : top + side, left : left + side]
    if factor > 1:
        sq = _box(sq, factor)
    if sq.shape[0] == size:
        return np.ascontiguousarray(sq)
    import cv2  # only --size needs it

    cv2.setNumThreads(0)  # no thread pool: a process that later forks workers must hold no threads
    out = cv2.resize(np.ascontiguousarray(sq), (size, size), interpolation=cv2.INTER_LINEAR_EXACT)
    return out.reshape(size, size, c)


def _box(sq: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each factor x factor block, rounded half up, in integers (the same bytes on
    every machine); strided adds, 20x faster than numpy's sum over two axes of a 5-D view."""
    rows = sq[0::factor].astype(np.uint16 if factor * 255 < 1 << 16 else np.uint32)
    for i in range(1, factor):
        rows += sq[i::factor]
    total = rows[:, 0::factor].astype(np.uint32)
    for j in range(1, factor):
        total += rows[:, j::factor]
    return ((total + factor * factor // 2) // (factor * factor)).astype(np.uint8)
