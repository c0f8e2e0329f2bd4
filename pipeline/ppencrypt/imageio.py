"""Decoding source images into uint8 arrays by one documented rule (docs/formats.md).

Mode rule — what every image becomes before encryption:

* The dataset is grayscale (1 channel) when every image is grayscale (modes 1, L, LA, I, I;16*,
  F); otherwise it is RGB (3 channels) and grayscale images are replicated into R = G = B.
* Alpha (RGBA, LA, PA, P with transparency) is composited onto white, as a viewer shows it.
* 16- and 32-bit integer images (I;16*, I) are scaled to 8 bits by round(v / 257) after
  clipping to 0..65535; 32-bit float images (F) are clipped to 0..255 and rounded.
* Palette, CMYK, YCbCr, LAB and HSV images are converted to RGB by Pillow.
* The EXIF orientation tag is applied, so a photo is encrypted upright.
* ``--size N`` makes every image N x N by the dataset's resize rule (resize.py, recorded in the
  manifest): ``dct-linear`` for a new dataset — a JPEG decoded at a reduced DCT scale, the centre
  square resized linearly — and ``pillow-bicubic`` for one written before rules were named: the
  shorter side resized to N (bicubic, antialiased) and the centre N x N cropped. Under
  ``pillow-bicubic``, large sources (at least LARGE pixels on the shorter side, like a phone's
  photos) take two shortcuts: a JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, in the DCT
  domain: Pillow's ``draft``) to no less than 2 N, and a resize by 2x or more starts with an
  integer box reduction (``reducing_gap``); against a full decode and bicubic they stay above
  48 dB PSNR (tests/test_imageio.py).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadImageError
from .jpeg import HEADER_BYTES, jpeg_scaled, plain_frame
from .resize import BICUBIC, DCT_LINEAR, rule_of, square

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
ROTATING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_EXIF_ORIENTATION = 0x0112
LARGE = 1024  # pixels on the shorter side from which --size takes the shortcuts above
REDUCING_GAP = 2.0  # a large source's resize: integer box reduction first when shrinking by this factor or more
DRAFT_FACTOR = 2  # a large JPEG is decoded at a reduced scale to no less than this times --size
# Errors Pillow raises for files that are not images or are damaged; anything else is a bug.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Probe:
    """What the header says: enough to choose channels and check sizes without decoding."""

    channels: int
    width: int
    height: int


def channels_of_mode(mode: str) -> int:
    return 1 if mode in GRAY_MODES else 3


def _describe(err: BaseException) -> str:
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, UnidentifiedImageError):
        return "not an image file (Pillow cannot identify it)"
    if isinstance(err, Image.DecompressionBombError):
        return "image too large (Pillow's decompression-bomb limit)"
    return f"truncated or corrupt image ({type(err).__name__})"


def probe_image(path: str, name: str) -> Probe:
    """Read the header of ``path``; ``name`` is how errors refer to the file."""
    try:
        if os.path.getsize(path) == 0:
            raise BadImageError(name, "empty file (0 bytes)")
        with open(path, "rb") as f:
            frame = plain_frame(f.read(HEADER_BYTES))  # a plain JPEG: no Pillow (jpeg.py)
        if frame is not None:
            _bomb_check(frame.width, frame.height)
            return Probe(frame.components, frame.width, frame.height)
        with Image.open(path) as img:
            w, h = img.size
            if img.getexif().get(_EXIF_ORIENTATION) in ROTATING_ORIENTATIONS:
                w, h = h, w
            return Probe(channels_of_mode(img.mode), w, h)
    except BadImageError:
        raise
    except DECODE_ERRORS as e:
        raise BadImageError(name, _describe(e)) from None


def _to_8bit(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        v = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.rint(np.clip(v, 0, 65535) / 257).astype(np.uint8), "L")
    if img.mode == "F":
        v = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.rint(np.clip(v, 0, 255)).astype(np.uint8), "L")
    if img.mode == "1":
        return img.convert("L")
    return img


def _flatten_alpha(img: Image.Image) -> Image.Image:
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode not in ALPHA_MODES:
        return img
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    return flat.convert("L") if img.mode in ("LA", "La") else flat


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=REDUCING_GAP if min(w, h) >= LARGE else None)
    left, top = round((nw - size) / 2), round((nh - size) / 2)
    return img.crop((left, top, left + size, top + size))


def convert(img: Image.Image, channels: int, size: int | None) -> np.ndarray:
    """A decoded PIL image -> H x W x channels uint8, by the module's rule."""
    img = _flatten_alpha(_to_8bit(img))
    img = img.convert("L" if channels == 1 else "RGB")
    if size is not None:
        img = resize_center_crop(img, size)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def load_image(path: str, name: str, channels: int, size: int | None) -> np.ndarray:
    """``size``: an int, or a resize.Size carrying the dataset's resize rule."""
    if os.path.getsize(path) == 0:
        raise BadImageError(name, "empty file (0 bytes)")
    if size is not None and rule_of(size) != BICUBIC:  # the rule may hand the JPEG's bytes to its own decoder
        try:
            with open(path, "rb") as f:
                return _decode(io.BytesIO(f.read()), name, channels, size)
        except OSError as e:
            raise BadImageError(name, _describe(e)) from None
    return _decode(path, name, channels, size)


def decode_image(data: bytes, name: str, channels: int | None, size: int | None) -> np.ndarray:
    """An image file's bytes (a tar member, a parquet cell) by the same rule as load_image;
    ``channels`` None: the image's own (1 for a grayscale mode, else 3)."""
    if not data:
        raise BadImageError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, channels, size)


def _decode(fp, name: str, channels: int | None, size: int | None) -> np.ndarray:
    try:
        return DECODERS[BICUBIC if size is None else rule_of(size)](fp, channels, size)
    except BadImageError:
        raise
    except DECODE_ERRORS as e:
        raise BadImageError(name, _describe(e)) from None


def _decode_bicubic(fp, channels: int | None, size: int | None) -> np.ndarray:
    with Image.open(fp) as img:
        if channels is None:
            channels = channels_of_mode(img.mode)
        if size is not None and img.format == "JPEG" and min(img.size) >= LARGE:  # square: orientation does not matter
            img.draft(img.mode, (DRAFT_FACTOR * size, DRAFT_FACTOR * size))
        img.load()
        img = ImageOps.exif_transpose(img)
        return convert(img, channels, size)


def _decode_dct_linear(fp: io.BytesIO, channels: int | None, size: int) -> np.ndarray:
    # libjpeg-turbo's scaled decode for a plain JPEG (jpeg.py: what Pillow would open as an
    # upright JPEG of mode L or RGB) to as many channels or more; the same bytes whichever of
    # jpeg.py or Pillow found it plain
    data = fp.getvalue()
    frame = plain_frame(data)
    if frame is not None:
        _bomb_check(frame.width, frame.height)
        if channels is None or channels >= frame.components:
            return square(jpeg_scaled(data, (channels or frame.components) == 1, size)[0], size)
    with Image.open(fp) as img:
        if channels is None:
            channels = channels_of_mode(img.mode)
        upright = img.getexif().get(_EXIF_ORIENTATION) in (None, 1)
        if img.format == "JPEG" and img.mode in ("RGB", "L") and channels >= channels_of_mode(img.mode) and upright:
            return square(jpeg_scaled(data, channels == 1, size)[0], size)
        if img.format == "JPEG":
            img.draft(img.mode, (size, size))  # the largest power-of-two reduction keeping both sides >= size
        img.load()
        return square(convert(ImageOps.exif_transpose(img), channels, None), size)


def _bomb_check(width: int, height: int) -> None:
    """Pillow's decompression-bomb limit, for a file Pillow does not open."""
    if Image.MAX_IMAGE_PIXELS and width * height > 2 * Image.MAX_IMAGE_PIXELS:
        raise Image.DecompressionBombError(f"{width * height} pixels")


DECODERS = {BICUBIC: _decode_bicubic, DCT_LINEAR: _decode_dct_linear}


def _resize_bicubic(images: np.ndarray, size: int) -> np.ndarray:
    mode = "L" if images.shape[-1] == 1 else "RGB"
    out = [np.asarray(resize_center_crop(Image.fromarray(im.squeeze(-1) if mode == "L" else im, mode), size)) for im in images]
    return np.stack(out).reshape(len(images), size, size, images.shape[-1])


def _resize_dct_linear(images: np.ndarray, size: int) -> np.ndarray:
    out = np.empty((len(images), size, size, images.shape[-1]), np.uint8)
    for i, im in enumerate(images):
        out[i] = square(im, size)
    return out


RESIZERS = {BICUBIC: _resize_bicubic, DCT_LINEAR: _resize_dct_linear}


def resize_array(images: np.ndarray, size: int) -> np.ndarray:
    """Apply the ``--size`` rule to already decoded N x H x W x C images."""
    return RESIZERS[rule_of(size)](images, size)
