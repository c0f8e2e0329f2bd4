"""bsm, block scramble-mix (issue 25): exact round trips, a key per image seekable by index, the
structure docs/cipher.md states, the known-plaintext attack defeated by a key per image (and
not by a dataset key: the defence is the scope), and the jigsaw attack applied to it by the
audit. The known-answer vectors are in test_kat.py."""

import json

import numpy as np
import pytest
from conftest import SALT, encrypt, ppencrypt

from ppencrypt.audit.attacker import attacker_encrypt
from ppencrypt.audit.attacks import KnownPairs, Target, attacks
from ppencrypt.audit.audit import pick_variant
from ppencrypt.audit.jigsaw import bsm_candidates
from ppencrypt.audit.metrics import Scores
from ppencrypt.ciphers import make_cipher
from ppencrypt.ciphers.block import block_layout
from ppencrypt.keys import KeyRing

MASTER = bytes(range(32))


def ring(scope, split="train"):
    image = scope == "image"
    return KeyRing(MASTER, "bsm", scope, split if image else None, SALT if image else None)


def images_of(cifar10, fmnist, channels):
    return cifar10[0] if channels == 3 else fmnist[0]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scope", ["dataset", "image"])
@pytest.mark.parametrize("block", [2, 4])
def test_round_trip_is_exact(cifar10, fmnist, channels, scope, block):
    x = images_of(cifar10, fmnist, channels)
    c = make_cipher("bsm", {"block_size": block})
    y = c.encrypt(x, ring(scope), np.arange(len(x)))
    assert (y != x).mean() > 0.7  # Fashion-MNIST: a black block moved onto black, not negated, is unchanged
    assert np.array_equal(c.decrypt(y, ring(scope), np.arange(len(x))), x)


def test_a_key_per_image_seeks_by_index_and_differs_between_images(fmnist):
    """Image i's ciphertext does not depend on the batch it is encrypted in; two indices (or two
    splits) give two keys for the same image."""
    x = np.repeat(fmnist[0][:1], 6, axis=0)
    c = make_cipher("bsm")
    batch = c.encrypt(x, ring("image"), np.arange(6))
    for i in (0, 3, 5):
        assert np.array_equal(c.encrypt(x[:1], ring("image"), np.array([i]))[0], batch[i])
    assert len({row.tobytes() for row in batch}) == 6
    assert not np.array_equal(c.encrypt(x[:1], ring("image", "test"), np.array([0]))[0], batch[0])


@pytest.mark.parametrize("channels", [1, 3])
def test_every_cipher_block_is_a_plain_block_under_one_of_its_maps(cifar10, fmnist, channels):
    """Blocks move whole, and each is its plain block under a symmetry, a negation per component
    and a colour order: the 8·2^C·(6 on RGB) maps the jigsaw tries. Every plain block is found."""
    x = images_of(cifar10, fmnist, channels)[:3]
    y = make_cipher("bsm").encrypt(x, ring("image"), np.arange(3))
    layout = block_layout(*x.shape[1:], 4)
    cand = bsm_candidates(4, channels)
    assert len(cand) == 8 * 2**channels * (6 if channels == 3 else 1)
    for k in range(3):
        options = cand.decryptions(y[k].reshape(-1)[layout])  # blocks, T, L
        assert all((options == block).all(-1).any() for block in x[k].reshape(-1)[layout])


def test_negation_is_per_component(cifar10):
    """Unlike etc, a block's components are negated independently: some cipher block has one
    component negated and another not (the grey-level statistic etc leaves is gone)."""
    x = cifar10[0][:4]
    y = make_cipher("bsm").encrypt(x, ring("image"), np.arange(4))
    bits = make_cipher("bsm").draws((32, 32, 3))
    drawn = ring("image").bind((32, 32, 3), {"block_size": 4}).draws(bits, np.arange(4))
    np_bits = drawn[2].reshape(4, -1, 3)
    assert ((np_bits.sum(-1) > 0) & (np_bits.sum(-1) < 3)).mean() > 0.5
    assert y.shape == x.shape


def known_plaintext(images, scope, k=1):
    encrypted = attacker_encrypt("bsm", {}, scope, images, 7, "the target's key")
    target = Target("bsm", {}, scope, images.shape[1:])
    attack = {a.name: a for a in attacks()}["known-plaintext"]
    assert attack.not_applicable(target) is None
    pairs = KnownPairs(images[:k], encrypted[:k])
    own = attack.run(encrypted[:k], target, pairs).images
    rest = attack.run(encrypted[k:], target, pairs)
    return own, Scores.of(rest.images, images[k:]), Scores.of(encrypted[k:], images[k:]), rest.stats


def test_one_known_pair_decrypts_every_other_image_under_a_dataset_key(cifar10):
    """The attack works: under a shared key one pair gives the whole key."""
    own, scores, _, stats = known_plaintext(cifar10[0], "dataset")
    assert np.array_equal(own, cifar10[0][:1])
    assert scores.exact == scores.count == 19 and stats["determined"] == stats["blocks"]


@pytest.mark.parametrize("which", ["cifar10", "fmnist"])
def test_a_key_per_image_defeats_the_known_plaintext_attack(cifar10, fmnist, which):
    """The defence (docs/security.md): the pair's key is that image's alone. It decrypts its own
    pair exactly, and no other image: no better than the ciphertext itself."""
    images = (cifar10 if which == "cifar10" else fmnist)[0]
    own, scores, floor, _ = known_plaintext(images, "image")
    assert np.array_equal(own, images[:1])
    assert scores.exact == 0 and scores.psnr.mean < floor.psnr.mean + 1.0


def test_the_audit_runs_the_jigsaw_and_known_plaintext_on_bsm(tmp_path, fmnist_dir, key_file):
    out = tmp_path / "bsm"
    encrypt(fmnist_dir, out, key_file, "--method", "bsm")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cipher"]["method"] == "bsm" and manifest["cipher"]["key_scope"] == "image"
    assert manifest["cipher"]["adapt"] == "blockset" and manifest["cipher"]["block"] == 4
    r = ppencrypt("audit", out, "--plain", fmnist_dir, "--split", "train", "-n", 10, "-o", tmp_path / "r")
    assert r.exit_code == 0, r.output
    rows = {row["attack"]: row for row in json.loads((tmp_path / "r.json").read_text())["attacks"]}
    assert rows["jigsaw"]["stats"] == {"pieces": 49, "candidates": 16}
    assert "per image" in rows["jigsaw"]["note"]
    assert rows["known-plaintext"]["exact"] == 0
    assert rows["learned"]["not_applicable"] == "a learned attack: pass --learned"


def test_the_jigsaw_with_per_component_negations_beats_the_ciphertext(cifar10):
    images = cifar10[0][:3]
    encrypted = attacker_encrypt("bsm", {"block_size": 8}, "image", images, 7, "the target's key")
    target = Target("bsm", {"block_size": 8}, "image", images.shape[1:])
    out = {a.name: a for a in attacks()}["jigsaw"].run(encrypted, target)
    assert len(out.variants) == 8 * 8 * 6  # the seed's symmetry, negation per component, colour order
    chosen, _ = pick_variant(out.images, images, out.variants)
    assert Scores.of(chosen, images).psnr.mean > Scores.of(encrypted, images).psnr.mean + 1.5


def test_per_component_variants_form_a_group(cifar10):
    from ppencrypt.audit.variants import WholeImageVariants

    images = cifar10[0][:2]
    variants = WholeImageVariants(3, square=True, per_image=True, negations="per-component")
    assert len(variants) == 8 * 8 * 6
    for t in range(0, len(variants), 7):
        moved = variants.apply(images, t)
        assert any(np.array_equal(variants.apply(moved, u), images) for u in range(len(variants)))
    # one component negated alone is among them (etc's whole-image variants do not have it)
    one = images.copy()
    one[..., 1] = 255 - one[..., 1]
    assert any(np.array_equal(variants.apply(one, u), images) for u in range(len(variants)))
    whole = WholeImageVariants(3, square=True, per_image=True)
    assert not any(np.array_equal(whole.apply(one, u), images) for u in range(len(whole)))
