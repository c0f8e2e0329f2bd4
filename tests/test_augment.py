"""Augmentation in the encrypted domain: geometry, per-sample draws, and the property that
makes it legitimate — augmenting ciphertext equals encrypting the augmented plain image under
the correspondingly moved mask."""

import numpy as np
import pytest
import torch

from conftest import SALT
from ppencrypt.ciphers import PERMUTATIONS, make_cipher
from ppencrypt.keys import KeyRing
from pptrain.augment import CENTRE, BatchAugment, Draw, normalise, parse_augment
from pptrain.errors import AugmentError

GEOMETRY = ("crop", "flip", "vflip", "rot90")


def fixed_draw(n, dy=0, dx=0, flip=False, vflip=False, rot=0) -> Draw:
    full = lambda v, t: np.full(n, v, dtype=t)  # noqa: E731
    return Draw(dy=full(dy, np.int64), dx=full(dx, np.int64), flip=full(flip, bool), vflip=full(vflip, bool), rot=full(rot, np.int64),
                partner=None, lam=np.ones(n, np.float32), box=np.zeros((n, 4), np.int64))  # fmt: skip


def denormalise(x: torch.Tensor) -> np.ndarray:
    """N x C x H x W normalised -> N x H x W x C pixel values (float64)."""
    return (x.permute(0, 2, 3, 1).double() * CENTRE + CENTRE).numpy()


def test_flip_twice_is_identity(cifar10):
    images = torch.from_numpy(cifar10[0])
    aug = BatchAugment(("flip", "vflip"), images.shape[1:], 10)
    for d in (fixed_draw(len(images), flip=True), fixed_draw(len(images), vflip=True)):
        once = aug.warp(images, d, 0)
        assert not torch.equal(once, images)
        assert torch.equal(aug.warp(once, d, 0), images)
    assert torch.equal(aug.warp(images, fixed_draw(len(images), flip=True), 0), images.flip(2))


def test_rot90_turns_like_torch(cifar10):
    images = torch.from_numpy(cifar10[0])
    aug = BatchAugment(("rot90",), images.shape[1:], 10)
    for k in range(4):
        assert torch.equal(aug.warp(images, fixed_draw(len(images), rot=k), 0), torch.rot90(images, k, dims=(1, 2)))


def test_crops_land_where_their_offsets_say(fmnist):
    images = fmnist[0]
    n, h, w, _ = images.shape
    aug = BatchAugment(("crop",), images.shape[1:], 10, pad=4)
    d = aug.draw(n, np.random.default_rng(1))
    out, _ = aug(torch.from_numpy(images), torch.zeros(n, dtype=torch.int64), d)
    got = denormalise(out)
    padded = np.pad(images.astype(np.float64), ((0, 0), (4, 4), (4, 4), (0, 0)), constant_values=CENTRE)
    for k in range(n):
        y0, x0 = 4 + d.dy[k], 4 + d.dx[k]
        np.testing.assert_allclose(got[k], padded[k, y0 : y0 + h, x0 : x0 + w], atol=1e-4)
    assert {(a, b) for a, b in zip(d.dy, d.dx)} != {(0, 0)}


def test_masks_differ_per_sample(cifar10):
    one = torch.from_numpy(cifar10[0][:1]).repeat(64, 1, 1, 1)
    aug = BatchAugment(("crop", "flip"), one.shape[1:], 10)
    d = aug.draw(64, np.random.default_rng(0))
    assert len(set(d.dy.tolist())) > 3 and len(set(d.dx.tolist())) > 3
    assert 0 < d.flip.sum() < 64
    out, _ = aug(one, torch.zeros(64, dtype=torch.int64), d)
    distinct = {out[i].numpy().tobytes() for i in range(64)}
    assert len(distinct) > 32
    again = aug.draw(64, np.random.default_rng(0))
    assert np.array_equal(d.dy, again.dy) and np.array_equal(d.flip, again.flip)  # seeded


def float_encrypt(x: np.ndarray, flips: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
    """[P]'s cipher on real-valued pixels with per-sample keys: colour shuffle, NP as 255 - v."""
    if codes is not None:
        perm = PERMUTATIONS[codes]
        x, flips = np.take_along_axis(x, perm, -1), np.take_along_axis(flips, perm, -1)
    return np.where(flips == 1, 255.0 - x, x)


def keys_of(method, ring, shape, indices):
    cipher = make_cipher(method)
    keys = [cipher.pixel_key(ring, shape, None if ring.scope == "dataset" else int(i)) for i in indices]
    flips = np.stack([k.flips for k in keys])
    codes = None if keys[0].codes is None else np.stack([k.codes for k in keys])
    return cipher, flips, codes


@pytest.mark.parametrize("data,method,scope", [("cifar10", "pe", "dataset"), ("fmnist", "np", "dataset"), ("cifar10", "pe", "image")])
def test_augmenting_ciphertext_is_encrypting_under_the_moved_mask(request, master_key, data, method, scope):
    plain, _ = request.getfixturevalue(data)
    n, h, w, c = plain.shape
    ring = KeyRing(master_key.secret, method, scope, "train" if scope == "image" else None, SALT if scope == "image" else None)
    indices = np.arange(n)
    cipher, flips, codes = keys_of(method, ring, plain.shape[1:], indices)
    encrypted = cipher.encrypt(plain, ring, indices)
    assert np.array_equal(float_encrypt(plain.astype(np.float64), flips, codes), encrypted)  # the reference is the cipher

    aug = BatchAugment(GEOMETRY, plain.shape[1:], 10, pad=4)
    d = aug.draw(n, np.random.default_rng(7))
    cloud, _ = aug(torch.from_numpy(encrypted), torch.zeros(n, dtype=torch.int64), d)

    moved_plain = aug.warp(torch.from_numpy(plain).double(), d, CENTRE).numpy()
    for border_bit in (0, 1):  # whatever the moved mask holds where the window left the image
        moved_flips = aug.warp(torch.from_numpy(flips), d, border_bit).numpy()
        moved_codes = None if codes is None else aug.warp(torch.from_numpy(codes[..., None]), d, 5).numpy()[..., 0]
        expected = float_encrypt(moved_plain, moved_flips, moved_codes)
        np.testing.assert_allclose(denormalise(cloud), expected, atol=1e-4)


def test_zero_padding_would_not_commute(master_key, cifar10):
    """The reason for 127.5: a zero border in the cloud is not an encryption of one plain border."""
    plain = cifar10[0]
    ring = KeyRing(master_key.secret, "np", "dataset")
    cipher, flips, _ = keys_of("np", ring, plain.shape[1:], [0])
    encrypted = cipher.encrypt(plain, ring, np.arange(len(plain)))
    aug = BatchAugment(("crop",), plain.shape[1:], 10, pad=4)
    d = fixed_draw(len(plain), dy=-4)
    zero_border = aug.warp(torch.from_numpy(encrypted), d, 0).numpy()[:, :4].astype(np.float64)
    for border_bit in (0, 1):
        as_plain = float_encrypt(zero_border, np.full_like(zero_border, border_bit, dtype=np.uint8), None)
        assert len(np.unique(as_plain)) == 1  # under one moved mask the border decrypts to one value ...
    assert not np.array_equal(float_encrypt(zero_border, np.zeros_like(zero_border, np.uint8), None),
                              float_encrypt(zero_border, np.ones_like(zero_border, np.uint8), None))  # fmt: skip
    # ... but which value depends on key bits the cloud does not know; 127.5 does not:
    mid = np.full((4, 4, 3), CENTRE)
    assert np.array_equal(float_encrypt(mid[None], flips[:, :4, :4], None)[0], mid)


@pytest.mark.parametrize("method", ["pe", "np"])
def test_mixup_commutes_under_a_dataset_key(master_key, cifar10, method):
    plain = cifar10[0]
    n = len(plain)
    ring = KeyRing(master_key.secret, method, "dataset")
    cipher, flips, codes = keys_of(method, ring, plain.shape[1:], [0])
    encrypted = cipher.encrypt(plain, ring, np.arange(n))
    aug = BatchAugment(("mixup",), plain.shape[1:], 10)
    d = aug.draw(n, np.random.default_rng(3))
    assert d.partner is not None and (d.lam < 1).all()
    cloud = denormalise(aug.mix(normalise(torch.from_numpy(encrypted)).double(), d))
    lam = d.lam.astype(np.float64)[:, None, None, None]
    mixed_plain = lam * plain + (1 - lam) * plain[d.partner]
    expected = float_encrypt(mixed_plain, np.broadcast_to(flips, plain.shape), None if codes is None else np.broadcast_to(codes, plain.shape[:3]))
    np.testing.assert_allclose(cloud, expected, atol=1e-3)


def test_cutmix_pastes_the_box_from_the_partner(cifar10):
    images = torch.from_numpy(cifar10[0])
    n = len(images)
    aug = BatchAugment(("cutmix",), images.shape[1:], 10)
    d = aug.draw(n, np.random.default_rng(5))
    x = normalise(images)
    out = aug.mix(x, d)
    for k in range(n):
        y0, y1, x0, x1 = d.box[k]
        inside = torch.zeros(images.shape[1:3], dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert torch.equal(out[k][:, inside], x[d.partner[k]][:, inside])
        assert torch.equal(out[k][:, ~inside], x[k][:, ~inside])
        assert d.lam[k] == pytest.approx(1 - inside.float().mean().item())
    labels = torch.arange(n) % 10
    t = aug.targets(labels, d)
    assert torch.allclose(t.sum(1), torch.ones(n))
    assert torch.allclose(t[torch.arange(n), labels], torch.from_numpy(d.lam) + (1 - torch.from_numpy(d.lam)) * (labels == labels[d.partner]))


@pytest.mark.parametrize("name", ["resize", "random-resized-crop", "RandomResizedCrop", "rotate", "blur", "color-jitter", "colour_jitter", "brightness"])
def test_non_commuting_augmentations_are_refused_with_a_reason(name):
    with pytest.raises(AugmentError, match="does not commute with pixel-wise encryption: "):
        parse_augment([name], (32, 32, 3), "dataset")


def test_unknown_and_misfit_augmentations_are_refused():
    with pytest.raises(AugmentError, match="unknown augmentation 'jiggle' .choose from crop, flip"):
        parse_augment(["jiggle"], (32, 32, 3), "dataset")
    with pytest.raises(AugmentError, match="'rot90' needs square images"):
        parse_augment(["rot90"], (28, 32, 1), "dataset")
    with pytest.raises(AugmentError, match="'mixup' needs one key for the whole dataset"):
        parse_augment(["mixup"], (32, 32, 3), "image")


def test_valid_lists_parse():
    assert parse_augment(["crop", "flip", "shift", "none"], (28, 28, 1), "dataset") == ("crop", "flip")
    assert parse_augment(["cutmix", "rot90"], (28, 28, 1), "image") == ("cutmix", "rot90")
    assert parse_augment(["mixup"], (28, 28, 1), None) == ("mixup",)
