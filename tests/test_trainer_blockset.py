"""pptrain --adapt blockset: the network's output is the same (to float rounding) for a plain
image and for it under every bsm key — block positions, symmetries, per-component negations and
colour orders — on real images; it is bsm's default network and trains through pptrain."""

import json

import numpy as np
import pytest
import torch

from conftest import SALT
from ppencrypt.ciphers import make_cipher
from ppencrypt.keys import KeyRing
from test_trainer_cli import TINY, run
from pptrain.augment import normalise
from pptrain.model import PrivacyResNet
from trainer_fixtures import encrypt, session_key, shapes_src  # noqa: F401  (fixtures)


def outputs(model, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(normalise(torch.from_numpy(images)).contiguous())


@pytest.mark.parametrize("channels", [1, 3])
def test_blockset_output_is_the_same_under_every_key(cifar10, fmnist, channels):
    images = (cifar10[0] if channels == 3 else fmnist[0])[:6]
    torch.manual_seed(0)
    model = PrivacyResNet(channels, 10, width=4, adapt="blockset", block=4).eval()
    plain = outputs(model, images)
    for split in ("train", "test"):  # two key rings: 12 keys per image
        ring = KeyRing(bytes(range(32)), "bsm", "image", split, SALT)
        encrypted = make_cipher("bsm").encrypt(images, ring, np.arange(6))
        assert not np.array_equal(encrypted, images)
        assert torch.allclose(outputs(model, encrypted), plain, atol=1e-5, rtol=1e-4)
    # not a constant function: the images themselves are told apart
    assert (plain - plain.mean(0)).abs().max() > 1e-3


def test_the_pixel_network_is_not_invariant(cifar10):
    """The check above can fail: [P]'s network sees where blocks went."""
    images = cifar10[0][:4]
    torch.manual_seed(0)
    model = PrivacyResNet(3, 10, width=4, adapt="pixel").eval()
    encrypted = make_cipher("bsm").encrypt(images, KeyRing(bytes(range(32)), "bsm", "image", "train", SALT), np.arange(4))
    assert not torch.allclose(outputs(model, encrypted), outputs(model, images), atol=1e-3)


def test_pptrain_trains_blockset_on_a_bsm_dataset(tmp_path, shapes_src, session_key):
    data = encrypt(shapes_src, tmp_path / "bsm", session_key, method="bsm", shard_size=32)
    run(data, *TINY, "--epochs", "2", "--augment", "none", "--device", "cpu", "--run-dir", tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["adapt"] == "blockset" and config["model"]["adapt_block"] == 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["train_loss"]) for r in rows)
    # the run directory's record rebuilds the network (its block side) and evaluates it
    result = run("eval", tmp_path / "run", data, "--device", "cpu", "--json")
    evaluated = json.loads(result.output.strip().splitlines()[-1])
    assert abs(evaluated["accuracy"] - rows[-1]["test_acc"]) < 1e-6
