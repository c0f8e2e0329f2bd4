"""Decoding one photo JPEG to 224 px: the candidates issue 21 weighed, per photo, in one process.

    python bench/photo_decode.py [--images 100] [--size 224] [--photo 500x375] [--repeat 5] [--quick] [--json PATH]

The photos are photo_write.py's (the vendored ImageNet JPEGs cropped and resized to --photo,
JPEG quality 90). Each candidate decodes every photo from its bytes to size x size x 3; the time
is this process's CPU time (``time.process_time``, so other jobs on a shared machine inflate it
less than the wall clock), the least of --repeat passes, per photo. Quality: PSNR against
Pillow's antialiased bicubic from the full decode over the same source square
(tests/test_resize.py asserts its floor for the rule chosen).

* ``pillow-bicubic`` — the rule before (imageio.py): full decode, bicubic, crop; the baseline;
* ``full decode + linear`` — no DCT scaling: Pillow's decode, dct-linear's square and resize;
* ``DCT scale + Pillow bicubic`` — the M/8 decode, then Pillow's bicubic over the exact box;
* ``dct-linear`` — the rule chosen (resize.py): the M/8 decode, square, INTER_LINEAR_EXACT.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from photo_write import make_photos
from ratios import Ratios, bench_args

from ppencrypt.imageio import decode_image
from ppencrypt.jpeg import jpeg_scaled
from ppencrypt.resize import BICUBIC, DCT_LINEAR, Size, square, square_box


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def same_square(data: bytes, size: int, m: int) -> np.ndarray:
    """The quality reference: Pillow's bicubic from the full decode over the source square a
    candidate decoded at scale m/8 covers (resize.square_box)."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        top, left, side, _ = square_box(im.height * m // 8, im.width * m // 8, size)
        k = m / 8
        return np.asarray(im.resize((size, size), Image.Resampling.BICUBIC, box=(left / k, top / k, (left + side) / k, (top + side) / k)))


def candidates(size: int) -> dict:
    """name -> (decode, the DCT scale M its square is at, or None: no reference, it is its own)."""

    def full_linear(data):
        with Image.open(io.BytesIO(data)) as im:
            return square(np.asarray(im.convert("RGB")), size)

    def dct_bicubic(data):
        image, m = jpeg_scaled(data, False, size)
        top, left, side, _ = square_box(*image.shape[:2], size)
        return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side)))

    def scale(data):
        return jpeg_scaled(data, False, size)[1]

    return {
        "pillow-bicubic (the rule before)": (lambda data: decode_image(data, "x", 3, Size(size, BICUBIC)), None),
        "full decode + linear": (full_linear, lambda data: 8),
        "DCT scale + Pillow bicubic": (dct_bicubic, scale),
        "dct-linear (the rule now)": (lambda data: decode_image(data, "x", 3, Size(size, DCT_LINEAR)), scale),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--photo", default="500x375", help="W x H of the photos")
    ap.add_argument("--repeat", type=int, default=5)
    args = bench_args(ap, quick={"images": 40, "repeat": 3})
    ratios = Ratios(__file__, args)
    w, h = (int(v) for v in args.photo.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        make_photos(Path(tmp), args.images, 1.0 if (w, h) == (3000, 2000) else 0.0)
        datas = [p.read_bytes() for p in sorted(Path(tmp).rglob("*.jpg"))]
    if (w, h) not in ((500, 375), (3000, 2000)):
        datas = [_resized(d, w, h) for d in datas]
    rows = {}
    for name, (fn, scale) in candidates(args.size).items():
        best = float("inf")
        for _ in range(args.repeat):
            t = time.process_time()
            out = [fn(d) for d in datas]
            best = min(best, time.process_time() - t)
        values = [psnr(a, same_square(d, args.size, scale(d))) for a, d in zip(out, datas)] if scale else [float("nan")]
        rows[name] = (best / len(datas) * 1e3, min(values), float(np.mean(values)))
    base = rows["pillow-bicubic (the rule before)"][0]
    print(f"{len(datas)} photos {w}x{h} to {args.size} px; CPU ms per photo, least of {args.repeat}")
    print("\n| candidate | ms per photo | × the rule before | PSNR vs bicubic over its square: min | mean |")
    print("|---|---|---|---|---|")
    for name, (ms, lo, mean) in rows.items():
        print(f"| {name} | {ms:.2f} | {ms / base:.2f}× | {lo:.1f} dB | {mean:.1f} dB |".replace("nan dB", "—"))
    ratios.add("dct_linear_time", rows["dct-linear (the rule now)"][0] / base, "lower", "dct-linear's CPU time per photo / pillow-bicubic's")
    ratios.report()


def _resized(data: bytes, w: int, h: int) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").resize((w, h), Image.Resampling.BICUBIC).save(out, "JPEG", quality=90)
    return out.getvalue()


if __name__ == "__main__":
    main()
