"""CPU training throughput of the adaptation network + ResNet-18 at widths 16 and 64.

    python bench/train_cpu.py [--steps N] [--widths 16,64] [--quick] [--json PATH]

Per width, in the same run: pptrain's training step (pptrain.loop.train_epoch: in-memory
loader, batched crop + flip, SGD step, fp32) against the same model and step fed by the
baseline input pipeline (trainer_common.BASELINE), on encrypted Fashion-MNIST (28x28x1),
batch 128. Images per second over N steps after 3 warm-up steps; on 2 cores the baseline's
two loader processes compete with the model for the same cores, which is the point.
"""

from __future__ import annotations

import argparse
import time
from itertools import islice

import torch
import torch.nn.functional as F

from common import machine
from ratios import Ratios, bench_args
from ppencrypt.formats import open_dataset
from pptrain.augment import BatchAugment
from pptrain.memory import MemoryLoader
from pptrain.distributed import Dist
from pptrain.model import PrivacyResNet
from pptrain.recipe import RECIPES
from pptrain.loop import Loop, train_epoch
from trainer_common import BASELINE, baseline_loader, encrypted_fmnist

BATCH, WARMUP = 128, 3
CPU = torch.device("cpu")


class FirstBatches:
    """The first ``n`` batches of a loader's epoch, as a loader."""

    def __init__(self, loader, n: int):
        self.loader, self.batches, self.images = loader, n, n * BATCH

    def epoch(self, epoch):
        return islice(self.loader.epoch(epoch), self.batches)


def ours(ds, width: int, steps: int) -> float:
    m = ds.manifest
    torch.manual_seed(0)
    model = PrivacyResNet(m.channels, len(m.classes), width, "pixel")
    recipe = RECIPES["paper"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    aug = BatchAugment(("crop", "flip"), m.shape, len(m.classes), pad=4)
    memory = MemoryLoader(ds, "train", BATCH, Dist(), CPU, 0, train=True)
    loop = lambda n: Loop(net=model, optimizer=opt, aug=aug, recipe=recipe, lr=0.1, total_steps=n, seed=0, epochs=1,  # noqa: E731
                          device=CPU, d=Dist())  # fmt: skip
    go = lambda n: train_epoch(loop(n), FirstBatches(memory, n), 0)  # noqa: E731
    go(WARMUP)
    t = time.perf_counter()
    go(steps)
    return steps * BATCH / (time.perf_counter() - t)


def baseline(ds, width: int, steps: int) -> float:
    m = ds.manifest
    torch.manual_seed(0)
    model = PrivacyResNet(m.channels, len(m.classes), width, "pixel")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    batches = iter(baseline_loader(ds.root, batch=BATCH))
    t = 0.0
    for k in range(WARMUP + steps):
        if k == WARMUP:
            t = time.perf_counter()
        x, y = next(batches)
        loss = F.cross_entropy(model((x - 0.5) / 0.5), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * BATCH / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps at width 16 (width 64 runs a quarter)")
    p.add_argument("--widths", default="16,64")
    args = bench_args(p, quick={"steps": 8, "widths": "16"})
    ratios = Ratios(__file__, args)
    ds = open_dataset(encrypted_fmnist("wds"))
    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"baseline input pipeline: {BASELINE}")
    for width in map(int, args.widths.split(",")):
        steps = max(args.steps * 16 // width, 4)
        base, mine = baseline(ds, width, steps), ours(ds, width, steps)
        print(f"width {width:>2}: pptrain {mine:,.0f} img/s, baseline {base:,.0f} img/s ({mine / base:.2f}x), {steps} steps of {BATCH}")
        ratios.add(f"width{width}_speed", mine / base, "higher", f"training at width {width}, CPU: pptrain's images/s / the baseline pipeline's")
    ratios.report()


if __name__ == "__main__":
    main()
