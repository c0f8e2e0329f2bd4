"""GPU benchmark, prepared to run in one go on a GPU machine (never run by the tests).

    python bench/gpu_train.py --data out/gpu-fm [--out $OUT] [--epochs 30]

1. Training throughput of [P]'s adaptation network + ResNet-18 (width 64) at 32x32x3, batch
   512, bf16 autocast, channels_last — pptrain's own step (trainer.loop.train_epoch: batched
   crop + flip on the device, SGD, fast recipe) on a device-resident uint8 batch source of
   50,000 random images (pixel values do not change the speed of a dense network). Timed
   with CUDA events over --steps steps after --warmup, eager and torch.compile'd. Target:
   >= 25,000 img/s on one H100.
2. A --epochs (30) Fashion-MNIST run of pptrain at full width on --data (an encrypted
   dataset; make it here with `ppencrypt dataset /usr/share/datasets/fashion-mnist out/gpu-fm
   --key KEY --format zarr` and carry it: the zarr store is ~30 MB, the wds one too large).

Prints one JSON object per result and writes them all to OUT/gpu_results.json, the run's
metrics to OUT/gpu-run/. `--device cpu --width 4 --batch 16 --steps 2 --warmup 1 --epochs 1` is a dry run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from trainer.augment import BatchAugment
from trainer.device import memory_format
from trainer.distributed import Dist
from trainer.model import PrivacyResNet
from trainer.recipe import RECIPES
from trainer.settings import Settings
from trainer.loop import Loop, train_epoch
from trainer.train import train

SHAPE, CLASSES, POOL = (32, 32, 3), 10, 50_000


class DeviceBatches:
    """Random batches of a device-resident uint8 pool: the in-memory loader without a dataset."""

    def __init__(self, device: torch.device, batch: int, batches: int):
        g = torch.Generator(device="cpu").manual_seed(0)
        self.x = torch.randint(0, 256, (POOL, *SHAPE), dtype=torch.uint8, generator=g).to(device)
        self.y = torch.randint(0, CLASSES, (POOL,), generator=g).to(device)
        self.batch, self.batches, self.images = batch, batches, batch * batches

    def epoch(self, epoch: int):
        for _ in range(self.batches):
            idx = torch.randint(0, POOL, (self.batch,), device=self.x.device)
            yield self.x[idx], self.y[idx], idx


def throughput(device: torch.device, width: int, batch: int, steps: int, warmup: int, compiled: bool) -> dict:
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # as pptrain sets it on CUDA
    model = PrivacyResNet(SHAPE[2], CLASSES, width, "pixel").to(device, memory_format=memory_format(device))
    net = torch.compile(model) if compiled else model
    recipe = RECIPES["fast"]
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    aug = BatchAugment(("crop", "flip"), SHAPE, CLASSES, pad=4)
    step = lambda n: train_epoch(Loop(net, opt, aug, recipe, recipe.lr, n, 0, 1, device, Dist(), quiet=True), DeviceBatches(device, batch, n), 0)  # noqa: E731
    step(warmup)  # compilation, cuDNN autotuning, allocator growth
    cuda = device.type == "cuda"
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
    t = time.perf_counter()
    step(steps)
    if cuda:
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        seconds = time.perf_counter() - t
    return {"bench": "train_throughput", "compiled": compiled, "width": width, "batch": batch, "shape": list(SHAPE),
            "steps": steps, "images_per_s": steps * batch / seconds}  # fmt: skip


def fmnist_run(data: str, out: Path, epochs: int, width: int, batch: int, device: str, compiled: bool) -> dict:
    run_dir = out / "gpu-run"
    t = time.perf_counter()
    given = Settings(data=data, epochs=epochs, batch_size=batch, width=width, device=device, compile=compiled, run_dir=str(run_dir))
    outcome = train(given)
    last = outcome.history[-1]
    return {"bench": "fmnist_run", "data": data, "epochs": epochs, "width": width, "compiled": compiled,
            "test_acc": last["test_acc"], "best_test_acc": max(r["test_acc"] or 0 for r in outcome.history),
            "median_images_per_s": sorted(r["images_per_s"] for r in outcome.history)[epochs // 2],
            "wall_s": time.perf_counter() - t, "summary": outcome.summary}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="out/gpu-fm", help="encrypted Fashion-MNIST for the accuracy run ('' skips it)")
    p.add_argument("--out", default=os.environ.get("OUT", "out/gpu-bench"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement and run")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results = [{"device": name, "torch": torch.__version__, "cuda": torch.version.cuda}]
    print(json.dumps(results[0]), flush=True)
    for compiled in [False] + ([] if args.no_compile else [True]):
        results.append(throughput(device, args.width, args.batch, args.steps, args.warmup, compiled))
        print(json.dumps(results[-1]), flush=True)
    if args.data:
        results.append(fmnist_run(args.data, out, args.epochs, args.width, args.batch, args.device, not args.no_compile))
        print(json.dumps(results[-1]), flush=True)
    (out / "gpu_results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
