"""Pictures the client writes for people to look at — decrypted images, query PNGs, previews,
the audit's report — shared by the commands that write them, so no command imports another."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from .errors import OutputError
from .formats import Location, open_location

MIN_TILE = 96  # pixels: small images are enlarged (nearest neighbour) to at least this
GAP = 2  # pixels between tiles


def to_pil(image) -> Image.Image:
    return Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(image, "RGB")


def grid(tiles: np.ndarray, columns: int) -> np.ndarray:
    """N x H x W x C tiles -> one image, ``columns`` tiles per row, on a white background."""
    n, h, w, c = tiles.shape
    rows = math.ceil(n / columns)
    out = np.full((rows * (h + GAP) + GAP, columns * (w + GAP) + GAP, c), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, q = divmod(i, columns)
        out[GAP + r * (h + GAP) : GAP + r * (h + GAP) + h, GAP + q * (w + GAP) : GAP + q * (w + GAP) + w] = t
    return out


def refuse_plain_inside(path: str | os.PathLike, root: str | os.PathLike | Location) -> None:
    """Decrypted pixels must never land in the folder that goes to the untrusted server."""
    if open_location(root).holds(path):
        raise OutputError(f"{path}: inside the encrypted dataset {root}; write decrypted images elsewhere")
