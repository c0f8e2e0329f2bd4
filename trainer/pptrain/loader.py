"""What every loader promises (memory.py, stream.py), and the rule they share.

Both hand out ``(images N x H x W x C uint8, labels, indices)`` on the device, give every rank
the same number of training batches and disjoint samples, and derive their order from
(seed, epoch) alone (seeding.py), so an epoch is the same whether the run was interrupted or not.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import torch

from .distributed import Dist
from .errors import OptionError

Loaded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, labels, indices


class Loader(Protocol):
    batches: int  # per rank per epoch
    images: int  # per epoch, all ranks together

    def epoch(self, epoch: int) -> Iterator[Loaded]: ...

    def head(self, images: int) -> Iterator[Loaded]:
        """The first ``images`` of this rank's share of the split, in split order, in batches
        (un-augmented, the same every time: BatchNorm calibration, batchnorm.py)."""
        ...


def train_batches(count: int, batch: int, d: Dist, copies: int = 1) -> int:
    """Full batches per rank: every rank takes the same number, so the gradient all-reduce
    never waits for a rank that ran out; the few samples beyond them wait for the next epoch.
    A split the client augmented into ``copies`` copies (ppencrypt dataset --copies) counts an
    epoch as one pass over the originals: ``count / copies`` images."""
    n = count // copies // (batch * d.world)
    if n == 0:
        raise OptionError("--batch-size", f"batch size {batch * d.world} (all ranks) is larger than the train split ({count} images)")
    return n
