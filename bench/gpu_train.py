"""GPU benchmark, prepared to run in one go on a GPU machine (never run by the tests).

    python bench/gpu_train.py --data out/gpu-fm [--out $OUT] [--epochs 30]

1. Training throughput of [P]'s adaptation network + ResNet-18 (width 64) at 32x32x3, batch
   512, bf16 autocast, channels_last — pptrain's own step (pptrain.loop.train_epoch: batched
   crop + flip on the device, SGD, fast recipe) on a device-resident uint8 batch source of
   50,000 random images (pixel values do not change the speed of a dense network). Timed
   with CUDA events over --steps steps after --warmup, eager and torch.compile'd. Target:
   >= 25,000 img/s on one H100.
2. Larger images (--sizes, default 32,64,128,224 px, RGB): training images/s and the largest
   GPU memory allocated (torch.cuda.max_memory_allocated) of the same step at width 64, batch
   --size-batch (256), with the stem pptrain picks for the size (--stem auto: CIFAR's up to
   64 px, torchvision's above), eager.
3. Other backbones (--archs, default resnet18,resnet50,efficientnet_b0,mobilenet_v3_small,
   convnext_tiny,vit_b_16: pptrain --arch) at --arch-side (224) px RGB, batch --size-batch,
   torchvision's stem, eager: images/s, GPU memory, parameters, and the ratio to cifar-resnet18
   (width 64) at the same side, measured in the same run.
4. A --epochs (30) Fashion-MNIST run of pptrain at full width on --data (an encrypted
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

from pptrain.metrics import evaluated
from pptrain.settings import Settings
from pptrain.train import train
from trainer_common import train_throughput

SHAPE = (32, 32, 3)


def fmnist_run(data: str, out: Path, epochs: int, width: int, batch: int, device: str, compiled: bool) -> dict:
    run_dir = out / "gpu-run"
    t = time.perf_counter()
    given = Settings(data=data, epochs=epochs, batch_size=batch, width=width, device=device, compile=compiled, run_dir=str(run_dir))
    outcome = train(given)
    last = outcome.history[-1]
    return {"bench": "fmnist_run", "data": data, "epochs": epochs, "width": width, "compiled": compiled,
            "test_acc": evaluated(last)[1], "best_test_acc": max(evaluated(r)[1] or 0 for r in outcome.history),
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
    p.add_argument("--sizes", default="32,64,128,224", help="image sides for the larger-image measurement ('' skips it)")
    p.add_argument("--size-batch", type=int, default=256)
    p.add_argument("--archs", default="resnet18,resnet50,efficientnet_b0,mobilenet_v3_small,convnext_tiny,vit_b_16",
                   help="backbones (pptrain --arch) measured at --arch-side ('' skips them)")
    p.add_argument("--arch-side", type=int, default=224)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement and run")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results = [{"device": name, "torch": torch.__version__, "cuda": torch.version.cuda}]
    print(json.dumps(results[0]), flush=True)
    for compiled in [False] + ([] if args.no_compile else [True]):
        results.append(train_throughput(device, SHAPE, args.width, args.batch, args.steps, args.warmup, compiled=compiled))
        print(json.dumps(results[-1]), flush=True)
    for side in [int(x) for x in args.sizes.split(",") if x]:
        steps = max(args.steps // 4, 2)
        results.append(train_throughput(device, (side, side, 3), args.width, args.size_batch, steps, max(args.warmup // 3, 1), pool=4 * args.size_batch))
        print(json.dumps(results[-1]), flush=True)
    archs = [a for a in args.archs.split(",") if a]
    if archs:
        shape, steps = (args.arch_side, args.arch_side, 3), max(args.steps // 4, 2)
        base = None
        for arch in ["cifar-resnet18", *archs]:
            r = train_throughput(device, shape, args.width, args.size_batch, steps, max(args.warmup // 3, 1), pool=4 * args.size_batch,
                                 arch=arch)  # fmt: skip
            base = base or r["images_per_s"]
            r["ratio_to_cifar_resnet18"] = r["images_per_s"] / base
            results.append(r)
            print(json.dumps(r), flush=True)
    if args.data:
        results.append(fmnist_run(args.data, out, args.epochs, args.width, args.batch, args.device, not args.no_compile))
        print(json.dumps(results[-1]), flush=True)
    (out / "gpu_results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
