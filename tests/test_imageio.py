"""--size on real photos: large JPEGs are decoded at a reduced scale (Pillow's draft) and
shrunk with a box reduction first; photos under twice the size resize exactly as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppencrypt.imageio import load_image

PHOTOS = sorted((Path(__file__).parent / "data" / "imagenet").glob("*.jpg"))


def reference(path: Path, size: int) -> np.ndarray:
    """Full-scale decode, antialiased bicubic to the shorter side, centre crop: the rule as
    docs/formats.md states it, without the shortcuts."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = round((nw - size) / 2), round((nh - size) / 2)
        return np.asarray(im.crop((left, top, left + size, top + size)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def phone_photos(tmp_path_factory) -> list[Path]:
    """Three vendored ImageNet photos enlarged to 2400x1800, as a phone would save them."""
    root = tmp_path_factory.mktemp("phone")
    out = []
    for i, f in enumerate(PHOTOS[:3]):
        path = root / f"{i}.jpg"
        Image.open(f).convert("RGB").resize((2400, 1800), Image.Resampling.BICUBIC).save(path, quality=92)
        out.append(path)
    return out


def test_a_photo_under_twice_the_size_resizes_exactly_as_pillow_does(tmp_path):
    for i, f in enumerate(PHOTOS[:4]):
        path = tmp_path / f"{i}.jpg"
        Image.open(f).convert("RGB").resize((500, 375), Image.Resampling.BICUBIC).save(path, quality=90)
        assert np.array_equal(load_image(str(path), path.name, 3, 224), reference(path, 224))


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_and_stays_within_45_db_of_full_scale(phone_photos):
    for path in phone_photos:
        with Image.open(path) as im:
            im.draft("RGB", (448, 448))
            assert min(im.size) < 1800  # the decoder did scale down: without draft this test proves nothing
        ours = load_image(str(path), path.name, 3, 224)
        assert ours.shape == (224, 224, 3)
        assert psnr(ours, reference(path, 224)) >= 45, path.name


def test_a_large_png_is_reduced_before_the_bicubic_pass_and_stays_close(tmp_path):
    path = tmp_path / "big.png"
    Image.open(PHOTOS[4]).convert("RGB").resize((1600, 1200), Image.Resampling.BICUBIC).save(path)
    ours = load_image(str(path), path.name, 3, 128)
    assert psnr(ours, reference(path, 128)) >= 45
    assert not np.array_equal(ours, reference(path, 128))  # the reduction ran: the pixels differ, slightly
