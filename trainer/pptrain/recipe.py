"""Training recipes: [P]'s schedule, a default that sizes itself to the data, and a plain
reference; and their learning rates.

The learning rate is a pure function of the step, so a resumed run needs no scheduler state.
The ``fast`` recipe's batch and peak learning rate are a pure function of the train split's
size (:meth:`Recipe.sized`): a fixed batch of 512 gives a split of 8,000 images 15 steps per
epoch at a rate tuned for hundreds, which is what made short runs on small data learn nothing
(docs/trainer.md, "Recipes", has the measurements).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("step", "linear", "cosine")
MIN_STEPS = 100  # optimiser steps per epoch the fast recipe keeps at least, shrinking its batch
MIN_BATCH = 32  # ... but no further: BatchNorm's batch statistics get noisy below it
WARMUP_SHARE = 0.2  # the warm-up never takes more than this share of a run's steps


@dataclass(frozen=True, kw_only=True)
class Recipe:
    epochs: int  # passes over the train split
    batch_size: int  # images per step, all ranks together; for a scaled recipe the largest it picks
    lr: float  # peak learning rate at batch_size; a scaled recipe scales it with the square root of the batch it picks
    momentum: float  # SGD momentum (a fraction)
    nesterov: bool  # Nesterov momentum
    weight_decay: float  # SGD's: each step's gradient gains weight_decay x the weight
    label_smoothing: float  # share of each target spread evenly over the classes
    warmup_steps: int  # steps ramping the lr up linearly from lr / 10 (at most WARMUP_SHARE of the run)
    schedule: str  # 'step': / 10 at 50 % and 75 % of the epochs; 'linear': down to 0 after the warm-up; 'cosine'
    scaled: bool = False  # batch and lr follow the train split's size (sized)
    calibrate: int = 0  # train images over which BatchNorm statistics are recomputed before each evaluation (0: never)
    tail: int = 0  # epochs at the end of a run trained on the data as stored (augment_until)

    def augment_until(self, epochs: int) -> int:
        """The last epoch (from 1) of the default augmentation; 0: none. Augmentation
        regularises, but it also moves every image off the alignment it is evaluated in: the
        last ``tail`` epochs, at the lowest learning rates, fit the data as stored, and a run no
        longer than that is not augmented at all (docs/trainer.md, "Augmentation", has the
        measurements: a fixed number of epochs, not a share — 9 of 30 overfit)."""
        return max(epochs - self.tail, 0)

    def sized(self, count: int, world: int = 1) -> tuple[int, float]:
        """Batch and peak learning rate for a train split of ``count`` images over ``world``
        processes. A scaled recipe halves its batch until an epoch has at least MIN_STEPS
        steps, down to MIN_BATCH — or the whole split, when it holds fewer images — and
        scales the rate with the square root of the batch (lr_for); the batch is a multiple
        of ``world``. Other recipes keep theirs."""
        if not self.scaled:
            return self.batch_size, self.lr
        batch = self.batch_size
        while batch > MIN_BATCH and count // batch < MIN_STEPS:
            batch //= 2
        batch = min(batch, count)  # a split smaller than MIN_BATCH: one full-split step per epoch
        batch = max(world, batch - batch % world)
        return batch, self.lr_for(batch)

    def lr_for(self, batch: int) -> float:
        """The peak learning rate of a run with ``batch`` images per step: for a scaled recipe
        the rate at ``batch_size`` times sqrt(batch / batch_size) — 0.4 at 512, 0.2 at 128,
        0.14 at 64 —, the recipe's own otherwise ([P]'s 0.1 stays 0.1). Square root, not
        linear: on 8,000 images for 3 epochs the linear rule's 0.05 at batch 64 reached 71.2 %
        and 0.1 reached 76.8 % (docs/trainer.md, "Recipes"); small batches are limited by
        the steps they get, not by gradient noise."""
        return self.lr * math.sqrt(batch / self.batch_size) if self.scaled else self.lr

    def warmup(self, total: int) -> int:
        return min(self.warmup_steps, int(total * WARMUP_SHARE))

    def lr_at(self, lr: float, step: int, total: int, steps_per_epoch: int) -> float:
        if self.schedule == "step":
            epoch = step // max(steps_per_epoch, 1)
            epochs = max(total // max(steps_per_epoch, 1), 1)
            drops = sum(epoch >= math.ceil(epochs * f) for f in (0.5, 0.75))
            return lr * 0.1**drops
        warm = self.warmup(total)
        if step < warm:
            return lr * (0.1 + 0.9 * step / warm)
        done = (step - warm) / max(total - warm, 1)
        if self.schedule == "cosine":
            return lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        return lr * max(1.0 - done, 0.0)


RECIPES = {
    # [P]: SGD momentum 0.9, lr 0.1 / 10 at epochs 150 and 225 of 300, weight decay 5e-4, batch 128.
    "paper": Recipe(epochs=300, batch_size=128, lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
                    label_smoothing=0.0, warmup_steps=0, schedule="step"),
    # The default, for a few thousand images to millions: batch up to 512, halved until an epoch
    # has 100 steps, with the lr scaled by the batch's square root (0.4 at 512, 0.14 at 64);
    # Nesterov momentum; a 50-step warm-up from lr / 10; a linear decay to zero; label
    # smoothing 0.1; BatchNorm statistics recomputed on 2,048 train images (augmented as the
    # epoch's batches are) before every evaluation, so a high learning rate cannot leave the
    # evaluation with running statistics of older weights; and the augmentation off for the
    # last 3 epochs (so a run of 3 epochs or fewer is not augmented).
    "fast": Recipe(epochs=30, batch_size=512, lr=0.4, momentum=0.9, nesterov=True, weight_decay=5e-4,
                   label_smoothing=0.1, warmup_steps=50, schedule="linear", scaled=True, calibrate=2048, tail=3),
    # The usual CIFAR recipe, the yardstick of docs/results.md: SGD momentum 0.9, batch 128,
    # lr 0.1 with cosine decay, weight decay 5e-4, nothing else.
    "reference": Recipe(epochs=30, batch_size=128, lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
                        label_smoothing=0.0, warmup_steps=0, schedule="cosine"),
}
