"""What k known pairs say about each unknown of a key (a position's candidate, a block's
destination): the choices consistent with every pair, and which one the attack keeps.

Shared by the pixel (known_pixel.py) and block-wise (known_block.py) recoveries, so both report
the same counts under the same names.
"""

from __future__ import annotations

import numpy as np


def first_consistent(consistent: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per unknown (leading axes) over its choices (last axis): the first choice consistent with
    every pair, else the best-scoring one (the pairs do not share a key)."""
    return np.where(consistent.any(-1), consistent.argmax(-1), score.argmax(-1))


def consistency_counts(alive: np.ndarray, unit: str, prefix: str = "") -> dict:
    """How many unknowns (``alive``: consistent choices of each) the pairs pinned down (one),
    left open (several), or contradicted (none)."""
    return {unit: int(alive.size), f"{prefix}determined": int((alive == 1).sum()),
            f"{prefix}ambiguous": int((alive > 1).sum()), f"{prefix}inconsistent": int((alive == 0).sum())}  # fmt: skip
