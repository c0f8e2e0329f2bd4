"""The jigsaw solver on real images: block puzzles put back together from the ciphertext alone,
exactly when only the positions were scrambled, and still far above the encrypted image when
every block was also rotated, negated and colour-shuffled (etc) or nibble-scrambled (ele)."""

import json

import numpy as np
import pytest
from conftest import encrypt, ppencrypt

from ppencrypt.audit.attacker import attacker_encrypt
from ppencrypt.audit.attacks import Target, attacks
from ppencrypt.audit.audit import pick_variant
from ppencrypt.audit.jigsaw import etc_candidates, placement_only, solve
from ppencrypt.audit.metrics import Scores
from ppencrypt.audit.variants import WholeImageVariants
from ppencrypt.ciphers.block import block_layout

TARGET = 7  # the seed of the target's key (through the attacker's own key derivation: one place to change)


@pytest.fixture
def cifar(cifar10):
    return cifar10[0]


@pytest.fixture
def fashion(fmnist):
    return fmnist[0]


def scramble(images, b, seed=0):
    """Every image's B x B blocks moved to random places, nothing else changed."""
    n, h, w, c = images.shape
    layout = block_layout(h, w, c, b)
    rng = np.random.default_rng(seed)
    out = images.reshape(n, -1).copy()
    for k in range(n):
        out[k, layout.reshape(-1)] = images[k].reshape(-1)[layout[rng.permutation(len(layout))].reshape(-1)]
    return out.reshape(images.shape)


def jigsaw(images, method, scope, b, target=TARGET):
    encrypted = attacker_encrypt(method, {"block_size": b}, scope, images, target, "the target's key")
    attack = {a.name: a for a in attacks()}["jigsaw"]
    target = Target(method, {"block_size": b}, scope, images.shape[1:])
    assert attack.not_applicable(target) is None
    out = attack.run(encrypted, target)
    chosen, _ = pick_variant(out.images, images, out.variants)
    return Scores.of(chosen, images), Scores.of(encrypted, images)


def test_placement_alone_is_restored_exactly(cifar):
    """8x8 blocks of the 20 CIFAR-10 images, positions scrambled: most come back exactly, the
    rest nearly (a few blocks swapped)."""
    scrambled = scramble(cifar, 8)
    restored = solve(scrambled, 8, placement_only(8, 3))
    chosen, _ = pick_variant(restored, cifar, WholeImageVariants(3, square=True, per_image=True))
    scores, before = Scores.of(chosen, cifar), Scores.of(scrambled, cifar)
    assert scores.exact >= 10
    assert scores.ssim.mean > 0.65 and before.ssim.mean < 0.1


def test_the_solver_frames_the_seed_as_it_lies(cifar):
    """Without a variant pick, a solved image is the original under one global symmetry: the
    seed piece was placed untransformed."""
    restored = solve(scramble(cifar[:4], 8, seed=1), 8, placement_only(8, 3))
    variants = WholeImageVariants(3, square=True, per_image=True)
    assert any(np.array_equal(variants.apply(restored[k : k + 1], t)[0], cifar[k]) for k in range(4) for t in range(len(variants)))


@pytest.mark.parametrize("scope", ["dataset", "image"])
def test_etc_degrades_gracefully(cifar, scope):
    """Blocks also rotated or flipped, negated and colour-shuffled, under either key scope (the
    solver works per image): far from exact, still well above the encrypted image. A dataset
    key is one draw for all 20 images, so its gains are averaged over three keys (one key's
    SSIM gain at b = 4 ranged 0.03-0.10 over seven keys)."""
    for b in (4, 8):
        runs = [jigsaw(cifar, "etc", scope, b, TARGET + k) for k in range(3 if scope == "dataset" else 1)]
        assert np.mean([s.psnr.mean - f.psnr.mean for s, f in runs]) > 1.5
        assert np.mean([s.ssim.mean - f.ssim.mean for s, f in runs]) > 0.05


def test_etc_on_grayscale_and_ele(fashion):
    scores, floor = jigsaw(fashion, "etc", "image", 4)
    assert scores.ssim.mean > floor.ssim.mean + 0.05
    # ele: nothing inside a block survives but its folded nibbles; flat patches still beat noise
    scores, floor = jigsaw(fashion, "ele", "image", 4)
    assert scores.psnr.mean > floor.psnr.mean + 3


def test_etc_candidates_contain_every_block_decryption(cifar):
    encrypted = attacker_encrypt("etc", {"block_size": 4}, "image", cifar[:2], TARGET, "the target's key")
    layout = block_layout(32, 32, 3, 4)
    cand = etc_candidates(4, 3)
    assert len(cand) == 96
    for k in range(2):
        options = cand.decryptions(encrypted[k].reshape(-1)[layout])  # blocks, T, L
        plain_blocks = cifar[k].reshape(-1)[layout]
        assert all((options == block).all(-1).any() for block in plain_blocks)


@pytest.mark.parametrize("channels, square, size", [(3, True, 96), (1, True, 16), (3, False, 48)])
def test_whole_image_variants_form_a_group(cifar, channels, square, size):
    images = cifar[:2, :, :, :channels] if square else cifar[:2, :16, :, :channels]
    variants = WholeImageVariants(channels, square, per_image=True)
    assert len(variants) == size
    for t in range(len(variants)):
        moved = variants.apply(images, t)
        assert moved.shape == images.shape
        assert any(np.array_equal(variants.apply(moved, u), images) for u in range(len(variants)))


def test_jigsaw_applies_to_blocks_that_move():
    jig = {a.name: a for a in attacks()}["jigsaw"]
    assert jig.not_applicable(Target("le", {}, "dataset", (32, 32, 3))).startswith("no jigsaw solver")
    assert jig.not_applicable(Target("pe", {}, "dataset", (32, 32, 3))).startswith("not block-wise")
    assert jig.not_applicable(Target("ele", {}, "image", (32, 32, 3))) is None


def test_audit_reports_the_jigsaw_row(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "etc"
    encrypt(cifar10_dir, out, key_file, "--method", "etc", "--key-scope", "image", "--block-size", 8)
    r = ppencrypt("audit", out, "--plain", cifar10_dir, "--split", "train", "-n", 10, "-o", tmp_path / "r")
    assert r.exit_code == 0, r.output
    rows = {row["attack"]: row for row in json.loads((tmp_path / "r.json").read_text())["attacks"]}
    assert rows["jigsaw"]["stats"] == {"pieces": 16, "candidates": 96}
    assert rows["jigsaw"]["ssim"]["mean"] > rows["identity"]["ssim"]["mean"] + 0.05
    assert "per image" in rows["jigsaw"]["note"]
    assert rows["learned"]["not_applicable"] == "a learned attack: pass --learned"
