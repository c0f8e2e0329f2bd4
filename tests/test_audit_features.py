"""``learned-features``: the learned attacker on the key-invariant block features of bsm and etc
(audit/blockfeatures.py), on real Fashion-MNIST images with budgets of seconds."""

import json

import numpy as np
import pytest
from conftest import encrypt, ppencrypt, tile_real, write_fmnist_idx

from ppencrypt.audit.attacker import attacker_encrypt
from ppencrypt.audit.attacks import Target, attacks
from ppencrypt.audit.metrics import Scores
from ppencrypt.audit.public import Budget, Learner, PublicImages
from ppencrypt.ciphers import cipher_class, method_names

pytest.importorskip("torch")

ATTACK = {a.name: a for a in attacks()}["learned-features"]


def varied(images, labels, n):
    """n distinct real images from a few: rolled (tile_real) and, every other round, mirrored."""
    tiled, tlabels = tile_real(images, labels, n)
    tiled[1::2] = tiled[1::2, :, ::-1]
    return tiled, tlabels


def test_it_applies_where_the_blocks_are_the_plain_blocks_up_to_what_it_ignores():
    shape = (28, 28, 1)
    assert ATTACK.not_applicable(Target("bsm", {"block_size": 4}, "image", shape)) is None
    assert ATTACK.not_applicable(Target("bsm", {"block_size": 7}, "dataset", shape)) is None
    assert ATTACK.not_applicable(Target("etc", {"block_size": 4}, "image", shape)) is None  # trained with Tanaka's network
    for method, scope in (("pe", "image"), ("le", "image"), ("ele", "image"), ("plain", None)):
        assert "maps key-invariant block features ignore" in ATTACK.not_applicable(Target(method, {}, scope, shape))


@pytest.mark.parametrize("method", [m for m in method_names() if cipher_class(m).needs_key])
@pytest.mark.parametrize("data", ["fmnist", "cifar10"])
def test_a_method_claims_a_bag_of_blocks_exactly_when_the_features_ignore_its_key(request, method, data):
    """The claim that lets the attack run (ImageCipher.bag_of_blocks) checked against the
    features themselves, for every registered method: the attacker's block features of real
    images encrypted with a key per image are the plain images' exactly when the method claims
    it (float summation order aside); a method that moves pixels inside a block, or negates
    pixels one by one, changes them."""
    import torch

    from ppencrypt.audit.blockfeatures import build

    images = request.getfixturevalue(data)[0][:8]
    cls = cipher_class(method)
    block = cls.defaults.get("block_size", 4)
    net = build(images.shape[3], block, images.shape[1:], 0)
    encrypted = attacker_encrypt(method, dict(cls.defaults), "image", images, seed=5, purpose="the target's key")
    assert not np.array_equal(encrypted, images)
    with torch.no_grad():
        plain, cipher = (net.bag(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255) for x in (images, encrypted))
    same = torch.allclose(plain, cipher, atol=1e-4)
    assert same == cls.bag_of_blocks, f"{method}: largest difference {(plain - cipher).abs().max():.2e}"


@pytest.mark.parametrize("block", [4, 7])
def test_it_reconstructs_from_what_every_key_leaves(fmnist, block):
    """Trained for seconds on 300 images it never scores, under keys of its own: its
    reconstructions are the same whichever key per image encrypted the scored images (it reads
    nothing but the key-invariant features), beat the ciphertexts by far, and each is nearer its
    own plain image than another's (a decoder that drew one average garment for every image
    would score the same against both)."""
    images, labels = fmnist
    scored = images[:10]
    public, plabels = varied(images[10:], labels[10:], 300)
    target = Target("bsm", {"block_size": block}, "image", scored.shape[1:])
    learner = Learner(PublicImages(public, plabels, True, "test", ["train"], 0), Budget(80, 60.0, seed=0))
    one = attacker_encrypt("bsm", target.params, "image", scored, seed=98, purpose="the target's key")
    other = attacker_encrypt("bsm", target.params, "image", scored, seed=99, purpose="the target's key")
    assert not np.array_equal(one, other)
    out = ATTACK.run(one, target, learner=learner)
    again = ATTACK.run(other, target, learner=learner)  # the model trained once per audit
    assert np.abs(out.images.astype(int) - again.images.astype(int)).max() <= 1  # float summation order only
    got, floor = Scores.of(out.images, scored), Scores.of(one, scored)
    assert got.psnr.mean > floor.psnr.mean + 5
    assert got.ssim.mean > floor.ssim.mean + 0.05
    others = Scores.of(out.images, np.roll(scored, 1, axis=0))
    assert got.psnr.mean > others.psnr.mean + 0.3 and got.ssim.mean > others.ssim.mean + 0.02
    assert out.stats["steps"] == 80 and out.stats["trained_on"] == 300 and out.stats["class_head"] is True


def test_on_colour_images_every_block_key_is_invisible_to_it(cifar10):
    """RGB bsm adds a colour order and a negation per component to every block: the features
    are still the same whatever the key, so the reconstructions are too."""
    images, labels = cifar10
    scored = images[:6]
    public, plabels = varied(images[10:], labels[10:], 100)
    target = Target("bsm", {"block_size": 4}, "image", scored.shape[1:])
    learner = Learner(PublicImages(public, plabels, True, "test", ["train"], 0), Budget(10, 60.0, seed=0))
    one, other = (attacker_encrypt("bsm", target.params, "image", scored, seed=s, purpose="the target's key") for s in (98, 99))
    assert not np.array_equal(one, other)
    out, again = ATTACK.run(one, target, learner=learner), ATTACK.run(other, target, learner=learner)
    assert out.images.shape == scored.shape
    assert np.abs(out.images.astype(int) - again.images.astype(int)).max() <= 1


def test_the_audit_reports_it_on_bsm_with_recognition(tmp_path, fmnist, key_file):
    images, labels = tile_real(*fmnist, 200)
    src = write_fmnist_idx(tmp_path / "fm", images, labels, n_test=40)
    out = tmp_path / "bsm"
    encrypt(src, out, key_file, "--method", "bsm", "--key-scope", "image")
    r = ppencrypt("audit", out, "--plain", src, "-n", 39, "-o", tmp_path / "r", "--learned", "--train-steps", 60, "--train-seconds", 60)
    assert r.exit_code == 0, r.output
    rows = {row["attack"]: row for row in json.loads((tmp_path / "r.json").read_text())["attacks"]}
    row = rows["learned-features"]
    assert "not_applicable" not in row and row["recognition_accuracy"] is not None
    assert row["psnr"]["mean"] > rows["identity"]["psnr"]["mean"] + 4
    assert "learned-features" in r.stdout
    order = list(rows)
    assert order.index("learned-features") == order.index("learned-shared") + 1  # after the other learned attacks
