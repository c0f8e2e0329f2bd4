"""JPEG files read without Pillow where Pillow would add nothing: the frame header of a plain
JPEG from its marker segments, and libjpeg-turbo's scaled decode (simplejpeg).

Pillow parses a JPEG's markers in Python and reads its EXIF block to learn what this module
reads in a few microseconds; for a 500x375 photo that was a tenth of the CPU time of the whole
``--size`` decode, paid twice (the ImageFolder scan, then the worker). A file this module calls
plain is one Pillow would open as an upright ``JPEG`` (not ``MPO``) of mode ``L`` or ``RGB``:
anything else — an EXIF block (it may rotate the image), an MPF block, four components, a
segment that does not parse — is left to Pillow, so both routes always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SOI, SOS, APP1, APP2 = 0xD8, 0xDA, 0xE1, 0xE2
# Frame headers (SOF0-3, 5-7, 9-11, 13-15): 0xC0-0xCF but DHT, JPG and DAC
FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length
HEADER_BYTES = 1 << 16  # what a probe reads: a frame header further in is left to Pillow


@dataclass(frozen=True, kw_only=True)
class Frame:
    height: int
    width: int
    components: int  # 1: grayscale (Pillow's L), 3: colour (RGB)


def plain_frame(data: bytes) -> Frame | None:
    """The frame header of a plain JPEG (see the module's docstring), or None."""
    if data[:2] != b"\xff\xd8":
        return None
    frame, i, end = None, 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in STANDALONE:
            i += 2
            continue
        if marker == SOS:
            return frame
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        body = data[i + 4 : i + 2 + length]
        if length < 2 or len(body) != length - 2 or marker == SOI:
            return None
        if (marker == APP1 and body.startswith(b"Exif\x00\x00")) or (marker == APP2 and body.startswith(b"MPF\x00")):
            return None
        if marker in FRAMES:
            if frame is not None or len(body) < 6:
                return None
            height, width, components = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
            if height == 0 or width == 0 or components not in (1, 3):
                return None
            frame = Frame(height=height, width=width, components=components)
        i += 2 + length
    return None


def jpeg_scaled(data: bytes, gray: bool, size: int) -> tuple[np.ndarray, int]:
    """A JPEG decoded at the smallest M/8 scale that keeps both sides at least ``size`` (full
    scale when a side is shorter), and M. Only whole pixels are kept: libjpeg-turbo rounds a side
    up, and that last pixel stands for less than 8/M source pixels, so pixel j of what is
    returned is exactly source pixels [8j/M, 8(j+1)/M). Raises ValueError for a damaged file
    (``strict``: a truncated one too, as Pillow does)."""
    import simplejpeg  # a worker's first JPEG pays the import, not every command

    height, width = simplejpeg.decode_jpeg_header(data)[:2]
    image = simplejpeg.decode_jpeg(data, "GRAY" if gray else "RGB", min_height=size, min_width=size, strict=True)
    m = next(m for m in range(1, 9) if -(-width * m // 8) == image.shape[1])
    return image.reshape(*image.shape[:2], -1)[: height * m // 8, : width * m // 8], m
