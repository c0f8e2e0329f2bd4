"""ppencrypt audit --learned: the attacks an adversary trains on images of its own, and the
recognition score, on real images with tiny training budgets (seconds); the command's errors
without torch or with unusable public images."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import encrypt, ppencrypt, tile_real, write_fmnist_idx

from ppencrypt.audit.attacker import attacker_encrypt
from ppencrypt.audit.attacks import Target, attacks
from ppencrypt.audit.metrics import Scores
from ppencrypt.audit.public import Budget, Learner, PublicImages

pytest.importorskip("torch")  # the train extra; test_learned_without_torch covers its absence

QUICK = ("--train-steps", 20, "--train-seconds", 60)  # enough to check the wiring


def public_of(images, labels=None):
    labels = np.zeros(len(images), np.int64) if labels is None else labels
    return PublicImages(images, labels, labels is not None, "test", ["train"], 0)


def varied(images, n):
    """n distinct real images from a few: rolled (tile_real) and, every other round, mirrored."""
    tiled, _ = tile_real(images, np.zeros(len(images), np.int64), n)
    tiled[1::2] = tiled[1::2, :, ::-1]
    return tiled


def run(name, ciphertexts, target, public, steps):
    attack = {a.name: a for a in attacks()}[name]
    assert attack.not_applicable(target) is None
    return attack.run(ciphertexts, target, learner=Learner(public, Budget(steps, 60.0, seed=0)))


def test_the_learned_inverter_beats_identity_on_np_with_a_dataset_key(fmnist):
    """Trained for a few seconds on 300 images it never scores (the other half of the vendored
    Fashion-MNIST images, rolled and mirrored), encrypted under keys of its own."""
    images, _ = fmnist
    scored, public = images[:10], varied(images[10:], 300)
    target = Target("np", {}, "dataset", scored.shape[1:])
    ciphertexts = attacker_encrypt("np", {}, "dataset", scored, seed=99, purpose="the target's key")
    out = run("learned", ciphertexts, target, public_of(public), steps=60)
    learned, floor = Scores.of(out.images, scored), Scores.of(ciphertexts, scored)
    assert learned.psnr.mean > floor.psnr.mean + 5
    assert learned.ssim.mean > floor.ssim.mean + 0.25
    assert out.stats["steps"] == 60 and out.stats["trained_on"] == 300


def test_learned_shared_needs_no_viewer(fmnist):
    """fr-shared's global negation, chosen by a net that has seen public images: exact."""
    images, _ = fmnist
    scored, public = images[:10], varied(images[10:], 200)
    ciphertexts = attacker_encrypt("pe", {}, "dataset", scored, seed=99, purpose="the target's key")
    out = run("learned-shared", ciphertexts, Target("pe", {}, "dataset", scored.shape[1:]), public_of(public), steps=30)
    assert out.variants is None  # no viewer
    assert np.array_equal(out.images, scored)


def test_attacker_keys_follow_the_scope_and_the_seed(fmnist):
    images = fmnist[0][:4]
    once, again = attacker_encrypt("pe", {}, "image", images, 1), attacker_encrypt("pe", {}, "image", images, 1)
    assert np.array_equal(once, again) and not np.array_equal(once, attacker_encrypt("pe", {}, "image", images, 2))
    same = attacker_encrypt("np", {}, "dataset", np.repeat(images[:1], 2, 0), 1)
    other = attacker_encrypt("np", {}, "image", np.repeat(images[:1], 2, 0), 1)
    assert np.array_equal(same[0], same[1]) and not np.array_equal(other[0], other[1])


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def fm_tiled(tmp_path, fmnist):
    """Fashion-MNIST IDX files from the 20 vendored images, rolled: the test split (40: rolls 0
    and 1) is scored, the training split (160: rolls 2 to 9) is the attacker's."""
    images, labels = tile_real(*fmnist, 200)
    return write_fmnist_idx(tmp_path / "fm", images, labels, n_test=40)


def audit_json(out, src, tmp_path, *extra):
    r = ppencrypt("audit", out, "--plain", src, "-n", 39, "-o", tmp_path / "r", "--learned", *QUICK, *extra)  # later options win
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "r.json").read_text())
    return r, doc, {row["attack"]: row for row in doc["attacks"]}


def test_recognition_of_encrypted_images_is_near_chance(tmp_path, fm_tiled, key_file):
    out = tmp_path / "pe"
    encrypt(fm_tiled, out, key_file, "--method", "pe", "--key-scope", "image")
    r, doc, rows = audit_json(out, fm_tiled, tmp_path, "--train-steps", 100)
    rec = doc["recognition"]
    assert rec["plain_accuracy"] >= 0.8  # the classifier knows these garments
    assert rec["chance"] == pytest.approx(8 / 39, abs=0.03)  # roll 0 and 1 of the 20: 4 + 4 of the largest classes, less the known pair
    assert rows["identity"]["recognition_accuracy"] <= rec["chance"] + 0.15
    assert rows["fr-basic"]["recognition_accuracy"] > rows["identity"]["recognition_accuracy"]  # the fold shows the shape
    assert "learned-shared" in rows and "not_applicable" in rows["learned-shared"]  # image-scope key
    assert rows["learned"]["ssim"]["mean"] > rows["identity"]["ssim"]["mean"] + 0.2
    assert rows["learned"]["recognition_accuracy"] > rows["identity"]["recognition_accuracy"]
    assert "recog." in r.stdout and "recognition: a classifier trained on the public images" in r.stdout
    assert doc["learned"]["public"] == {"source": str(fm_tiled), "splits": ["train"], "images": 160, "dropped_as_scored": 0, "labels_used": True}


def test_on_plain_images_recognition_is_the_classifiers_accuracy(tmp_path, fm_tiled):
    out = tmp_path / "plain"
    encrypt(fm_tiled, out, None, "--method", "plain")
    _, doc, rows = audit_json(out, fm_tiled, tmp_path)
    assert rows["identity"]["recognition_accuracy"] == doc["recognition"]["plain_accuracy"]
    assert rows["learned"]["not_applicable"].startswith("no key")


def test_the_audit_is_deterministic_under_a_seed(tmp_path, fm_tiled, key_file):
    out = tmp_path / "np"
    encrypt(fm_tiled, out, key_file, "--method", "np", "--key-scope", "dataset")
    docs = [audit_json(out, fm_tiled, tmp_path, "--seed", 3)[2] for _ in range(2)]
    for name in ("learned", "learned-shared"):
        assert docs[0][name]["psnr"] == docs[1][name]["psnr"] and docs[0][name]["recognition_accuracy"] == docs[1][name]["recognition_accuracy"]


def test_public_images_that_are_the_scored_ones_are_dropped(tmp_path, fmnist, key_file):
    images, labels = fmnist
    src = write_fmnist_idx(tmp_path / "fm", np.concatenate([images, images]), np.concatenate([labels, labels]), n_test=20)
    out = tmp_path / "out"
    encrypt(src, out, key_file, "--method", "np")
    r = ppencrypt("audit", out, "--plain", src, "-n", 19, "-o", tmp_path / "r", "--learned", *QUICK)
    assert r.exit_code == 1 and "every public image is one of the images scored" in r.stderr
    # a public folder that is a copy of SRC loses the scored images, keeps the rest
    r = ppencrypt("audit", out, "--plain", src, "-n", 9, "-o", tmp_path / "r", "--learned", "--public", src, *QUICK)
    assert r.exit_code == 0, r.output
    pub = json.loads((tmp_path / "r.json").read_text())["learned"]["public"]
    assert pub["splits"] == ["train", "test"] and pub["dropped_as_scored"] == 20 and pub["images"] == 20


def expect_error(r, *words):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_bad_public_images(tmp_path, fm_tiled, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(fm_tiled, out, key_file, "--method", "np")
    base = ("audit", out, "--plain", fm_tiled, "-n", 5, "-o", tmp_path / "r", "--learned", *QUICK)
    expect_error(ppencrypt(*base, "--public", tmp_path / "nothing"), "no such directory")
    expect_error(ppencrypt(*base, "--public", cifar10_dir), "public images are 32x32x3, the dataset's are 28x28x1")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(ppencrypt(*base, "--public", empty), "empty directory")
    assert not (tmp_path / "r.json").exists()
    assert ppencrypt(*base[:-4], "--train-steps", 0).exit_code == 2


def test_learned_without_torch(tmp_path, fm_tiled, key_file):
    """A torch-free install: one line naming the extra, exit 1, nothing written."""
    out = tmp_path / "out"
    encrypt(fm_tiled, out, key_file, "--method", "np")
    code = "import sys; sys.modules['torch'] = None; from ppencrypt.cli import main; main(sys.argv[1:])"
    args = ["audit", str(out), "--plain", str(fm_tiled), "-n", "5", "-o", str(tmp_path / "r")]
    p = subprocess.run([sys.executable, "-c", code, *args, "--learned"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == ["Error: ppencrypt audit --learned needs torch, which is not installed: pip install 'ppencrypt[train]'"]
    assert not (tmp_path / "r.json").exists()
    # without --learned the same install audits (an import of torch would fail here)
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "a learned attack: pass --learned" in p.stdout


def test_audit_without_learned_does_not_import_torch(tmp_path, fm_tiled, key_file):
    out = tmp_path / "out"
    encrypt(fm_tiled, out, key_file, "--method", "np")
    code = ("import sys; from click.testing import CliRunner; from ppencrypt.cli import cli; "
            "r = CliRunner().invoke(cli, sys.argv[1:]); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")  # fmt: skip
    args = ["audit", str(out), "--plain", str(fm_tiled), "-n", "5", "-o", str(tmp_path / "r")]
    subprocess.run([sys.executable, "-c", code, *args], check=True, timeout=120)
