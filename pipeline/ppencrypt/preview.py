"""``ppencrypt preview``: a picture of encrypted samples, with their decryptions beside them
when the key is given."""

from __future__ import annotations

import math
import os

import numpy as np

from .atomic import atomic_writer
from .formats import open_dataset
from .keys import MasterKey, open_keyed
from .pictures import MIN_TILE, grid, refuse_plain_inside, to_pil


def preview(
    root: str | os.PathLike, output: str | os.PathLike, key: MasterKey | None = None, n: int = 16,
    split: str | None = None, dataset_id: str | None = None,
) -> tuple[int, list[str]]:  # fmt: skip
    """Writes the picture; returns the samples shown and warnings."""
    keyed = open_keyed(root, key, dataset_id=dataset_id) if key is not None else None  # without the key: no decryptions to show
    ds = keyed.dataset if keyed is not None else open_dataset(root)
    m = ds.manifest
    cipher = keyed.cipher if keyed is not None else None
    refuse_plain_inside(output, ds.loc)  # even without the key: an unlisted file breaks verify
    split = split or ds.splits[0]
    batch = ds.split(split).head(n)
    tiles = batch.images
    if cipher is not None:
        plain = cipher.decrypt(batch.images, keyed.ring(split), batch.indices)
        # encrypted | decrypted, side by side per sample
        tiles = np.stack([tiles, plain], axis=1).reshape(-1, *m.shape)
    scale = max(1, math.ceil(MIN_TILE / max(m.height, m.width)))
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    per_row = 2 * max(1, math.ceil(math.sqrt(len(batch) / 2))) if cipher else max(1, math.ceil(math.sqrt(len(batch))))
    picture = to_pil(grid(tiles, min(per_row, len(tiles))))
    with atomic_writer(output) as f:
        picture.save(f, format="PNG")
    return len(batch), keyed.warnings if keyed is not None else []
