"""One epoch of training and one pass of evaluation: the loop a newcomer reads first.

    per batch: learning rate of the step -> augment on the device (epochs augment_from to
               augment_until) -> forward (bf16 on CUDA) -> loss -> backward -> step

Everything the loop needs that does not change between epochs sits in one :class:`Loop`;
train.py builds it, infer.py uses :func:`evaluate` alone, so ``pptrain eval`` reports exactly
what training reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .augment import BatchAugment, normalise
from .device import model_input
from .distributed import Dist
from .loader import Loader
from .progress import Progress
from .recipe import Recipe
from .seeding import AUGMENT, epoch_rng


@dataclass(kw_only=True)
class Loop:
    net: torch.nn.Module  # what the step calls: the model, DDP-wrapped and compiled as asked
    optimizer: torch.optim.Optimizer
    aug: BatchAugment  # the run's augmentation; augment() switches it off outside its epochs
    recipe: Recipe  # the step's learning rate (schedule) and the label smoothing
    lr: float  # peak learning rate; the recipe gives the step's
    total_steps: int  # optimiser steps over the whole run, for the schedule
    seed: int  # with the epoch and rank, seeds the augmentation draws (seeding.py)
    epochs: int  # of the whole run, for the progress bar's label
    device: torch.device
    d: Dist
    trace: bool = False  # keep the sample indices of every batch
    progress: Progress | None = None  # the bar or progress lines, the estimate (progress.py); None: silent
    augment_from: int = 1  # the first epoch (from 1) whose batches are augmented
    augment_until: int | None = None  # the last one (None: the last epoch)

    def augment(self, epoch: int) -> BatchAugment:
        """Epoch ``epoch``'s (from 0) augmentation: none before ``augment_from`` or after ``augment_until``."""
        until = self.epochs if self.augment_until is None else self.augment_until
        return self.aug if self.augment_from <= epoch + 1 <= until else self.aug.off()


@dataclass
class EpochStats:
    loss: float  # mean training loss (with the recipe's label smoothing)
    accuracy: float  # on the augmented training batches
    lr: float  # the last step's learning rate
    seen: list[torch.Tensor]  # with Loop.trace: the sample indices of each batch


def train_epoch(loop: Loop, loader: Loader, epoch: int) -> EpochStats:
    net, device, aug = loop.net, loop.device, loop.augment(epoch)
    net.train()
    rng = epoch_rng(loop.seed, epoch, AUGMENT, loop.d.rank)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    seen = []
    cuda = device.type == "cuda"
    step = epoch * loader.batches
    lr = loop.lr
    meter = loop.progress.epoch(epoch, loader.batches) if loop.progress is not None else None
    for images, labels, indices in loader.epoch(epoch):
        lr = loop.recipe.lr_at(loop.lr, step, loop.total_steps, loader.batches)
        for group in loop.optimizer.param_groups:
            group["lr"] = lr
        x, target = aug(images, labels, aug.draw(len(labels), rng))
        x = model_input(x, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = net(x)
            loss = F.cross_entropy(out.float(), target, label_smoothing=loop.recipe.label_smoothing)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimizer.step()
        loss_sum += loss.detach().double() * len(labels)
        correct += (out.detach().argmax(1) == labels).sum()
        count += len(labels)
        step += 1
        if loop.trace:
            seen.append(indices.cpu())
        if meter is not None:
            meter.step(lambda: (loss_sum / max(count, 1)).item())
    loss, accuracy = _mean(loop.d, loss_sum, correct, count, device)
    if meter is not None:
        meter.close()
    return EpochStats(loss, accuracy, lr, seen)


@torch.no_grad()
def evaluate(net: torch.nn.Module, loader: Loader, device: torch.device, d: Dist) -> tuple[float, float]:
    """Cross-entropy (no smoothing) and accuracy over the whole split, all ranks summed."""
    net.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for images, labels, _ in loader.epoch(0):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = net(model_input(normalise(images), device))
        loss_sum += F.cross_entropy(out.float(), labels, reduction="sum").double()
        correct += (out.argmax(1) == labels).sum()
        count += len(labels)
    return _mean(d, loss_sum, correct, count, device)


def _mean(d: Dist, loss_sum: torch.Tensor, correct: torch.Tensor, count: int, device: torch.device) -> tuple[float, float]:
    """Loss and accuracy per sample over every rank's samples."""
    totals = d.all_sum(torch.stack([loss_sum, correct.double(), torch.tensor(float(count), device=device, dtype=torch.float64)]))
    n = max(totals[2].item(), 1.0)
    return totals[0].item() / n, totals[1].item() / n
