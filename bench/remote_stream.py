"""Streaming from object storage against streaming from local disk: the same shards, the same
run, the same loader settings.

    python bench/remote_stream.py [--repeat R] [--workers W] [--prefetch P] [--quick] [--json PATH]

The encrypted Fashion-MNIST wds dataset (trainer_common.encrypted_fmnist: 60,000 train images,
6 shards of ~25 MB) is pushed to an S3-compatible server on 127.0.0.1 (moto's, tests/servers.py,
in its own process so that it does not share the training process's GIL), then one epoch of
pptrain's streaming loader (batch 128, W workers, P shards read ahead, shuffle buffer 20,000,
crop + flip on the CPU) is timed from: the local folder; the URL without a cache; the URL with
an empty --cache-dir (cold: every shard downloaded); the URL with a full one (warm). Best of R
epochs each; the bytes the server sent per epoch are counted by the server. Also the
in-memory path's one-time load of the split, local and from the URL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from common import ROOT, machine
from ratios import Ratios, bench_args
from ppencrypt.formats import ShardCache, open_dataset
from ppencrypt.formats.copy import copy_dataset
from pptrain.augment import BatchAugment
from pptrain.distributed import Dist
from pptrain.memory import MemoryLoader
from pptrain.stream import StreamLoader
from trainer_common import encrypted_fmnist

BATCH = 128
CPU = torch.device("cpu")


class Server:
    """tests/servers.py's S3 server in a child process, and what it has sent so far."""

    def __init__(self, config: Path):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "servers.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
        self.endpoint = self.proc.stdout.readline().strip()
        sys.path.insert(0, str(ROOT / "tests"))
        from servers import s3_env

        os.environ.update(s3_env(self.endpoint, config))  # what a user sets for an S3-compatible endpoint

    def counts(self) -> dict:
        with urllib.request.urlopen(f"{self.endpoint}/_ppencrypt_test_counts", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def epoch(ds, aug: BatchAugment, workers: int, prefetch: int) -> tuple[int, float]:
    """Images and seconds of one training epoch of the streaming loader, augmentation included."""
    loader = StreamLoader(ds, "train", BATCH, Dist(), CPU, 0, train=True, workers=workers, buffer=20_000, prefetch=prefetch)
    rng = np.random.default_rng(0)
    t, n = time.perf_counter(), 0
    for x, y, _ in loader.epoch(0):
        out, _ = aug(x, y, aug.draw(len(y), rng))
        n += len(out)
    return n, time.perf_counter() - t


def best(runs: list[tuple[int, float]]) -> float:
    return max(n / s for n, s in runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--prefetch", type=int, default=2)
    args = bench_args(p, quick={"repeat": 2})
    ratios = Ratios(__file__, args)
    root = encrypted_fmnist("wds")
    scratch = Path(tempfile.mkdtemp(prefix="pptrain-bench-remote-"))
    server = Server(scratch)
    try:
        import fsspec

        fsspec.filesystem("s3", skip_instance_cache=True).mkdir("bench")
        url = "s3://bench/fm"
        t = time.perf_counter()
        copy_dataset(root, url)
        push = time.perf_counter() - t
        local, remote = open_dataset(root), open_dataset(url)
        m = local.manifest
        size = sum(s.bytes for s in m.splits["train"].shards)
        aug = BatchAugment(("crop", "flip"), m.shape, len(m.classes), pad=4)
        run = lambda ds: epoch(ds, aug, args.workers, args.prefetch)  # noqa: E731

        print(f"machine: {machine()}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
        print(f"data: {root} -> {url} ({m.splits['train'].count} train images in {len(m.splits['train'].shards)} shards, "
              f"{size / 1e6:.1f} MB; pushed in {push:.1f} s); batch {BATCH}, {args.workers} workers, prefetch {args.prefetch}")  # fmt: skip
        cold, warm = scratch / "cold", scratch / "warm"
        run(open_dataset(url, ShardCache(warm, 10 << 30)))  # fill it
        sources = {  # name -> (a fresh dataset for an epoch, what to do first)
            "local disk": (lambda: local, None),
            "S3, no cache": (lambda: remote, None),
            "S3, cache cold": (lambda: open_dataset(url, ShardCache(cold, 10 << 30)), lambda: shutil.rmtree(cold, ignore_errors=True)),
            "S3, cache warm": (lambda: open_dataset(url, ShardCache(warm, 10 << 30)), None),
        }
        runs: dict[str, list] = {name: [] for name in sources}
        sent: dict[str, list] = {name: [] for name in sources}
        for r in range(args.repeat):  # interleaved, so that a change of load hits every source alike
            for name, (make, before) in sources.items():
                if before:
                    before()
                c0 = server.counts()["bytes"]
                runs[name].append(run(make()))
                sent[name].append(server.counts()["bytes"] - c0)
                n, s = runs[name][-1]
                print(f"  pass {r + 1} {name}: {n / s:,.0f} img/s, {sent[name][-1] / 1e6:.1f} MB sent", flush=True)
        base = best(runs["local disk"])
        print("| source | img/s (best of %d) | vs local disk | bytes sent per epoch |" % args.repeat)
        print("|---|---|---|---|")
        for name in sources:
            rate = best(runs[name])
            print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {np.median(sent[name]) / 1e6:,.1f} MB |")
        for name, key, goal in (("S3, no cache", "no_cache", None), ("S3, cache cold", "cache_cold", 0.8), ("S3, cache warm", "cache_warm", 0.95)):
            ratios.add(f"{key}_speed", best(runs[name]) / base, "higher", f"streaming an epoch from {name}: images/s / from local disk", goal)
        for name, key, goal in (("S3, no cache", "no_cache", None), ("S3, cache cold", "cache_cold", 1.05)):  # the split once (and the manifest)
            ratios.add(f"{key}_bytes", np.median(sent[name]) / size, "lower", f"bytes sent per epoch from {name} / the split's size", goal)

        loads = []
        for name, ds in (("local disk", local), ("S3", remote)):
            t = time.perf_counter()
            MemoryLoader(ds, "train", BATCH, Dist(), CPU, 0, train=True)
            loads.append((name, time.perf_counter() - t))
        print("in memory, one-time load of the train split: " + ", ".join(f"{n} {s:.2f} s" for n, s in loads))
        ratios.report()
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
