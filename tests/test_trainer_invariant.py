"""pptrain --adapt invariant: the network's output is exactly the same for a plain image and
for every image of it under the cipher's pixel group (every NP mask, every colour order), on
real images; the statistic comes from the manifest's pixel group; the refusals."""

import json

import numpy as np
import pytest
import torch

from conftest import SALT
from ppencrypt.ciphers import make_cipher
from ppencrypt.ciphers.base import PixelGroup
from ppencrypt.keys import KeyRing
from test_plugins import toy_methods  # noqa: F401  (fixture: the toy 'mono-np' method, pixel group 'other')
from test_trainer_cli import TINY, run
from pptrain.augment import normalise
from pptrain.model import PrivacyResNet, invariant_statistic
from trainer_fixtures import encrypt, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)


def apply_element(x: np.ndarray, group: PixelGroup, t: np.ndarray) -> np.ndarray:
    """N x H x W x C uint8 ``x`` with group element ``t[n, i, j]`` applied to each pixel:
    negate the components the element flips, then move them to its colour order."""
    perms, flips = group.perms[t], group.flips[t]  # N x H x W x C
    negated = np.where(flips.astype(bool), 255 - x, x)
    return np.take_along_axis(negated, perms, axis=-1)


def outputs(model, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(normalise(torch.from_numpy(images)).contiguous())


@pytest.mark.parametrize("channels, permutes, kind", [(1, False, "negations"), (3, False, "negations"), (3, True, "signed-permutations")])
def test_invariant_network_gives_identical_outputs_for_every_group_element(cifar10, fmnist, channels, permutes, kind):
    images = (cifar10[0] if channels == 3 else fmnist[0])[:6]
    group = PixelGroup.generated(channels, negates=True, permutes=permutes)
    assert group.kind == kind and len(group) == (2**channels) * (6 if permutes else 1)
    torch.manual_seed(0)
    model = PrivacyResNet(channels, 10, 4, "invariant", group=kind).eval()
    pixel = PrivacyResNet(channels, 10, 4, "pixel").eval()
    plain, plain_pixel = outputs(model, images), outputs(pixel, images)
    rng = np.random.default_rng(0)
    for t in range(len(group)):  # every element, on every pixel at once
        moved = apply_element(images, group, np.full(images.shape[:3], t))
        assert torch.equal(outputs(model, moved), plain), t
    mixed = apply_element(images, group, rng.integers(0, len(group), images.shape[:3]))  # a random element per pixel
    assert not np.array_equal(mixed, images)
    assert torch.equal(outputs(model, mixed), plain)
    assert not torch.allclose(outputs(pixel, mixed), plain_pixel)  # [P]'s network is not invariant: the test can fail


@pytest.mark.parametrize("method, channels", [("pe", 3), ("np", 3), ("pe", 1)])
def test_invariant_statistic_of_real_ciphertext_under_image_keys_is_the_plaintexts(cifar10, fmnist, master_key, method, channels):
    images = (cifar10[0] if channels == 3 else fmnist[0])[:8]
    cipher = make_cipher(method)
    group = cipher.pixel_group(channels).kind
    ring = KeyRing(master_key.secret, method, "image", "train", SALT)
    enc = cipher.encrypt(images, ring, np.arange(len(images)))
    assert not np.array_equal(enc, images)
    plain_stat = invariant_statistic(normalise(torch.from_numpy(images)), group)
    assert torch.equal(invariant_statistic(normalise(torch.from_numpy(enc)), group), plain_stat)


def test_identity_group_statistic_is_the_image_and_unknown_groups_are_refused():
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(invariant_statistic(x, "identity"), x)
    with pytest.raises(ValueError, match="no invariant statistic for pixel group 'other'"):
        invariant_statistic(x, "other")
    with pytest.raises(ValueError, match="--adapt invariant needs a pixel group"):
        PrivacyResNet(3, 10, 4, "invariant", group=None)


def test_invariant_run_records_its_group_and_eval_rebuilds_it(shapes_pe, tmp_path):
    r = tmp_path / "r"
    run(shapes_pe, *TINY, "--epochs", 1, "--adapt", "invariant", "--run-dir", r)
    c = json.loads((r / "config.json").read_text())
    assert c["model"]["adapt"] == c["resolved"]["adapt"] == "invariant" and c["model"]["adapt_group"] == "negations"
    history = [json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()]
    got = json.loads(run("eval", r, shapes_pe, "--json").stdout)
    assert got["accuracy"] == pytest.approx(history[-1]["test_acc"]) and got["loss"] == pytest.approx(history[-1]["test_loss"], rel=1e-5)


def test_invariant_is_refused_where_the_manifest_states_no_group_it_handles(toy_methods, shapes_src, cifar10_dir, session_key, tmp_path):
    le = encrypt(shapes_src, tmp_path / "le", session_key, method="le", shard_size=64)
    r = run(le, *TINY, "--adapt", "invariant", "--run-dir", tmp_path / "a", code=2)
    assert r.output.endswith(f"Error: Invalid value for '--adapt': {le}: --adapt invariant needs a cipher whose pixel group is one "
                             "of identity, negations, signed-permutations; this dataset's (le) is not stated (not pixel-wise) "
                             "(use --adapt pixel)\n")  # fmt: skip
    toy = encrypt(cifar10_dir, tmp_path / "toy", session_key, method="mono-np", shard_size=64)  # on RGB its group is 'other'
    r = run(toy, "--width", 4, "--batch-size", 4, "--quiet", "--adapt", "invariant", "--run-dir", tmp_path / "b", code=2)
    assert "this dataset's (mono-np) is other (use --adapt pixel)" in r.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("method, channels", [("pe", 3), ("np", 1)])
def test_under_image_keys_the_model_sees_what_fr_basic_shows(cifar10, fmnist, master_key, method, channels):
    """docs/privacy.md: the invariant statistic is fr-basic's reconstruction, affinely (127.5 -
    fr-basic per component), with each pixel's components sorted where the colour order is keyed."""
    from ppencrypt.audit.attacks import FeatureReconstructionBasic

    images = (cifar10[0] if channels == 3 else fmnist[0])[:8]
    cipher = make_cipher(method)
    enc = cipher.encrypt(images, KeyRing(master_key.secret, method, "image", "train", SALT), np.arange(len(images)))
    folded = FeatureReconstructionBasic().run(enc, None).images.astype(np.float64)  # N x H x W x C
    expected = np.sort(127.5 - folded, axis=-1) / 127.5  # sorting is a no-op for one channel
    stat = invariant_statistic(normalise(torch.from_numpy(enc)), cipher.pixel_group(channels).kind)
    assert np.allclose(stat.permute(0, 2, 3, 1).numpy(), expected, atol=1e-6)
