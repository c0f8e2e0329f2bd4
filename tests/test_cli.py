"""The commands' happy paths: dataset's summary, inspect, preview, help and version; and the
pipeline's independence from torch."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import CIFAR10_NAMES, DATA, encrypt, ppencrypt
from PIL import Image, ImageFont

from ppencrypt.ciphers import method_names
from ppencrypt.dataset import EncryptOptions
from ppencrypt.errors import OptionError
from ppencrypt.formats import open_dataset
from ppencrypt.keys import load_key
from ppencrypt.pictures import GAP
from ppencrypt.preview import CAPTION, HEADER, compose, layout


def test_dataset_prints_a_summary(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    r = ppencrypt("dataset", cifar10_dir, out, "--key", key_file, "--workers", 1, "--key-scope", "image", "--format", "zarr")
    assert r.exit_code == 0, r.output
    key_id = load_key(key_file).key_id
    dataset_id = open_dataset(out).manifest.dataset_id
    assert r.stdout == f"{out}: 15 train, 5 test images of 32x32x3, pe, key {key_id} (image scope), zarr, dataset {dataset_id}\n"


def test_size_option(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--size", 20)
    m = open_dataset(out).manifest
    assert (m.shape, m.resize) == ((20, 20, 3), 20)
    assert open_dataset(out).split("test").read().images.shape == (5, 20, 20, 3)


@pytest.mark.parametrize(
    "opts, option, message",
    [
        (dict(method="plain", scope="image"), "--key-scope", "method 'plain' uses no key, so there is no key per image"),
        (dict(method="plain", reproduce="x"), "--reproduce", "method 'plain' uses no key: the same input always gives the same output"),
        (dict(params={"block_size": 4}), "--block-size", "method 'pe' is pixel-based and takes no block size"),
        (dict(augment_seed=1), "--augment-seed", "--augment-seed belongs to --copies (the client's augmentation)"),
    ],
)
def test_options_that_do_not_fit_are_refused_by_the_library(opts, option, message):
    """The library refuses them (cli.py only reports them, as click reports a bad option)."""
    with pytest.raises(OptionError) as e:
        EncryptOptions(**opts)
    assert (e.value.option, str(e.value)) == (option, message)


def test_options_default_to_image_scope():
    assert EncryptOptions().key_scope == "image"
    assert EncryptOptions(method="plain", scope="dataset").reproduce is None  # a keyless method may name a scope it ignores


def test_inspect(encrypted, key_file):
    r = ppencrypt("inspect", encrypted)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert f"dataset   {encrypted}" in lines
    assert "method    pe" in lines
    assert f"key id    {load_key(key_file).key_id}" in lines
    assert "key scope dataset" in lines
    assert "images    32x32x3 uint8" in lines
    assert "source    cifar10" in lines
    assert any(line.startswith("split     train: 15 samples in 4 shards") for line in lines)
    assert any(line.startswith("split     test: 5 samples in 2 shards") for line in lines)
    assert "ppencrypt/v3|method=pe|scope=dataset|shape=32x32x3" in r.stdout


def test_inspect_plain(tmp_path, cifar10_dir):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, None, "--method", "plain")
    r = ppencrypt("inspect", out)
    assert "method    plain (not encrypted)" in r.stdout and "key id" not in r.stdout


SCALE = 3  # 32-pixel images are enlarged 3x to reach 96 pixels


def tile(picture: np.ndarray, lay, t: int) -> np.ndarray:
    """Tile t of a preview, where its layout puts it, shrunk back to 32 x 32."""
    x, y = lay.tiles[t]
    size = 32 * SCALE
    return picture[y : y + size : SCALE, x : x + size : SCALE]


def strip(picture: np.ndarray, label) -> np.ndarray:
    left, top, right, bottom = label.box
    return picture[top:bottom, left:right]


def test_preview_with_key_shows_encrypted_and_decrypted(tmp_path, encrypted, key_file, cifar10):
    """Issue 24: the grid said nothing of what it showed. Each column is headed "encrypted" or
    "decrypted", and under each sample its class name is written: read back from the layout the
    picture was drawn from, and seen in the pixels (a header or caption strip is not blank)."""
    picture = tmp_path / "p.png"
    r = ppencrypt("preview", encrypted, "-o", picture, "--key", key_file, "-n", 4)
    assert r.exit_code == 0 and "4 samples (encrypted | decrypted)" in r.stdout
    image = np.asarray(Image.open(picture))
    labels = [int(v) for v in cifar10[1][5:9]]  # the train split: the samples after the 5 test ones
    lay = layout([CIFAR10_NAMES[v] for v in labels], True, (96, 96))
    # 4 pairs: 2 rows of 4 tiles, a header strip, a caption strip under each row
    assert image.shape == (HEADER + 2 * (96 + CAPTION + GAP), 4 * (96 + GAP) + GAP, 3) and lay.size == image.shape[1::-1]
    assert [h.text for h in lay.headers] == ["encrypted", "decrypted", "encrypted", "decrypted"]
    assert [c.text for c in lay.captions] == [CIFAR10_NAMES[v] for v in labels]
    stored = open_dataset(encrypted).split("train").read().images
    for i in range(4):
        assert np.array_equal(tile(image, lay, 2 * i), stored[i])
        assert np.array_equal(tile(image, lay, 2 * i + 1), cifar10[0][5 + i])
    for label in lay.headers + lay.captions:
        assert (strip(image, label) < 128).any(), label  # text drawn, in black on the white strip
    assert [h.box for h in lay.headers] == [(GAP + q * 98, 0, GAP + q * 98 + 96, HEADER) for q in range(4)]
    # what a header says is in its pixels: a header of other text would draw other pixels
    enc, dec = (strip(image, h) for h in lay.headers[:2])
    assert np.array_equal(enc, strip(image, lay.headers[2])) and not np.array_equal(enc, dec)


def test_preview_labels_fit_their_strips(cifar10):
    """A class name too long for its strip is cut with "...", never drawn over the next one; the
    keyless grid heads every column "encrypted"."""
    long = "a class name far longer than one tile is wide, as an ImageFolder's folder may be"
    picture, lay = compose(np.full((3, 96, 96, 3), 200, np.uint8), ["cat", long, "dog"], False)
    assert [h.text for h in lay.headers] == ["encrypted", "encrypted"]
    assert lay.captions[0].text == "cat" and lay.captions[1].text.endswith("...") and long.startswith(lay.captions[1].text[:-3])
    font = ImageFont.load_default()
    for c in lay.captions:
        left, _, right, _ = c.box
        assert font.getlength(c.text) <= right - left
    image = np.asarray(picture)
    assert (strip(image, lay.captions[1]) < 128).any() and (image[lay.size[1] - GAP :] == 255).all()
    blank = np.asarray(compose(np.full((3, 96, 96, 3), 200, np.uint8), ["", "", ""], False)[0])
    assert not np.array_equal(strip(image, lay.captions[0]), strip(blank, lay.captions[0]))


def test_preview_without_key_and_of_a_split(tmp_path, encrypted, cifar10):
    picture = tmp_path / "p.png"
    r = ppencrypt("preview", encrypted, "-o", picture, "--split", "test")
    assert r.exit_code == 0 and r.stdout.strip() == f"{picture}: 5 samples"
    image = np.asarray(Image.open(picture))
    lay = layout([CIFAR10_NAMES[int(v)] for v in cifar10[1][:5]], False, (96, 96))
    assert image.shape == (HEADER + 2 * (96 + CAPTION + GAP), 3 * (96 + GAP) + GAP, 3)  # 5 tiles, 3 per row
    stored = open_dataset(encrypted).split("test").read().images
    assert all(np.array_equal(tile(image, lay, i), stored[i]) for i in range(5))
    assert [h.text for h in lay.headers] == ["encrypted"] * 3
    assert (image[-GAP:] == 255).all()


def test_preview_of_an_unknown_split(tmp_path, encrypted):
    r = ppencrypt("preview", encrypted, "-o", tmp_path / "p.png", "--split", "val")
    assert r.exit_code == 1 and "no split 'val'" in r.stderr
    assert not (tmp_path / "p.png").exists()


QUERY = sorted((DATA / "cifar10").glob("*.png"))[0]


@pytest.mark.parametrize("command", ["decrypt", "verify", "image", "preview", "audit", "dataset --reproduce"])
def test_a_missing_key_file_for_existing_data_never_suggests_a_new_key(tmp_path, encrypted, cifar10_dir, command):
    """Issue 24: a mistyped key path on a command that opens data a key already encrypted said
    "create one with: ppencrypt keygen ..." — a new key can never open it. It names the data
    and how to find the key it needs, and writes nothing."""
    missing = tmp_path / "mistyped.key"
    out = {"decrypt": tmp_path / "dest", "image": tmp_path / "q", "preview": tmp_path / "p.png", "audit": tmp_path / "report",
           "dataset --reproduce": tmp_path / "again"}.get(command)  # fmt: skip
    args = {
        "decrypt": ("decrypt", encrypted, out), "verify": ("verify", encrypted),
        "image": ("image", QUERY, "--like", encrypted, "-o", out), "preview": ("preview", encrypted, "-o", out),
        "audit": ("audit", encrypted, "--plain", cifar10_dir, "-o", out),
        "dataset --reproduce": ("dataset", cifar10_dir, out, "--reproduce", encrypted),
    }[command]  # fmt: skip
    r = ppencrypt(*args, "--key", missing)
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == (f"Error: {missing}: no such key file (only the key that encrypted {encrypted} can open it: "
                        f"`ppencrypt inspect {encrypted}` shows its key id; a new key never can)\n")  # fmt: skip
    assert "keygen" not in r.stderr
    assert out is None or not list(tmp_path.glob(out.name + "*"))


def test_a_missing_key_file_for_new_data_suggests_keygen(tmp_path, cifar10_dir):
    missing = tmp_path / "mistyped.key"
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "out", "--key", missing)
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == f"Error: {missing}: no such key file (create one with: ppencrypt keygen {missing})\n"
    assert not (tmp_path / "out").exists()


def test_help_lists_every_method():
    r = ppencrypt("dataset", "--help")
    assert r.exit_code == 0
    for m in method_names():
        assert f"{m}:" in " ".join(r.stdout.split())


def test_version():
    r = ppencrypt("--version")
    assert r.exit_code == 0 and r.stdout.startswith("ppencrypt, version ")


def test_pipeline_does_not_import_torch():
    code = "import ppencrypt.keys, ppencrypt.cli, ppencrypt.dataset, ppencrypt.formats, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_console_script_entry_point(tmp_path):
    """``python -m ppencrypt`` and the installed ``ppencrypt`` run the same main."""
    key = tmp_path / "k.key"
    p = subprocess.run([sys.executable, "-m", "ppencrypt", "keygen", key], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == load_key(key).key_id
