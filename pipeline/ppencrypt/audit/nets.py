"""The learned attacker's networks and its training loop (torch; imported only for ``--learned``).

Small on purpose: the audit must train them in minutes on two CPU cores for 28–32 px images.

* :class:`UNet` — the inverter, ciphertext in, plain image out: a 3×3 conv + BN + ReLU stage
  per level and way, three levels (full, 1/2, 1/4 resolution; a 28 px image goes 28 → 14 → 7),
  skip connections, a 1×1 output; 16 channels at full resolution (about 17 M multiply-adds per
  32×32 RGB image). Its receptive field spans most of a 32 px image, so it can use the image's
  context, not only each pixel's neighbours. On Fashion-MNIST ``np`` after 300 steps it
  reconstructed 16.3 dB / SSIM 0.61 (half as wide: 15.8 dB / 0.59); wider or deeper nets cost
  more than a CPU audit can spend.
* :class:`SmallCNN` — the classifiers (the recognition score's, and the one that tells which
  global variant fr-shared's reconstruction is in): three stages (16, 32, 64 channels) with
  pooling between, global average pooling, a linear layer.

:func:`fit` trains for a number of steps (``--train-steps``), stopping early at a wall-clock
limit (``--train-seconds``, which the report records, since a run stopped by the clock is no
longer reproducible). Batches are drawn by a numpy generator seeded from ``--seed``, and torch's
initialisation is seeded too, so a run that finishes its steps is deterministic on one machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .public import Budget

BATCH = 32
LR = 3e-3


def as_input(images: np.ndarray) -> torch.Tensor:
    """N × H × W × C uint8 -> N × C × H × W float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)


def as_images(x: torch.Tensor) -> np.ndarray:
    """N × C × H × W in [0, 1] -> N × H × W × C uint8 (rounded, clipped)."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, channels: int, width: int = 16):
        super().__init__()
        self.down1, self.down2, self.bottom = stage(channels, width), stage(width, 2 * width), stage(2 * width, 4 * width)
        self.up2, self.up1 = stage(6 * width, 2 * width), stage(3 * width, width)
        self.out = nn.Conv2d(width, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down1(x)
        b = self.down2(F.max_pool2d(a, 2))
        c = self.bottom(F.max_pool2d(b, 2))
        # upsample to the skip's own size: odd sides (7 -> 3 -> 7) come back whole
        b = self.up2(torch.cat([F.interpolate(c, size=b.shape[-2:]), b], 1))
        a = self.up1(torch.cat([F.interpolate(b, size=a.shape[-2:]), a], 1))
        return x.new_tensor(0.5) + self.out(a)  # centred on mid-grey: the first steps start sensible


class SmallCNN(nn.Module):
    def __init__(self, channels: int, classes: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(stage(channels, width), nn.MaxPool2d(2), stage(width, 2 * width), nn.MaxPool2d(2), stage(2 * width, 4 * width))
        self.head = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


@dataclass
class Trained:
    steps: int  # steps actually taken
    seconds: float
    stopped_by_clock: bool
    loss: float  # mean loss over the last steps

    def to_dict(self) -> dict:
        return {"steps": self.steps, "seconds": round(self.seconds, 2), "stopped_by_clock": self.stopped_by_clock, "final_loss": round(self.loss, 5)}


Batch = Callable[[np.random.Generator], tuple[torch.Tensor, torch.Tensor]]


def fit(model: nn.Module, batch: Batch, loss: Callable, budget: Budget, bar=None) -> Trained:
    """Train ``model`` on batches drawn by ``batch(rng)``: Adam, learning rate cosine-decayed
    over the step budget."""
    rng = np.random.default_rng(budget.seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(budget.steps, 1))
    model.train()
    start, recent, step = time.perf_counter(), [], 0
    stopped = False
    for step in range(1, budget.steps + 1):
        x, y = batch(rng)
        value = loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        recent = [*recent[-19:], value.item()]
        if bar is not None:
            bar.update(1)
        if time.perf_counter() - start > budget.seconds and step < budget.steps:
            stopped = True
            break
    model.eval()
    return Trained(step, time.perf_counter() - start, stopped, float(np.mean(recent)) if recent else float("nan"))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)]) if len(x) else model(x)


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """A model whose initial weights depend on ``seed`` only."""
    torch.manual_seed(seed)
    return build()
