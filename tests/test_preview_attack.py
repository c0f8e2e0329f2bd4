"""``ppencrypt preview --attack`` (issue 25, part 3): each sample beside what the audit's learned
attack reconstructs of it, on real Fashion-MNIST images with a tiny training budget; the
column is the audit's own inverter trained on the images ``audit --learned`` would choose; the
command's errors where the attack does not apply or has no public images."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import encrypt, ppencrypt, tile_real, write_fmnist_idx
from PIL import Image

from ppencrypt.audit.attacks import Target
from ppencrypt.audit.learned import LearnedInverter
from ppencrypt.audit.public import Budget, Learner, PublicImages
from ppencrypt.formats import open_dataset
from ppencrypt.pictures import MIN_TILE
from ppencrypt.preview import layout

pytest.importorskip("torch")  # the train extra; test_attack_without_torch covers its absence

STEPS = ("--train-steps", 3)
SCALE = -(-MIN_TILE // 28)  # 28-pixel images are enlarged 4x


@pytest.fixture
def fm(tmp_path, fmnist):
    """200 distinct real Fashion-MNIST images (the vendored 20, rolled): 40 test, 160 train."""
    images, labels = tile_real(*fmnist, 200)
    return write_fmnist_idx(tmp_path / "fm", images, labels, n_test=40), images, labels


def tiles_of(picture, lay, n_columns, column):
    image = np.asarray(Image.open(picture))
    image = image[..., None] if image.ndim == 2 else image
    size = 28 * SCALE
    return np.stack([image[y : y + size : SCALE, x : x + size : SCALE] for x, y in lay.tiles[column::n_columns]])


def test_attack_column_is_the_audits_learned_inverter(tmp_path, fm, key_file):
    """With the key: plain | encrypted | learned attack per sample, headed so; the attack column is
    what the audit's `learned` attack makes of the samples when trained, as `audit --learned` trains
    it by default, on the train split's plain images — not a plain or encrypted tile again."""
    src, images, labels = fm
    out = tmp_path / "out"
    encrypt(src, out, key_file)  # pe, a key per image: the default
    picture = tmp_path / "p.png"
    r = ppencrypt("preview", out, "-o", picture, "--key", key_file, "--split", "test", "-n", 4, "--attack", *STEPS)
    assert r.exit_code == 0, r.output
    assert r.stdout == f"{picture}: 4 samples (plain | encrypted | learned attack)\n"
    ds = open_dataset(out)
    names = [ds.manifest.classes[int(v)] for v in labels[:4]]
    lay = layout(names, True, (28 * SCALE, 28 * SCALE), attack=True)
    assert Image.open(picture).size == lay.size
    assert [h.text for h in lay.headers] == ["plain", "encrypted", "learned attack"] * (len(lay.headers) // 3)
    stored = ds.split("test").head(4)
    assert np.array_equal(tiles_of(picture, lay, 3, 0), images[:4])
    assert np.array_equal(tiles_of(picture, lay, 3, 1), stored.images)
    m = ds.manifest
    public = PublicImages(images[40:], labels[40:], True, str(src), ["train"], 0)
    target = Target(m.cipher.method, dict(m.cipher.params), m.cipher.key_scope, m.shape)
    expected = LearnedInverter().run(stored.images, target, learner=Learner(public, Budget(3, 180.0, 0))).images
    attacked = tiles_of(picture, lay, 3, 2)
    assert np.array_equal(attacked, expected)
    assert not np.array_equal(attacked, images[:4]) and not np.array_equal(attacked, stored.images)


def test_attack_without_the_key_trains_on_public_images(tmp_path, fm, key_file):
    """No key: encrypted | learned attack, from --public SRC2; without either, a usage error."""
    src, images, labels = fm
    out = tmp_path / "out"
    encrypt(src, out, key_file, "--method", "bsm")  # the learned attack applies to every keyed method
    picture = tmp_path / "p.png"
    r = ppencrypt("preview", out, "-o", picture, "-n", 3, "--attack", *STEPS)
    assert (r.exit_code, r.stdout) == (2, "") and "--public SRC2, or --key" in r.stderr and not picture.exists()
    r = ppencrypt("preview", out, "-o", picture, "-n", 3, "--attack", "--public", src, *STEPS)
    assert r.exit_code == 0, r.output
    assert r.stdout == f"{picture}: 3 samples (encrypted | learned attack)\n"
    lay = layout(["x"] * 3, False, (28 * SCALE, 28 * SCALE), attack=True)
    assert Image.open(picture).size == lay.size and [h.text for h in lay.headers][:2] == ["encrypted", "learned attack"]
    again = tmp_path / "q.png"
    assert ppencrypt("preview", out, "-o", again, "-n", 3, "--attack", "--public", src, *STEPS).exit_code == 0
    assert picture.read_bytes() == again.read_bytes()  # the attacker's seed fixes its training


def test_attack_where_it_does_not_apply(tmp_path, fm):
    """A plain dataset: nothing to reconstruct: one line, exit 2, nothing written."""
    src, _, _ = fm
    out = tmp_path / "plain"
    encrypt(src, out, None, "--method", "plain")
    picture = tmp_path / "p.png"
    r = ppencrypt("preview", out, "-o", picture, "--attack", "--public", src, *STEPS)
    assert (r.exit_code, r.stdout) == (2, "") and not picture.exists()
    assert "method plain: no key: the images are not encrypted" in r.stderr and "Traceback" not in r.stderr


def test_attack_options_without_attack_and_a_single_split(tmp_path, fm, fmnist, key_file):
    src, _, _ = fm
    out = tmp_path / "out"
    encrypt(src, out, key_file)
    for extra in (STEPS, ("--public", src), ("--public-n", 5), ("--seed", 1)):
        r = ppencrypt("preview", out, "-o", tmp_path / "p.png", *extra)
        assert r.exit_code == 2 and f"{extra[0]} belongs to --attack" in r.stderr, r.output
    one = tmp_path / "one"  # an ImageFolder of one split: no other split to take public images from
    folder = tmp_path / "folder"
    for i, (im, label) in enumerate(zip(*fmnist)):
        (folder / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(im[..., 0]).save(folder / f"c{label}" / f"{i:02d}.png")
    encrypt(folder, one, key_file)
    r = ppencrypt("preview", one, "-o", tmp_path / "p.png", "--key", key_file, "--attack", *STEPS)
    assert (r.exit_code, r.stdout) == (1, "") and "no split besides 'train'" in r.stderr and "pass --public" in r.stderr
    assert not (tmp_path / "p.png").exists()


def test_attack_without_torch(tmp_path, fm, key_file):
    src, _, _ = fm
    out = tmp_path / "out"
    encrypt(src, out, key_file)
    code = "import sys; sys.modules['torch'] = None; from ppencrypt.cli import main; main(sys.argv[1:])"
    args = ["preview", str(out), "-o", str(tmp_path / "p.png"), "--key", str(key_file), "--attack"]
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        "Error: ppencrypt preview --attack needs torch, which is not installed: pip install 'ppencrypt[train]'"]
    assert not (tmp_path / "p.png").exists()
