"""How close a reconstruction is to the plain image: PSNR (numpy) and SSIM (scikit-image).

PSNR = 10·log10(255² / MSE), per image over every pixel and component. An exact reconstruction
has MSE 0 and PSNR infinity; it is reported as ``PSNR_CAP`` = 100 dB so that means stay finite
(the largest PSNR a non-exact 8-bit image can have is 10·log10(255²·H·W·C), 83 dB for 32×32×3,
so 100 dB can only mean "identical"); ``exact`` counts those images.

SSIM is scikit-image's ``structural_similarity`` with its defaults (7×7 uniform window,
K1 = 0.01, K2 = 0.03, data range 255), averaged over the components of a colour image; 1 for
identical images, near 0 for unrelated ones, negative for inverted ones.

The summaries give the mean and both extremes over the N images; in a privacy audit the
*worst case* is the image that leaks most, i.e. the maximum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PSNR_CAP = 100.0


def psnr(reconstructed: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of two N x H x W x C uint8 stacks, capped at PSNR_CAP."""
    diff = reconstructed.astype(np.float64) - plain.astype(np.float64)
    mse = np.mean(diff.reshape(len(diff), -1) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        value = 10 * np.log10(255.0**2 / mse)
    return np.minimum(value, PSNR_CAP)


def _window(h: int, w: int) -> int | None:
    """scikit-image's default window (7), shrunk to the largest odd size that fits small images."""
    side = min(7, h, w)
    side -= 1 - side % 2
    return side if side >= 3 else None


def ssim(reconstructed: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """Per-image SSIM of two N x H x W x C uint8 stacks (NaN for images under 3×3)."""
    # Imported here: scikit-image pulls in scipy, 0.2 s that every other ppencrypt command would pay.
    from skimage.metrics import structural_similarity

    n, h, w, c = plain.shape
    win = _window(h, w)
    if win is None:
        return np.full(n, np.nan)
    colour = {"channel_axis": -1} if c > 1 else {}
    squeeze = (lambda a: a) if c > 1 else (lambda a: a[..., 0])
    return np.array([
        structural_similarity(squeeze(r), squeeze(p), data_range=255, win_size=win, **colour)
        for r, p in zip(reconstructed, plain)
    ])  # fmt: skip


@dataclass
class Summary:
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> Summary:
        return cls(float(np.mean(values)), float(np.min(values)), float(np.max(values)))

    def to_dict(self) -> dict:
        return {k: None if np.isnan(v) else round(v, 4) for k, v in asdict(self).items()}  # JSON has no NaN


@dataclass
class Scores:
    psnr: Summary
    ssim: Summary
    exact: int  # images reconstructed identically
    count: int

    @classmethod
    def of(cls, reconstructed: np.ndarray, plain: np.ndarray) -> Scores:
        p = psnr(reconstructed, plain)
        exact = int(np.sum(np.all(reconstructed.reshape(len(plain), -1) == plain.reshape(len(plain), -1), axis=1)))
        return cls(Summary.of(p), Summary.of(ssim(reconstructed, plain)), exact, len(plain))

    def to_dict(self) -> dict:
        return {"psnr": self.psnr.to_dict(), "ssim": self.ssim.to_dict(), "exact": self.exact, "count": self.count}
