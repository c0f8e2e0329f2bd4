"""``ppencrypt preview``: a picture of encrypted samples, with their decryptions beside them
when the key is given."""

from __future__ import annotations

import math
import os

import numpy as np

from .atomic import atomic_writer
from .decrypt import keyed_cipher, refuse_plain_inside, to_pil
from .formats import open_dataset
from .keys import MasterKey
from .keyuse import KeyUse

MIN_TILE = 96  # pixels: small images are enlarged (nearest neighbour) to at least this
GAP = 2  # pixels between tiles


def grid(tiles: np.ndarray, columns: int) -> np.ndarray:
    """N x H x W x C tiles -> one image, ``columns`` tiles per row, on a white background."""
    n, h, w, c = tiles.shape
    rows = math.ceil(n / columns)
    out = np.full((rows * (h + GAP) + GAP, columns * (w + GAP) + GAP, c), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, q = divmod(i, columns)
        out[GAP + r * (h + GAP) : GAP + r * (h + GAP) + h, GAP + q * (w + GAP) : GAP + q * (w + GAP) + w] = t
    return out


def preview(
    root: str | os.PathLike, output: str | os.PathLike, key: MasterKey | None = None, n: int = 16,
    split: str | None = None, key_name: str = "the key",
) -> tuple[int, list[str]]:  # fmt: skip
    """Writes the picture; returns the samples shown and warnings."""
    ds = open_dataset(root)
    m = ds.manifest
    cipher, warnings = keyed_cipher(ds, key, key_name) if key is not None else (None, [])
    refuse_plain_inside(output, ds.loc)  # even without the key: an unlisted file breaks verify
    split = split or ds.splits[0]
    batch = ds.split(split).head(n)
    tiles = batch.images
    if cipher is not None:
        plain = cipher.decrypt(batch.images, KeyUse.of(m.cipher).ring(cipher, key, split), batch.indices)
        # encrypted | decrypted, side by side per sample
        tiles = np.stack([tiles, plain], axis=1).reshape(-1, *m.shape)
    scale = max(1, math.ceil(MIN_TILE / max(m.height, m.width)))
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    per_row = 2 * max(1, math.ceil(math.sqrt(len(batch) / 2))) if cipher else max(1, math.ceil(math.sqrt(len(batch))))
    picture = to_pil(grid(tiles, min(per_row, len(tiles))))
    with atomic_writer(output) as f:
        picture.save(f, format="PNG")
    return len(batch), warnings
