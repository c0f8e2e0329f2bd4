"""Training recipes: the paper's schedule and a short modern one, and their learning rates.

The learning rate is a pure function of the step, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int  # images per step, all ranks together
    lr: float  # peak learning rate
    momentum: float
    nesterov: bool
    weight_decay: float
    label_smoothing: float
    warmup: float  # fraction of the steps spent ramping the lr up linearly from lr / 10
    schedule: str  # 'step': / 10 at 50 % and 75 % of the epochs; 'linear': down to 0 after warm-up

    def lr_at(self, lr: float, step: int, total: int, steps_per_epoch: int) -> float:
        if self.schedule == "step":
            epoch = step // max(steps_per_epoch, 1)
            epochs = max(total // max(steps_per_epoch, 1), 1)
            drops = sum(epoch >= math.ceil(epochs * f) for f in (0.5, 0.75))
            return lr * 0.1**drops
        warm = max(int(total * self.warmup), 1)
        if step < warm:
            return lr * (0.1 + 0.9 * step / warm)
        return lr * max(total - step, 0) / max(total - warm, 1)


RECIPES = {
    # [P]: SGD momentum 0.9, lr 0.1 / 10 at epochs 150 and 225 of 300, weight decay 5e-4, batch 128.
    "paper": Recipe(300, 128, 0.1, 0.9, False, 5e-4, 0.0, 0.0, "step"),
    # A tenth of the epochs: a larger batch with the linearly scaled lr (0.1 x 512 / 128), Nesterov
    # momentum, a short warm-up so the large lr does not blow up the fresh BatchNorm statistics,
    # a linear decay to zero, and label smoothing 0.1 against over-confidence on few epochs.
    "fast": Recipe(30, 512, 0.4, 0.9, True, 5e-4, 0.1, 0.05, "linear"),
}
