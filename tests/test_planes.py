"""The pixel cipher under image keys on colour planes (ciphers/planes.py): the same bytes as the
gather it replaces, for every code, key derivation, shape and direction."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import SALT
from PIL import Image

from ppencrypt.ciphers import CODE_NAMES, PERMUTATIONS, make_cipher, planes
from ppencrypt.keys import KeyRing
from ppencrypt.keys.derive import KDFS

MASTER = bytes(range(32))
PHOTOS = sorted((Path(__file__).parent / "data" / "imagenet").glob("*.jpg"))


def photos(n: int, size: int = 224) -> np.ndarray:
    """Real photos, centre-cropped to size x size."""
    out = []
    for f in PHOTOS[:n]:
        with Image.open(f) as im:
            im = im.convert("RGB")
            left, top = (im.width - size) // 2, (im.height - size) // 2
            out.append(np.asarray(im.crop((left, top, left + size, top + size))))
    return np.stack(out)


def image_ring(method: str, kdf: str, split: str = "train") -> KeyRing:
    return KeyRing(MASTER, method, "image", split, SALT if kdf != "ppencrypt/v1" else None, kdf=kdf)


def test_each_code_is_its_permutation():
    """One pixel of distinct components under each of the six codes, no NP flips: the planes
    hold the components in the order the code names ([P]'s colour shuffle)."""
    pixel = np.array([11, 22, 33], np.uint8)
    images = np.tile(pixel, (1, 1, 6, 1))
    codes = np.arange(6, dtype=np.uint8).reshape(1, 6)
    flips = [np.zeros((1, 6), np.uint8)] * 3
    out = np.empty_like(images)
    planes.apply(images, flips, codes, False, out)
    for k in range(6):
        assert list(out[0, 0, k]) == [pixel[j] for j in PERMUTATIONS[k]], CODE_NAMES[k]
        assert [int(v) for v in out[0, 0, k]] == [int(pixel["RGB".index(ch)]) for ch in CODE_NAMES[k]]
    back = np.empty_like(out)
    planes.apply(out, flips, codes, True, back)
    assert np.array_equal(back, images)


def test_a_raw_key_byte_selects_as_its_code():
    """Bytes left unreduced (draws ``reduce=False``) look up the masks of their value mod 6."""
    table = planes.stage_tables()
    assert table.shape == (3, 256)
    assert np.array_equal(table, table[:, np.arange(256) % 6])
    assert set(np.unique(table)) == {0, 255}


@pytest.mark.parametrize("kdf", KDFS)
@pytest.mark.parametrize("method", ["pe", "np"])
def test_planes_give_the_gathers_bytes(method, kdf):
    """Encryption with image keys through the planes equals the PixelKey transforms built the
    general way (the gather), on real photos; decryption restores them."""
    images = photos(9)
    cipher = make_cipher(method)
    ring = image_ring(method, kdf).bind(images.shape[1:], cipher.params)
    indices = np.arange(40, 49)
    key = cipher.pixel_keys(ring, images.shape[1:], list(indices))
    encrypted = cipher.encrypt(images, ring, indices)
    assert np.array_equal(encrypted, key.apply(images))
    assert not np.array_equal(encrypted, images)
    assert np.array_equal(cipher.decrypt(encrypted, ring, indices), images)
    assert np.array_equal(key.invert(encrypted), images)


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (5, 7, 3), (3, 1, 3)])
def test_odd_shapes_and_grayscale(shape):
    images = photos(4, 32)[:, : shape[0], : shape[1], : shape[2]]
    images = np.ascontiguousarray(images if shape[2] == 3 else images.mean(axis=3, keepdims=True).astype(np.uint8))
    for method in ("pe", "np"):
        cipher = make_cipher(method)
        ring = image_ring(method, "ppencrypt/v3").bind(shape, cipher.params)
        key = cipher.pixel_keys(ring, shape, [0, 1, 2, 3])
        encrypted = cipher.encrypt(images, ring, np.arange(4))
        assert np.array_equal(encrypted, key.apply(images))
        assert np.array_equal(cipher.decrypt(encrypted, ring, np.arange(4)), images)


def test_threads_encrypting_at_once_keep_their_own_planes():
    """A Dask worker encrypts in several threads: each thread's planes are its own, so two
    threads encrypting images of one shape at once give the bytes each gives alone."""
    images = photos(12)
    cipher = make_cipher("pe")
    rings = {split: image_ring("pe", "ppencrypt/v3", split).bind(images.shape[1:], {}) for split in ("train", "val")}
    want = {split: cipher.encrypt(images, r, np.arange(12)) for split, r in rings.items()}
    assert not np.array_equal(want["train"], want["val"])
    wrong: list[str] = []

    def run(split):
        for _ in range(20):
            if not np.array_equal(cipher.encrypt(images, rings[split], np.arange(12)), want[split]):
                wrong.append(split)

    threads = [threading.Thread(target=run, args=(split,)) for split in rings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
