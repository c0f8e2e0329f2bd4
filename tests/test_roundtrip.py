"""decrypt(encrypt(x)) == x through the whole job: ``ppencrypt dataset`` then ``ppencrypt
decrypt``, for every method, key scope and format, on RGB and grayscale real images."""

import numpy as np
import pytest
from conftest import CIFAR10_NAMES, encrypt, expected_pngs, ppencrypt, read_pngs

from ppencrypt.ciphers import make_cipher, method_names
from ppencrypt.formats import open_dataset
from ppencrypt.sources.idx import FASHION_CLASSES

DATASETS = {"cifar10": CIFAR10_NAMES, "fmnist": FASHION_CLASSES}


@pytest.mark.parametrize("storage", ["wds", "zarr"])
@pytest.mark.parametrize("scope", ["dataset", "image"])
@pytest.mark.parametrize("method", method_names())
@pytest.mark.parametrize("data", sorted(DATASETS))
def test_round_trip(request, tmp_path, key_file, data, method, scope, storage):
    images, labels = request.getfixturevalue(data)
    src = request.getfixturevalue(f"{data}_dir")
    out, dest = tmp_path / "out", tmp_path / "dest"
    if scope == "image" and not make_cipher(method).needs_key:
        pytest.skip("no key, so no key per image: refused (test_block.py)")
    encrypt(src, out, key_file, "--method", method, "--key-scope", scope, "--format", storage)

    stored = open_dataset(out).split("train").read().images
    assert stored.shape == images[5:].shape
    assert make_cipher(method).needs_key != np.array_equal(stored, images[5:])

    key = ("--key", key_file) if make_cipher(method).needs_key else ()  # a key on a plain dataset is refused
    r = ppencrypt("decrypt", out, dest, *key, "--quiet")
    assert r.exit_code == 0, r.output
    got = read_pngs(dest)
    expected = expected_pngs(images, labels, DATASETS[data])
    assert sorted(got) == sorted(expected)
    for name, image in expected.items():
        assert np.array_equal(got[name], image), name


def test_decrypt_overwrite_replaces_its_own_output_only(tmp_path, encrypted, key_file):
    dest = tmp_path / "dest"
    assert ppencrypt("decrypt", encrypted, dest, "--key", key_file, "--quiet").exit_code == 0
    first = read_pngs(dest)
    (dest / "stray.txt").write_text("x")
    r = ppencrypt("decrypt", encrypted, dest, "--key", key_file, "--quiet", "--overwrite")
    assert r.exit_code == 0, r.output
    assert not (dest / "stray.txt").exists()
    assert read_pngs(dest).keys() == first.keys()

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    r = ppencrypt("decrypt", encrypted, foreign, "--key", key_file, "--overwrite")
    assert r.exit_code == 1 and f"{foreign}: exists and is not a folder ppencrypt decrypt wrote" in r.output
    assert (foreign / "holiday.jpg").read_bytes() == b"precious"
