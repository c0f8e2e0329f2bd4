"""The audit's measures on constructed images: PSNR, SSIM, key-space sizes, and the table of
pixel candidates checked against the real cipher."""

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ppencrypt.audit.candidates import pixel_candidates
from ppencrypt.audit.keyspace import key_space
from ppencrypt.audit.metrics import PSNR_CAP, Scores, psnr, ssim
from ppencrypt.ciphers import PixelKey


def test_psnr_of_a_known_mse():
    plain = np.zeros((2, 8, 8, 3), np.uint8)
    off = plain + np.uint8(16)  # MSE 256 -> 10 log10(255^2 / 256) = 24.048 dB
    off[1, ::2] = 0  # half the rows exact -> MSE 128 -> 27.059 dB
    np.testing.assert_allclose(psnr(off, plain), [10 * math.log10(255**2 / 256), 10 * math.log10(255**2 / 128)])
    np.testing.assert_allclose(psnr(off, plain)[:1], [24.0484], atol=1e-4)


def test_psnr_matches_scikit_image(cifar10):
    images, _ = cifar10
    noisy = np.clip(images.astype(int) + np.random.default_rng(0).integers(-40, 41, images.shape), 0, 255).astype(np.uint8)
    expected = [peak_signal_noise_ratio(p, n, data_range=255) for p, n in zip(images, noisy)]
    np.testing.assert_allclose(psnr(noisy, images), expected)


def test_identical_images_score_the_cap_and_ssim_one(cifar10, fmnist):
    for images in (cifar10[0], fmnist[0]):
        s = Scores.of(images, images)
        assert (s.psnr.mean, s.ssim.min, s.exact, s.count) == (PSNR_CAP, 1.0, len(images), len(images))


def test_ssim_is_scikit_images_per_image(cifar10, fmnist):
    images, _ = cifar10
    inverted = 255 - images
    expected = [structural_similarity(a, b, data_range=255, channel_axis=-1) for a, b in zip(inverted, images)]
    np.testing.assert_allclose(ssim(inverted, images), expected)
    assert ssim(inverted, images).mean() < 0  # inversion anti-correlates
    gray, _ = fmnist
    np.testing.assert_allclose(ssim(gray[::-1], gray), [structural_similarity(a[..., 0], b[..., 0], data_range=255) for a, b in zip(gray[::-1], gray)])


def test_worst_case_is_the_most_leaked_image(cifar10):
    images, _ = cifar10
    recon = 255 - images
    recon[3] = images[3]
    s = Scores.of(recon, images)
    assert s.psnr.max == PSNR_CAP and s.ssim.max == 1.0 and s.exact == 1 and s.psnr.mean < 30


@pytest.mark.parametrize(
    "method, shape, bits",
    [
        ("pe", (32, 32, 3), 1024 * (3 + math.log2(6))),  # [P]: about 2^5719
        ("pe", (28, 28, 1), 784),  # grayscale: NP only
        ("np", (32, 32, 3), 3072),
        ("le", (32, 32, 3), math.lgamma(97) / math.log(2)),  # log2 96!
        ("ele", (32, 32, 3), 64 * math.lgamma(97) / math.log(2) + math.lgamma(65) / math.log(2)),
        ("etc", (32, 32, 3), math.lgamma(65) / math.log(2) + 64 * (4 + math.log2(6))),
        ("etc", (28, 28, 1), math.lgamma(50) / math.log(2) + 49 * 4),
        ("plain", (32, 32, 3), 0),
    ],
)
def test_key_space(method, shape, bits):
    ks = key_space(method, {}, None if method == "plain" else "dataset", shape)
    assert ks.bits == pytest.approx(bits)
    assert ks.effective_bits == min(bits, 256)


def test_key_space_of_le_is_about_500_bits():
    assert round(key_space("le", {}, "image", (32, 32, 3)).bits, 1) == 498.3
    assert key_space("le", {"block_size": 2}, "image", (32, 32, 3)).bits == pytest.approx(math.lgamma(25) / math.log(2))


@pytest.mark.parametrize("method, channels, count", [("pe", 3, 48), ("np", 3, 8), ("pe", 1, 2), ("np", 1, 2)])
def test_candidates_are_the_ciphers_encodings(method, channels, count):
    cand = pixel_candidates(method, channels)
    assert len(cand) == count
    pixel = np.array([[[10, 100, 200][:channels]]], np.uint8)  # 1 x 1 x C
    outputs = cand.encryptions(pixel[0, 0])
    assert len({tuple(o) for o in outputs}) == count  # distinct components: every candidate differs
    for t in range(count):
        key = PixelKey(cand.flips[t].reshape(1, 1, channels), cand.codes[t].reshape(1, 1) if method == "pe" and channels == 3 else None)
        assert np.array_equal(key.apply(pixel[None])[0, 0, 0], outputs[t])
        assert np.array_equal(cand.decryptions(outputs[t])[t], pixel[0, 0])
