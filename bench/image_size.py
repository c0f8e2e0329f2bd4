"""Larger images on the CPU: training images/s and peak memory of pptrain's step by image side
and ResNet stem.

    python bench/image_size.py [--sizes 32,64,128,224] [--width 16] [--batch 32] [--steps 4]

Per configuration, in a fresh process (so that the peak resident memory is its own): the
adaptation network + ResNet-18 at --width, pptrain's training step (trainer_common
.train_throughput: batched crop + flip, SGD, fp32) on random RGB images of the side, batch
--batch, images/s over --steps steps after one warm-up step, and the process's peak resident
set (ru_maxrss) minus its resident set before the model was built (torch itself, ~0.3 GiB).
Each side runs with the stem ``--stem auto`` picks (CIFAR's up to 64 px, torchvision's above)
and, at 64 and 128 px, with the other stem too: the measurement behind the threshold.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from common import machine

BOTH_STEMS = (64, 128)  # the sides measured with both stems


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def one(side: int, stem: str, width: int, batch: int, steps: int) -> dict:
    import torch

    from trainer_common import train_throughput

    before = rss_mib()
    result = train_throughput(torch.device("cpu"), (side, side, 3), width, batch, steps, 1, stem=stem, pool=2 * batch)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="32,64,128,224")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--one", nargs=2, metavar=("SIDE", "STEM"), help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], args.width, args.batch, args.steps)))
        return
    from pptrain.model import stem_for

    print(f"machine: {machine()}; width {args.width}, batch {args.batch}, {args.steps} timed steps")
    print("| side | stem | train img/s | peak memory (MiB, above torch's) |")
    print("|---|---|---|---|")
    for side in map(int, args.sizes.split(",")):
        auto = stem_for(side, side)
        stems = [auto] + ([s for s in ("cifar", "imagenet") if s != auto] if side in BOTH_STEMS else [])
        for stem in stems:
            child = [sys.executable, __file__, "--one", str(side), stem, "--width", str(args.width),
                     "--batch", str(args.batch), "--steps", str(args.steps)]  # fmt: skip
            r = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            mark = " (auto)" if stem == auto else ""
            print(f"| {side} | {stem}{mark} | {r['images_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
