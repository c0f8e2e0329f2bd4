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

from .device import to_device
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


def block_method_warning(names: tuple[str, ...], method: str, pixelwise: bool) -> str | None:
    """Block-wise ciphers (the manifest's family; le, ele, etc) do not commute with shifts or
    mixing; [P]'s Table 2 trains them with augmentation in the cloud anyway to measure the
    damage, so this is a warning, not a refusal."""
    if not names or pixelwise:
        return None
    return (f"method {method!r} is not pixel-wise: {', '.join(names)} on its ciphertext is not the encryption of an "
            "augmented image (shifts move block boundaries), as [P]'s block-wise baselines measure")  # fmt: skip


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


def unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixel values -> float in [-1, 1], 127.5 at 0; the same shape."""
    return pixels.float().sub_(CENTRE).div_(CENTRE)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """N x H x W x C uint8 -> N x C x H x W float in [-1, 1], channels-last in memory."""
    return unit(images).permute(0, 3, 1, 2)


@dataclass(kw_only=True)
class Draw:
    """The random choices for one batch, one entry per sample: host arrays, or their device
    copies after :meth:`BatchAugment.on_device`."""

    dy: np.ndarray  # int64: the crop window's vertical offset, -pad..pad (0: unmoved)
    dx: np.ndarray  # int64: its horizontal offset
    flip: np.ndarray  # bool: mirror left-right
    vflip: np.ndarray  # bool: mirror top-bottom
    rot: np.ndarray  # int64 0..3: quarter turns, counter-clockwise as torch.rot90
    partner: np.ndarray | None  # int64: the image each sample is mixed with, or None
    lam: np.ndarray  # float32: weight of the sample's own image/label (1: unmixed)
    box: np.ndarray  # int64 N x 4: y0, y1, x0, x1 of the cutmix box (empty: none)


# (a, b, c, d, e, f) per quarter turn k, c and f in units of (side - 1): see source_coords.
QUARTER_TURNS = torch.tensor(((1, 0, 0, 0, 1, 0), (0, 1, 0, -1, 0, 1), (-1, 0, 1, 0, -1, 1), (0, -1, 1, 1, 0, 0)))


class BatchAugment:
    """``names`` from :func:`parse_augment`; ``draw`` then ``__call__`` per batch."""

    def __init__(self, names: tuple[str, ...], shape: tuple[int, int, int], num_classes: int, pad: int = 4, alpha: float = 1.0):
        self.names, self.shape, self.num_classes = names, shape, num_classes
        self.pad, self.alpha = pad, alpha

    def off(self) -> BatchAugment:
        """The same batches, unaugmented: what the epochs before --augment-from and after
        --augment-until train with, and calibrate BatchNorm with (Loop.augment)."""
        return BatchAugment((), self.shape, self.num_classes, self.pad, self.alpha)

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
        return Draw(dy=dy, dx=dx, flip=flip, vflip=vflip, rot=rot, partner=partner, lam=lam, box=box)

    def on_device(self, draw: Draw, device: torch.device) -> Draw:
        """The draw's arrays on the GPU in two non-blocking copies from pinned memory: a plain
        ``torch.as_tensor(array, device=cuda)`` per array would make the host wait for the
        GPU several times per step."""
        if device.type != "cuda":
            return draw
        n = len(draw.dy)
        partner = draw.partner if draw.partner is not None else np.zeros(n, np.int64)
        ints = np.column_stack([draw.dy, draw.dx, draw.flip, draw.vflip, draw.rot, partner, draw.box]).astype(np.int64)
        ints = to_device(torch.from_numpy(ints), device)
        lam = to_device(torch.from_numpy(np.ascontiguousarray(draw.lam)), device)
        return Draw(dy=ints[:, 0], dx=ints[:, 1], flip=ints[:, 2].bool(), vflip=ints[:, 3].bool(), rot=ints[:, 4],
                    partner=None if draw.partner is None else ints[:, 5], lam=lam, box=ints[:, 6:10])  # fmt: skip

    def source_coords(self, draw: Draw, device) -> tuple[torch.Tensor, torch.Tensor]:
        """For every output pixel, the flat position (row x W + col) of the input pixel it
        comes from, N x H*W (clamped into the image), and ``inside``, N x H x W, 1.0 inside
        and 0.0 where the crop window hangs over the border (float: multiplying by a bool
        mask costs a type promotion per pixel).

        Shift and flips act on rows and columns separately, so they are computed on N x H
        and N x W vectors; only a quarter turn needs the full N x H x W maps."""
        h, w, _ = self.shape
        t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        i = torch.arange(h, device=device)[None, :] + t(draw.dy)[:, None]  # out (i, j) <- (i + dy, j + dx)
        j = torch.arange(w, device=device)[None, :] + t(draw.dx)[:, None]
        inside = ((i >= 0) & (i < h)).float()[:, :, None] * ((j >= 0) & (j < w)).float()[:, None, :]
        if "flip" in self.names:
            j = torch.where(t(draw.flip)[:, None], w - 1 - j, j)
        if "vflip" in self.names:
            i = torch.where(t(draw.vflip)[:, None], h - 1 - i, i)
        i, j = i.clamp(0, h - 1)[:, :, None], j.clamp(0, w - 1)[:, None, :]
        if "rot90" in self.names:
            # torch.rot90(k) on a square: out[i, j] = in[i', j'] with (i', j') = (i, j), (j, s-i),
            # (s-i, s-j), (s-j, i) for k = 0..3, i.e. i' = a i + b j + c, j' = d i + e j + f.
            coef = to_device(QUARTER_TURNS * torch.tensor([1, 1, h - 1] * 2), device)
            coef = coef[t(draw.rot)][:, :, None, None]
            i, j = coef[:, 0] * i + coef[:, 1] * j + coef[:, 2], coef[:, 3] * i + coef[:, 4] * j + coef[:, 5]
        flat = (i * w + j).reshape(len(draw.dy), h * w)
        return flat, inside

    def _gather(self, images: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        n, h, w, c = images.shape
        index = flat[:, :, None].expand(n, h * w, c)
        return images.reshape(n, h * w, c).gather(1, index).reshape(n, h, w, c)

    def warp(self, images: torch.Tensor, draw: Draw, fill, convert=None) -> torch.Tensor:
        """Shift, flip and rotate N x H x W x C ``images`` (any dtype) as ``draw`` says, with
        ``fill`` where the window leaves the image. ``convert``, when given, maps the moved
        pixels to the values ``fill`` is one of before the border is filled: training moves
        uint8 ciphertext and fills the :func:`unit` values with 0 (127.5). Mixing is not part
        of it."""
        flat, inside = self.source_coords(draw, images.device)
        out = self._gather(images, flat)
        if convert is not None:
            out = convert(out)
        # In place, by multiplying: torch.where with a broadcast mask is several times slower on the CPU.
        keep = inside[..., None].to(out.dtype)
        out = out.mul_(keep)
        if fill:
            out = out.add_((1 - keep) * torch.as_tensor(fill, dtype=out.dtype, device=out.device))
        return out

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
        draw = self.on_device(draw, images.device)
        if {"crop", "flip", "vflip", "rot90"} & set(self.names):
            x = self.warp(images, draw, 0.0, convert=unit).permute(0, 3, 1, 2)  # outside: 0, i.e. 127.5
        else:
            x = normalise(images)
        return self.mix(x, draw), self.targets(labels, draw)
