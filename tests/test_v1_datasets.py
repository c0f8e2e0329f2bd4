"""Datasets written by earlier releases keep working: tests/data/v1/ holds three datasets
written by ppencrypt 0.1.0 (manifest version 1, before the cipher section stated the method's
facts; tests/data/README.md). They verify, decrypt to the vendored images, audit and train."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CIFAR10_NAMES, DATA, load_vendored, ppencrypt, read_pngs, write_cifar10
from ppencrypt.formats import open_dataset
from ppencrypt.keys import HEADER
from pptrain.cli import cli as pptrain

V1 = DATA / "v1"
KEY = bytes(range(32))  # the key the fixtures were made with (a test key, public on purpose)
FACTS = {  # dataset: (family, adapt, block, pixel_group)
    "fmnist-pe-dataset-wds": ("pixel", "pixel", None, "negations"),
    "cifar10-pe-image-zarr": ("pixel", "pixel", None, "signed-permutations"),
    "cifar10-le-dataset-wds": ("block", "tanaka", 4, None),
}


@pytest.fixture
def v1_key(tmp_path) -> Path:
    path = tmp_path / "v1.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, f"{HEADER} {KEY.hex()}\n".encode())
    os.close(fd)
    return path


def copy(name: str, tmp_path: Path) -> Path:
    """A writable copy: the commands must not need to write into a dataset, but the checked-in
    one must never be touched by a test that goes wrong."""
    return Path(shutil.copytree(V1 / name, tmp_path / name))


@pytest.mark.parametrize("name", FACTS)
def test_v1_manifests_load_with_their_methods_facts(name, tmp_path):
    assert json.loads((V1 / name / "manifest.json").read_text())["version"] == 1
    c = open_dataset(copy(name, tmp_path)).manifest.cipher
    assert (c.family, c.adapt, c.block, c.pixel_group) == FACTS[name]
    r = ppencrypt("verify", tmp_path / name)
    assert r.exit_code == 0 and r.output.startswith(f"{tmp_path / name}: OK (")


@pytest.mark.parametrize("name, vendored, classes", [
    ("fmnist-pe-dataset-wds", "fashion-mnist", [str(i) for i in range(10)]),  # its source folder had no class names
    ("cifar10-pe-image-zarr", "cifar10", CIFAR10_NAMES),
    ("cifar10-le-dataset-wds", "cifar10", CIFAR10_NAMES),
])  # fmt: skip
def test_v1_datasets_decrypt_to_the_vendored_images(name, vendored, classes, v1_key, tmp_path):
    """The fixtures were made with 5 test images first (conftest's writers), the rest train."""
    r = ppencrypt("decrypt", copy(name, tmp_path), tmp_path / "dec", "--key", v1_key, "--quiet")
    assert r.exit_code == 0, r.output
    images, labels = load_vendored(vendored)
    got = read_pngs(tmp_path / "dec")
    assert len(got) == 20
    for i in range(20):
        split, index = ("test", i) if i < 5 else ("train", i - 5)
        assert np.array_equal(got[f"{split}/{classes[labels[i]]}/{index:08d}.png"], images[i])


def test_v1_datasets_train_with_the_adaptation_network_their_method_needs(tmp_path):
    """The manifest's network, or the key-invariant one where its (legacy) pixel group allows."""
    for name, (_, fact, block, group) in FACTS.items():
        adapt = "invariant" if group in ("negations", "signed-permutations") else fact
        data, run_dir = copy(name, tmp_path), tmp_path / f"run-{name}"
        args = [str(data), "--width", "4", "--batch-size", "5", "--epochs", "1", "--quiet", "--augment", "none", "--run-dir", str(run_dir)]
        r = CliRunner().invoke(pptrain, args)
        assert r.exit_code == 0, r.output
        model = json.loads((run_dir / "config.json").read_text())["model"]
        assert (model["adapt"], model["adapt_block"]) == (adapt, block)


def test_v1_datasets_audit(tmp_path, cifar10):
    src = write_cifar10(tmp_path / "cifar-10-batches-py", *cifar10)
    r = ppencrypt("audit", copy("cifar10-pe-image-zarr", tmp_path), "--plain", src, "--split", "train", "-n", 10, "-o", tmp_path / "a")
    assert r.exit_code == 0, r.output
    rows = {row["attack"]: row for row in json.loads((tmp_path / "a.json").read_text())["attacks"]}
    assert rows["identity"]["count"] == 10 and rows["known-plaintext"]["exact"] == 0  # a key per image


def test_v1_datasets_audit_with_the_key_warns_that_nothing_authenticates_them(tmp_path, cifar10, v1_key):
    """A version 1 manifest has no MAC: `audit --key` still audits it (as verify and decrypt do),
    with their warning, and the report says it is unauthenticated."""
    src = write_cifar10(tmp_path / "cifar-10-batches-py", *cifar10)
    out = copy("cifar10-pe-image-zarr", tmp_path)
    r = ppencrypt("audit", out, "--plain", src, "--split", "train", "-n", 4, "-o", tmp_path / "a", "--key", v1_key)
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith(f"warning: {out / 'manifest.json'}: manifest version 1 carries no MAC")
    assert "manifest: unauthenticated" in r.stdout and json.loads((tmp_path / "a.json").read_text())["manifest"] == "unauthenticated"
