"""Where every random choice of a run comes from, so that an epoch is the same whether the run
was interrupted or not, and every rank and loader worker agrees on what it must.

The model is initialised from ``torch.manual_seed(seed)``. Everything drawn per epoch comes
from a numpy generator seeded by the words ``(seed, epoch, stream, ...)``: ``stream`` keeps the
data order, the shard order, the shuffle pool and the augmentation draws independent of each
other, and the trailing words (a rank, a reader, a pass) separate the processes that must draw
differently. Nothing is carried from one epoch to the next, so a resumed run needs no RNG
state in its checkpoint.
"""

from __future__ import annotations

import numpy as np

# The stream words. Changing one changes every run's numbers: they are part of the format.
ORDER = 0  # the in-memory loader's permutation of the split (same on every rank)
SHARD_ORDER = 1  # the streaming loader's order of the shards (same on every rank), then per reader and pass
SAMPLE_ORDER = 2  # the streaming loader's shuffle pool, per reader
AUGMENT = 3  # the augmentation draws, per rank
CALIBRATE = 4  # the augmentation draws of BatchNorm calibration, per rank


def epoch_rng(seed: int, epoch: int, stream: int, *words: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, stream, *words])
