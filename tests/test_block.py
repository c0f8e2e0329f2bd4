"""The block-wise baselines (le, ele, etc): block structure, alignment under shifts, the CLI's
--block-size. Round trips for every method x scope x format are in test_roundtrip.py."""

import json

import numpy as np
import pytest
from conftest import SALT, encrypt, ppencrypt
from hypothesis import given, settings
from hypothesis import strategies as st

from ppencrypt.ciphers import make_cipher
from ppencrypt.keys import KeyRing

MASTER = bytes(range(32))
BLOCKWISE = ["le", "ele", "etc"]


def ring(method, scope="dataset"):
    return KeyRing(MASTER, method, scope, "train" if scope == "image" else None, SALT if scope == "image" else None)


def changed_blocks(a, b, block):
    """Indices (row, col) of the block x block tiles where images a and b differ."""
    diff = (a != b).any(axis=-1)
    h, w = diff.shape
    tiles = diff.reshape(h // block, block, w // block, block).any(axis=(1, 3))
    return {tuple(int(v) for v in rc) for rc in np.argwhere(tiles)}


@pytest.mark.parametrize("method", BLOCKWISE)
@settings(max_examples=15, deadline=None)
@given(image=st.integers(0, 19), row=st.integers(0, 7), col=st.integers(0, 7), delta=st.integers(1, 255))
def test_a_plain_block_affects_exactly_one_cipher_block(cifar10, method, image, row, col, delta):
    plain = cifar10[0][image : image + 1]
    moved = plain.copy()
    moved[0, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] ^= np.uint8(delta)
    c = make_cipher(method)
    a, b = c.encrypt(plain, ring(method), None)[0], c.encrypt(moved, ring(method), None)[0]
    blocks = changed_blocks(a, b, 4)
    assert len(blocks) == 1
    if method == "le":  # LE keeps block positions; ELE and EtC move blocks
        assert blocks == {(row, col)}


@pytest.mark.parametrize("shift", [(0, 4), (8, 0), (4, -12)])
def test_le_commutes_with_block_aligned_shifts(cifar10, shift):
    c, r = make_cipher("le"), ring("le")
    x = cifar10[0]
    rolled = np.roll(x, shift, axis=(1, 2))
    assert np.array_equal(np.roll(c.encrypt(x, r, None), shift, axis=(1, 2)), c.encrypt(rolled, r, None))


@pytest.mark.parametrize("method", BLOCKWISE)
@pytest.mark.parametrize("shift", [(0, 1), (2, 0), (3, -1)])
def test_a_shift_off_the_block_grid_breaks_the_block_ciphers_but_not_pe(cifar10, method, shift):
    """Shifting ciphertext by a non-multiple of the block size is no longer the encryption of
    the shifted image: decrypting it gives garbage. Under pe it decrypts, with the moved mask,
    to exactly the shifted plain image (the commutation property of [P])."""
    x = cifar10[0]
    c, r = make_cipher(method), ring(method)
    garbage = c.decrypt(np.roll(c.encrypt(x, r, None), shift, axis=(1, 2)), r, None)
    wrong = np.mean(garbage != np.roll(x, shift, axis=(1, 2)))
    assert wrong > 0.5

    pe = make_cipher("pe")
    key = pe.pixel_key(ring("pe"), x.shape[1:])
    moved = type(key)(np.roll(key.flips, shift, axis=(0, 1)), np.roll(key.codes, shift, axis=(0, 1)))
    shifted_cipher = np.roll(key.apply(x), shift, axis=(1, 2))
    assert np.array_equal(moved.invert(shifted_cipher), np.roll(x, shift, axis=(1, 2)))


@pytest.mark.parametrize("method", BLOCKWISE)
def test_image_scope_gives_every_image_its_own_key(cifar10, method):
    x = np.repeat(cifar10[0][:1], 2, axis=0)  # the same picture twice
    y = make_cipher(method).encrypt(x, ring(method, "image"), np.array([0, 1]))
    assert np.mean(y[0] != y[1]) > 0.5


def test_block_size_is_recorded_and_used(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--method", "etc", "--block-size", "8", "--key-scope", "dataset")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cipher"]["method"] == "etc" and manifest["cipher"]["params"] == {"block_size": 8}
    assert manifest["cipher"]["derivations"] == ["ppencrypt/v3|method=etc|scope=dataset|shape=32x32x3|block_size=8"]
    assert ppencrypt("verify", out).exit_code == 0


def test_block_size_must_divide_the_image(tmp_path, cifar10_dir, key_file):
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "out", "--key", key_file, "--method", "le", "--block-size", "5")
    assert r.exit_code == 1
    assert "image size 32x32 is not divisible by the block size 5" in r.stderr
    assert not (tmp_path / "out").exists()


def test_block_size_is_refused_for_pixel_methods(tmp_path, cifar10_dir, key_file):
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "out", "--key", key_file, "--method", "pe", "--block-size", "4")
    assert r.exit_code == 2
    assert "--block-size" in r.stderr and "takes no block size" in r.stderr


def test_an_image_scope_is_refused_for_a_method_without_a_key(tmp_path, cifar10_dir):
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "out", "--method", "plain", "--key-scope", "image")
    assert r.exit_code == 2 and not (tmp_path / "out").exists()
    assert "Invalid value for --key-scope: method 'plain' uses no key, so there is no key per image" in r.stderr
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "out", "--method", "plain", "--key-scope", "dataset")
    assert r.exit_code == 0  # the default, said explicitly (make encrypt always does)
