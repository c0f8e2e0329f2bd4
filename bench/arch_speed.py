"""Backbones on the CPU (pptrain --arch): training images/s of pptrain's step by architecture and
image side, as a ratio to the default arch (cifar-resnet18, width 64) measured in the same run.

    python bench/arch_speed.py [--archs resnet18,resnet50,...] [--sizes 64,224] [--batch 8] [--steps 2]

Per configuration, in a fresh process (its peak resident memory is its own): [P]'s adaptation
network + the backbone with the stem ``--stem auto`` picks (CIFAR's 3x3 stride-1 stem up to
64 px, torchvision's above; torchvision's always for vit_*), pptrain's training step
(trainer_common.train_throughput: batched crop + flip, SGD, fp32) on random RGB images of the
side, batch --batch, images/s over --steps steps after one warm-up step, and the process's
peak resident set above torch's own. bench/gpu_train.py measures the same at 224 px on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from common import machine

ARCHS = "resnet18,resnet50,mobilenet_v3_small,efficientnet_b0,convnext_tiny,vit_b_16"
BASELINE = "cifar-resnet18"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def one(arch: str, side: int, batch: int, steps: int) -> dict:
    import torch

    from trainer_common import train_throughput

    torch.set_num_threads(2)
    before = rss_mib()
    result = train_throughput(torch.device("cpu"), (side, side, 3), 64, batch, steps, 1, arch=arch, pool=2 * batch)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default=ARCHS)
    p.add_argument("--sizes", default="64,224")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--one", nargs=2, metavar=("ARCH", "SIDE"), help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.batch, args.steps)))
        return
    print(f"machine: {machine()}; batch {args.batch}, {args.steps} timed steps after 1, fp32, stem auto")
    print(f"| side | arch | stem | parameters (M) | train img/s | ratio to {BASELINE} | peak memory (MiB, above torch's) |")
    print("|---|---|---|---|---|---|---|")
    for side in map(int, args.sizes.split(",")):
        base = None
        for arch in [BASELINE, *[a for a in args.archs.split(",") if a and a != BASELINE]]:
            child = [sys.executable, __file__, "--one", arch, str(side), "--batch", str(args.batch), "--steps", str(args.steps)]
            r = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            base = base or r["images_per_s"]
            print(f"| {side} | {arch} | {r['stem']} | {r['parameters'] / 1e6:.1f} | {r['images_per_s']:,.1f} | "
                  f"{r['images_per_s'] / base:.3f} | {r['peak_rss_mib']:,.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
