"""Augmentation of encrypted batches on the device, driven by per-sample random draws.

Why these and only these: the cipher encrypts each pixel on its own with the key bits of its
position. Moving pixels (shift, flip, rotation by 90 degrees) therefore turns an encryption of
x under mask m into an encryption of the moved x under the equally moved mask — the network
still sees "an image encrypted pixel by pixel", which is all it ever sees. Anything that
computes a pixel from several pixels (resizing, arbitrary rotation, blur) or changes values
(colour jitter) mixes values that were flipped by different key bits and produces something
that is not the encryption of any image; those are refused (:data:`REFUSED`).

Padding: shifted-in pixels get the value 127.5, written as 0 after normalisation. 127.5 is
the fixed point of the NP transform (255 - 127.5 = 127.5) and a grey pixel is unchanged by
the colour shuffle, so a 127.5 border is the encryption of a 127.5 border under *every* key:
padding then commutes with the cipher exactly, whatever the moved mask holds at the border.
Zero, the usual choice, is the encryption of 0 where the key bit is 0 and of 255 where it is
1, so a zero border in the cloud would be a key-dependent salt-and-pepper border in the plain
domain — and the client padding with black would give a random-looking border the cloud
cannot reproduce. docs/trainer.md has the longer argument and the mixup/cutmix rules.

Everything here is whole-batch tensor work: the draws are small host arrays (N numbers per
kind), the pixels never leave the device, and no Python runs per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import AugmentError

CENTRE = 127.5  # the NP fixed point; normalised pixels are (v - CENTRE) / CENTRE in [-1, 1]

COMMUTING = {
    "crop": "shift by up to --pad pixels with a 127.5 border (pad and random crop)",
    "flip": "horizontal flip with probability 1/2",
    "vflip": "vertical flip with probability 1/2",
    "rot90": "rotation by a random multiple of 90 degrees (square images only)",
    "mixup": "convex mix with another image of the batch (dataset-scope keys or plain only)",
    "cutmix": "paste a random box of another image of the batch at the same place",
}

_INTERPOLATES = "it interpolates between neighbouring pixels, which were encrypted under different key bits, so the result is not the encryption of any image"
_VALUES = "it changes pixel values, and the NP transform turns +d on a plain pixel into +d or -d depending on the key bit, so the cloud cannot apply it without the key"
REFUSED = {
    "resize": _INTERPOLATES,
    "random-resized-crop": _INTERPOLATES,
    "scale": _INTERPOLATES,
    "zoom": _INTERPOLATES,
    "rotate": "rotation by an angle other than a multiple of 90 degrees resamples the grid: " + _INTERPOLATES,
    "rotation": "rotation by an angle other than a multiple of 90 degrees resamples the grid: " + _INTERPOLATES,
    "affine": _INTERPOLATES,
    "perspective": _INTERPOLATES,
    "blur": "it averages neighbouring pixels, which were encrypted under different key bits",
    "gaussian-blur": "it averages neighbouring pixels, which were encrypted under different key bits",
    "colour-jitter": _VALUES,
    "color-jitter": _VALUES,
    "brightness": _VALUES,
    "saturation": _VALUES + "; saturation also mixes the colour components the cipher shuffles",
    "hue": _VALUES + "; hue also mixes the colour components the cipher shuffles",
    "grayscale": "it mixes the colour components, which the cipher flips and shuffles independently per pixel",
}
ALIASES = {"shift": "crop", "hflip": "flip", "rrc": "random-resized-crop", "randomresizedcrop": "random-resized-crop",
           "colorjitter": "color-jitter", "colourjitter": "colour-jitter", "none": ""}  # fmt: skip


def parse_augment(names, shape: tuple[int, int, int], key_scope: str | None) -> tuple[str, ...]:
    """Validate ``names`` for images of ``shape`` under a key of ``key_scope`` (None: plain)."""
    out: list[str] = []
    for raw in names:
        name = ALIASES.get(raw.strip().lower().replace("_", "-"), raw.strip().lower().replace("_", "-"))
        if not name:
            continue
        if name in REFUSED:
            raise AugmentError(f"{raw!r} does not commute with pixel-wise encryption: {REFUSED[name]}")
        if name not in COMMUTING:
            raise AugmentError(f"unknown augmentation {raw!r} (choose from {', '.join(COMMUTING)}, or none)")
        if name == "rot90" and shape[0] != shape[1]:
            raise AugmentError(f"'rot90' needs square images, these are {shape[1]}x{shape[0]}")
        if name == "mixup" and key_scope == "image":
            raise AugmentError(
                "'mixup' needs one key for the whole dataset: under image-scope keys two images were flipped by "
                "different key bits, and their weighted sum is not the encryption of the mixed image"
            )
        if name not in out:
            out.append(name)
    return tuple(out)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """N x H x W x C uint8 -> N x C x H x W float in [-1, 1], channels-last in memory."""
    return images.float().sub_(CENTRE).div_(CENTRE).permute(0, 3, 1, 2)


@dataclass
class Draw:
    """The random choices for one batch, one entry per sample (host arrays)."""

    dy: np.ndarray  # int64: the crop window's vertical offset, -pad..pad (0: unmoved)
    dx: np.ndarray  # int64: its horizontal offset
    flip: np.ndarray  # bool: mirror left-right
    vflip: np.ndarray  # bool: mirror top-bottom
    rot: np.ndarray  # int64 0..3: quarter turns, counter-clockwise as torch.rot90
    partner: np.ndarray | None  # int64: the image each sample is mixed with, or None
    lam: np.ndarray  # float32: weight of the sample's own image/label (1: unmixed)
    box: np.ndarray  # int64 N x 4: y0, y1, x0, x1 of the cutmix box (empty: none)


class BatchAugment:
    """``names`` from :func:`parse_augment`; ``draw`` then ``__call__`` per batch."""

    def __init__(self, names: tuple[str, ...], shape: tuple[int, int, int], num_classes: int, pad: int = 4, alpha: float = 1.0):
        self.names, self.shape, self.num_classes = names, shape, num_classes
        self.pad, self.alpha = pad, alpha

    @property
    def mixes(self) -> bool:
        return "mixup" in self.names or "cutmix" in self.names

    def draw(self, n: int, rng: np.random.Generator) -> Draw:
        h, w, _ = self.shape
        on = self.names.__contains__
        zeros = np.zeros(n, np.int64)
        shift = (lambda: rng.integers(-self.pad, self.pad + 1, n)) if on("crop") else (lambda: zeros)
        coin = (lambda name: rng.random(n) < 0.5 if on(name) else np.zeros(n, bool))
        dy, dx = shift(), shift()
        flip, vflip = coin("flip"), coin("vflip")
        rot = rng.integers(0, 4, n) if on("rot90") else zeros
        lam = np.ones(n, np.float32)
        box = np.zeros((n, 4), np.int64)
        partner = None
        if self.mixes:
            partner = rng.permutation(n)
            weight = rng.beta(self.alpha, self.alpha, n) if self.alpha > 0 else np.full(n, 0.5)
            cut = (rng.random(n) < 0.5) if on("mixup") and on("cutmix") else np.full(n, on("cutmix"))
            side = np.sqrt(1.0 - weight)
            bh, bw = np.round(h * side).astype(np.int64), np.round(w * side).astype(np.int64)
            cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
            y0, y1 = np.clip(cy - bh // 2, 0, h), np.clip(cy - bh // 2 + bh, 0, h)
            x0, x1 = np.clip(cx - bw // 2, 0, w), np.clip(cx - bw // 2 + bw, 0, w)
            box = np.where(cut[:, None], np.stack([y0, y1, x0, x1], 1), 0)
            area = (box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2]) / (h * w)
            lam = np.where(cut, 1.0 - area, weight).astype(np.float32)
        return Draw(dy, dx, flip, vflip, rot, partner, lam, box)

    def source_coords(self, draw: Draw, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For every output pixel, the input pixel it comes from: rows, cols (N x H x W, clamped
        into the image) and ``inside`` (False where the crop window hangs over the border)."""
        h, w, _ = self.shape
        t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        dy, dx = t(draw.dy)[:, None, None], t(draw.dx)[:, None, None]
        i = torch.arange(h, device=device)[None, :, None] + dy  # shift: out (i, j) <- (i + dy, j + dx)
        j = torch.arange(w, device=device)[None, None, :] + dx
        inside = (i >= 0) & (i < h) & (j >= 0) & (j < w)
        j = torch.where(t(draw.flip)[:, None, None], w - 1 - j, j)
        i = torch.where(t(draw.vflip)[:, None, None], h - 1 - i, i)
        i, j = torch.broadcast_tensors(i, j)
        rot = t(draw.rot)[:, None, None]
        # torch.rot90(k=1) on a square: out[i, j] = in[j, S-1-i]; k quarter turns compose.
        s1 = h - 1
        i, j = (
            torch.where(rot == 1, j, torch.where(rot == 2, s1 - i, torch.where(rot == 3, s1 - j, i))),
            torch.where(rot == 1, s1 - i, torch.where(rot == 2, s1 - j, torch.where(rot == 3, i, j))),
        )
        return i.clamp(0, h - 1), j.clamp(0, w - 1), inside.expand(len(draw.dy), h, w)

    def warp(self, images: torch.Tensor, draw: Draw, fill) -> torch.Tensor:
        """Shift, flip and rotate N x H x W x C ``images`` (any dtype) as ``draw`` says, with
        ``fill`` where the window leaves the image. Mixing is not part of it."""
        rows, cols, inside = self.source_coords(draw, images.device)
        n = torch.arange(len(images), device=images.device)[:, None, None]
        out = images[n, rows, cols]
        return torch.where(inside[..., None], out, torch.as_tensor(fill, dtype=images.dtype, device=images.device))

    def mix(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        """Mix N x C x H x W normalised images with their partners (mixup weight or cutmix box)."""
        if draw.partner is None:
            return x
        dev = x.device
        partner = torch.as_tensor(draw.partner, device=dev)
        other = x[partner]
        box = torch.as_tensor(draw.box, device=dev)
        cut = box[:, 1] > box[:, 0]
        h, w = x.shape[-2:]
        i = torch.arange(h, device=dev)[None, :, None]
        j = torch.arange(w, device=dev)[None, None, :]
        in_box = (i >= box[:, 0, None, None]) & (i < box[:, 1, None, None]) & (j >= box[:, 2, None, None]) & (j < box[:, 3, None, None])
        lam = torch.as_tensor(draw.lam, device=dev).where(~cut, torch.ones((), device=dev))[:, None, None, None]
        blended = lam * x + (1 - lam) * other
        return torch.where(in_box[:, None], other, blended)

    def targets(self, labels: torch.Tensor, draw: Draw) -> torch.Tensor:
        """Integer labels, or class-probability rows when the batch is mixed."""
        if draw.partner is None:
            return labels
        onehot = torch.nn.functional.one_hot(labels, self.num_classes).float()
        lam = torch.as_tensor(draw.lam, device=labels.device)[:, None]
        return lam * onehot + (1 - lam) * onehot[torch.as_tensor(draw.partner, device=labels.device)]

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, draw: Draw) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 N x H x W x C ciphertext -> (normalised N x C x H x W inputs, targets)."""
        if {"crop", "flip", "vflip", "rot90"} & set(self.names):
            rows, cols, inside = self.source_coords(draw, images.device)
            n = torch.arange(len(images), device=images.device)[:, None, None]
            x = images[n, rows, cols].float().sub_(CENTRE).div_(CENTRE)
            x = x.mul_(inside[..., None]).permute(0, 3, 1, 2)  # outside: 0, i.e. 127.5
        else:
            x = normalise(images)
        return self.mix(x, draw), self.targets(labels, draw)
