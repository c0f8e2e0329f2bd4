"""ppencrypt audit: the attacks on real images (what falls under a dataset-scope key and what
must not under an image-scope key), the command's reports, and its exit codes."""

import json

import numpy as np
import pytest
from conftest import SALT, encrypt, load_vendored, ppencrypt, tree_bytes, write_cifar10, write_imagefolder
from PIL import Image

from ppencrypt.audit.attacks import KnownPairs, Target, attacks
from ppencrypt.audit.audit import pick_variant
from ppencrypt.audit.candidates import pixel_candidates
from ppencrypt.audit.greedy import greedy_scan
from ppencrypt.audit.metrics import PSNR_CAP, Scores
from ppencrypt.ciphers import make_cipher
from ppencrypt.keys import KeyRing
from ppencrypt.keys import load_key

MASTER = bytes(range(32))


def encrypt_arrays(images, method, scope):
    cipher = make_cipher(method)
    ring = KeyRing(MASTER, method, scope, "test" if scope == "image" else None, SALT if scope == "image" else None)
    return cipher.encrypt(images, ring, np.arange(len(images)))


def run(name, images, method, scope, k=1):
    """Attack ``name`` on ``images`` encrypted with ``method``/``scope``; the first k are the
    known pairs. Returns (scores of the rest, stats)."""
    cipher = encrypt_arrays(images, method, scope)
    attack = {a.name: a for a in attacks()}[name]
    target = Target(method, {}, scope, images.shape[1:])
    assert attack.not_applicable(target) is None
    out = attack.run(cipher[k:], target, KnownPairs(images[:k], cipher[:k]) if attack.needs_pairs else None)
    return Scores.of(out.images, images[k:]), out.stats, out


@pytest.fixture(scope="module")
def cifar():
    return load_vendored("cifar10")[0]


@pytest.fixture(scope="module")
def fashion():
    return load_vendored("fashion-mnist")[0]


# --- known-plaintext --------------------------------------------------------------------------


def test_known_plaintext_recovers_a_dataset_scope_pe_key_exactly(cifar):
    scores, stats, _ = run("known-plaintext", cifar, "pe", "dataset", k=4)
    assert scores.exact == scores.count == 16  # reconstruction identical to the plain images
    assert stats["determined"] == stats["positions"] == 1024 and stats["uncertain_pixels"] == 0


def test_one_pair_leaves_only_the_pixels_it_reports_uncertain(cifar):
    scores, stats, out = run("known-plaintext", cifar, "pe", "dataset", k=1)
    assert stats["ambiguous"] > 0  # equal components in the known image: several colour codes fit
    wrong = (out.images != cifar[1:]).any(-1)
    assert wrong.sum() <= stats["uncertain_pixels"]
    assert (~wrong.reshape(len(wrong), -1).any(1)).sum() >= scores.count - stats["uncertain_images"]
    assert scores.psnr.mean > 25


@pytest.mark.parametrize("method", ["pe", "np"])
def test_known_plaintext_fails_under_an_image_scope_key(cifar, method):
    floor, _, _ = run("identity", cifar, method, "image")
    scores, _, _ = run("known-plaintext", cifar, method, "image", k=1)
    assert scores.exact == 0
    assert abs(scores.psnr.mean - floor.psnr.mean) < 1.0  # near the identity floor
    assert scores.ssim.mean < 0.05


def test_two_pairs_under_an_image_scope_key_contradict_each_other(cifar):
    _, stats, _ = run("known-plaintext", cifar, "pe", "image", k=2)
    assert stats["inconsistent"] > 0.9 * stats["positions"]


@pytest.mark.parametrize("method, k", [("np", 1), ("le", 1), ("etc", 2)])
def test_known_plaintext_recovers_other_dataset_scope_keys(cifar, method, k):
    scores, stats, _ = run("known-plaintext", cifar, method, "dataset", k=k)
    assert scores.exact == scores.count
    assert stats["inconsistent"] == 0


@pytest.mark.parametrize("method", ["le", "ele", "etc"])
def test_block_key_recovery_fails_under_an_image_scope_key(cifar, method):
    floor, _, _ = run("identity", cifar, method, "image")
    scores, _, _ = run("known-plaintext", cifar, method, "image", k=2)
    assert scores.exact == 0 and scores.psnr.mean < floor.psnr.mean + 1.0


def test_ele_needs_more_than_one_pair(fashion):
    one, _, _ = run("known-plaintext", fashion, "ele", "dataset", k=1)
    four, stats, _ = run("known-plaintext", fashion, "ele", "dataset", k=4)
    assert four.psnr.mean > one.psnr.mean + 5 and stats["blocks_determined"] > stats["blocks"] // 2


# --- ciphertext-only ------------------------------------------------------------------------


def test_fr_basic_on_np_beats_identity_by_a_wide_margin(cifar, fashion):
    for images, dpsnr, dssim in ((fashion, 6.0, 0.3), (cifar, 1.0, 0.1)):
        floor, _, _ = run("identity", images, "np", "dataset")
        basic, _, _ = run("fr-basic", images, "np", "dataset")
        assert basic.psnr.mean > floor.psnr.mean + dpsnr
        assert basic.ssim.mean > floor.ssim.mean + dssim


def test_fr_advanced_on_np_is_fr_basic(cifar):
    """From a folded first pixel the greedy never leaves the fold (greedy.py's docstring)."""
    _, _, basic = run("fr-basic", cifar, "np", "image")
    _, stats, advanced = run("fr-advanced", cifar, "np", "image")
    assert stats["candidates"] == 8 and np.array_equal(advanced.images, basic.images)


def test_fr_advanced_on_pe_recovers_colour_orders(cifar):
    basic, _, _ = run("fr-basic", cifar, "pe", "image")
    advanced, _, _ = run("fr-advanced", cifar, "pe", "image")
    assert advanced.ssim.mean > basic.ssim.mean + 0.02


def test_greedy_scan_keeps_a_smooth_image_whole():
    """A smooth image below 128 whose components differ is continued exactly from its first
    pixel — up to that pixel's colour order, which nothing tells (one global variant)."""
    i, j = np.mgrid[0:16, 0:16]
    smooth = np.stack([5 + j, 120 - i, 40 + i + j], -1).astype(np.uint8)[None].repeat(2, 0)
    cipher = encrypt_arrays(smooth, "pe", "image")
    cand = pixel_candidates("pe", 3)
    rec, chosen = greedy_scan(cipher, cand, shared=False)
    assert chosen.shape == (2, 16, 16)
    for n in range(2):
        assert any(np.array_equal(cand.decryptions(rec[n])[..., t, :], smooth[n]) for t in range(len(cand)))


def test_fr_shared_breaks_a_dataset_scope_key_without_a_pair(cifar):
    scores, _, out = run("fr-shared", cifar, "pe", "dataset", k=1)
    assert out.variants is not None  # the audit picks one global variant (audit.pick_variant)
    images, _ = pick_variant(out.images, cifar[1:], out.variants)
    assert np.array_equal(images, cifar[1:])
    failing, _, out = run("fr-shared", cifar, "pe", "image", k=1)
    images, _ = pick_variant(out.images, cifar[1:], out.variants)
    assert Scores.of(images, cifar[1:]).ssim.mean < 0.1


def test_pixel_attacks_do_not_apply_to_block_methods_or_plain():
    names = {a.name: a for a in attacks()}
    le = Target("le", {}, "dataset", (32, 32, 3))
    plain = Target("plain", {}, None, (32, 32, 3))
    assert names["fr-advanced"].not_applicable(le) and names["fr-shared"].not_applicable(plain)
    assert names["known-plaintext"].not_applicable(plain) == "no key"
    assert names["known-plaintext"].not_applicable(le) is None


# --- the command ----------------------------------------------------------------------------


def audit(*args):
    return ppencrypt("audit", *args)


def test_audit_writes_the_table_and_both_reports(tmp_path, encrypted, cifar10_dir, key_file):
    before = tree_bytes(encrypted)
    prefix = tmp_path / "reports" / "r"
    prefix.parent.mkdir()
    r = audit(encrypted, "--plain", cifar10_dir, "--split", "train", "-k", 4, "-o", prefix)
    assert r.exit_code == 0, r.output
    for name in ("identity", "fr-basic", "fr-advanced", "fr-shared", "known-plaintext"):
        assert any(line.startswith(name) for line in r.stdout.splitlines())
    assert "11 images scored, 4 known pairs not scored" in r.stdout
    assert sorted(p.name for p in prefix.parent.iterdir()) == ["r.json", "r.png"]
    doc = json.loads(prefix.with_suffix(".json").read_text())
    assert (doc["method"], doc["key_scope"], doc["scored_images"], doc["known_pairs"]) == ("pe", "dataset", 11, 4)
    rows = {row["attack"]: row for row in doc["attacks"]}
    assert rows["known-plaintext"]["exact"] == 11 and rows["known-plaintext"]["psnr"]["mean"] == PSNR_CAP
    assert rows["identity"]["psnr"]["mean"] < 12
    assert round(doc["key_space"]["bits"]) == 5719
    # no key material anywhere: not the key, not its id; and the dataset is untouched
    key = load_key(key_file)
    text = prefix.with_suffix(".json").read_text()
    assert key.secret.hex() not in text and key.key_id not in text
    assert tree_bytes(encrypted) == before
    picture = Image.open(prefix.with_suffix(".png"))
    # 4 rows x 6 columns (plain + 5 attacks) of 96-pixel tiles with 2-pixel gaps, a 14-pixel caption
    assert picture.size == (6 * 98 + 2, 4 * 98 + 2 + 14)


def test_audit_of_a_grayscale_block_method_and_plain(tmp_path, fmnist_dir, key_file):
    for method, key in (("etc", key_file), ("plain", None)):
        out = tmp_path / method
        encrypt(fmnist_dir, out, key, "--method", method)
        r = audit(out, "--plain", fmnist_dir, "--split", "train", "-n", 6, "-o", tmp_path / method)
        assert r.exit_code == 0, r.output
        assert "6 images scored" in r.stdout
        doc = json.loads((tmp_path / f"{method}.json").read_text())
        rows = {row["attack"]: row for row in doc["attacks"]}
        assert "not_applicable" in rows["fr-advanced"]
    assert rows["identity"]["exact"] == 6 and rows["known-plaintext"]["not_applicable"] == "no key"


def test_usage_errors_exit_2(encrypted, cifar10_dir):
    assert audit(encrypted).exit_code == 2  # --plain is required
    assert audit(encrypted, "--plain", cifar10_dir, "-n", 0).exit_code == 2
    assert audit(encrypted, "--plain", cifar10_dir, "-k", 0).exit_code == 2


def expect_error(r, *words):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1
    for w in words:
        assert w in r.stderr, r.stderr


def test_missing_split_or_dataset(tmp_path, encrypted, cifar10_dir):
    expect_error(audit(encrypted, "--plain", cifar10_dir, "--split", "val", "-o", tmp_path / "r"), "no split 'val'")
    expect_error(audit(tmp_path / "nothing", "--plain", cifar10_dir, "-o", tmp_path / "r"), "no such dataset")
    expect_error(audit(encrypted, "--plain", tmp_path / "nothing", "-o", tmp_path / "r"), "no such directory")
    assert not (tmp_path / "r.json").exists()


def test_plain_source_that_does_not_match(tmp_path, encrypted, cifar10, fmnist_dir):
    o = ("-o", tmp_path / "r")
    expect_error(audit(encrypted, "--plain", fmnist_dir, *o), "28x28x1", "not the dataset's source")
    images, labels = cifar10
    fewer = write_cifar10(tmp_path / "fewer", images[:18], labels[:18], n_test=3)
    expect_error(audit(encrypted, "--plain", fewer, *o), "split test has 3 images, the dataset 5")
    shuffled = write_cifar10(tmp_path / "shuffled", images[::-1], labels[::-1])
    expect_error(audit(encrypted, "--plain", shuffled, *o), "another label")


def test_too_few_images_for_the_pairs(tmp_path, encrypted, cifar10_dir):
    expect_error(audit(encrypted, "--plain", cifar10_dir, "-k", 5, "-o", tmp_path / "r"), "5 known pairs leave none to score")


def test_refuses_a_dataset_that_skipped_files(tmp_path, cifar10, key_file):
    src = write_imagefolder(tmp_path / "folder", *cifar10)
    (src / "class_0" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    encrypt(src, out, key_file, "--skip-bad")
    expect_error(audit(out, "--plain", src, "--split", "train", "-o", tmp_path / "r"), "--skip-bad")


def test_refuses_to_write_the_report_inside_the_dataset(encrypted, cifar10_dir):
    expect_error(audit(encrypted, "--plain", cifar10_dir, "-o", encrypted / "report"), "inside the encrypted dataset")
    assert not (encrypted / "report.png").exists()
