"""``ppencrypt dataset`` on Fashion-MNIST (70,000 images) to wds and zarr, next to the plain
copy a user would write with stock webdataset, in the same run.

    python bench/dataset_write.py [--workers N] [--repeat R] [--quick] [--json PATH]

Baseline: the already-decoded arrays written unencrypted with ``webdataset.ShardWriter``,
one sample dict per image (.npy + .cls), 10,000 samples per shard. Ours: the whole job —
read and decompress the IDX files, encrypt (pe, a dataset key and image keys), write shards, hash them,
write the manifest — called in-process, plus the same as a CLI subprocess (interpreter
start-up and imports included).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import webdataset as wds

from common import FMNIST, ROOT, machine
from ratios import Ratios, bench_args
from ppencrypt.dataset import EncryptOptions, encrypt_dataset
from ppencrypt.formats.tar import TarStream
from ppencrypt.formats.wds import npy_header
from ppencrypt.keys import MasterKey, generate_key_file
from ppencrypt.parallel import default_workers
from ppencrypt.sources import open_source

GOALS = {("wds", "dataset"): 0.4, ("zarr", "dataset"): 0.1, ("wds", "image"): 0.1, ("zarr", "image"): 0.1}  # x the plain copy's time


def plain_copy(src, out: Path) -> None:
    """What a user would write: stock ShardWriter, per-sample dicts, no encryption."""
    for split, loader in src.splits.items():
        (out / split).mkdir(parents=True)
        with wds.ShardWriter(str(out / split / "%06d.tar"), maxcount=10_000, verbose=0) as sink:
            for i, (image, label) in enumerate(zip(loader.images, loader.labels)):
                sink.write({"__key__": f"{i:08d}", "npy": image, "cls": int(label)})


def tar_rows(images, labels, work: Path, repeat: int) -> list[tuple[str, float]]:
    """The shard writers alone, on the same pre-encoded sample bytes."""
    header = npy_header(images.shape[1:])
    samples = [(b"%08d" % i, b"%d" % y, header + im.tobytes()) for i, (im, y) in enumerate(zip(images, labels.tolist()))]

    def stock():
        with open(work / "stock.tar", "wb") as f, wds.TarWriter(f, encoder=False, mtime=0, user="ppencrypt", group="ppencrypt") as w:
            for key, cls, npy in samples:
                w.write({"__key__": key.decode(), "cls": cls, "npy": npy})

    def ours():
        with open(work / "ours.tar", "wb") as f:
            tar = TarStream(f)
            for key, cls, npy in samples:
                tar.add(key + b".cls", cls)
                tar.add(key + b".npy", npy)
            tar.close()

    return [("tar only: webdataset.TarWriter(encoder=False)", timed(stock, repeat)), ("tar only: pipeline TarStream", timed(ours, repeat))]


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the fastest counts")
    args = bench_args(ap, quick={"repeat": 1})
    ratios = Ratios(__file__, args)
    if not FMNIST.is_dir():
        sys.exit(f"{FMNIST}: Fashion-MNIST is missing; run `make data`")
    work = Path(tempfile.mkdtemp(prefix="ppbench-"))
    try:
        key = MasterKey(bytes(range(32)))
        src = open_source(str(FMNIST))
        n = sum(len(v) for v in src.splits.values())
        print(f"machine: {machine()}")
        print(f"data: Fashion-MNIST from {FMNIST}, {n} images 28x28x1")

        def fresh(name: str) -> Path:
            p = work / name
            shutil.rmtree(p, ignore_errors=True)
            return p

        base = timed(lambda: plain_copy(src, fresh("plain")), args.repeat)
        rows = [("baseline: numpy + webdataset.ShardWriter, plain", base)]
        for storage in ("wds", "zarr"):
            for scope in ("dataset", "image"):
                opts = EncryptOptions(storage=storage, workers=args.workers, scope=scope)
                secs = timed(lambda: encrypt_dataset(str(FMNIST), str(fresh(storage)), key, opts), args.repeat)
                rows.append((f"ppencrypt dataset --format {storage}, {scope} key (in-process)", secs))
                keys = "image keys" if scope == "image" else "dataset key"
                ratios.add(f"{storage}_{keys.replace(' ', '_')}_time", secs / base, "lower",
                           f"ppencrypt dataset --format {storage}, {keys}, in-process: time / the plain ShardWriter copy's", GOALS[storage, scope])  # fmt: skip
        keyfile = work / "k.key"
        generate_key_file(keyfile)
        exe = Path(sys.executable).with_name("ppencrypt")
        for storage in ("wds", "zarr"):
            cmd = [str(exe), "dataset", str(FMNIST), str(work / f"cli-{storage}"), "--key", str(keyfile),
                   "--format", storage, "--workers", str(args.workers), "--overwrite", "--quiet"]  # fmt: skip
            secs = timed(lambda: subprocess.run(cmd, check=True), args.repeat)
            rows.append((f"ppencrypt dataset --format {storage}, image keys (CLI process)", secs))
            ratios.add(f"cli_{storage}_time", secs / base, "lower", f"the same, --format {storage}, image keys, as a CLI process: time / the plain copy's")
        train = src.splits["train"]
        tar = tar_rows(train.images, train.labels, work, args.repeat)

        print(f"\n{'job':60s} {'seconds':>8s} {'img/s':>9s} {'x baseline time':>16s}")
        for name, secs in rows:
            print(f"{name:60s} {secs:8.2f} {n / secs:9.0f} {secs / base:15.3f}x")
        print(f"\n{'shard writer alone (' + str(len(train)) + ' samples)':60s} {'seconds':>8s} {'img/s':>9s} {'x TarWriter time':>16s}")
        for name, secs in tar:
            print(f"{name:60s} {secs:8.2f} {len(train) / secs:9.0f} {secs / tar[0][1]:15.3f}x")
        print(f"\n(workers={args.workers}; fastest of {args.repeat} runs; targets: image keys <= 0.1x the baseline's time)")
        ratios.add("tarstream_time", tar[1][1] / tar[0][1], "lower", "shard writer alone: TarStream's time / webdataset.TarWriter's")
        ratios.report()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
