"""Issue 23's "Measured": photo JPEGs as webdataset shards in S3 (moto's server on 127.0.0.1)
to ``--size 224`` encrypted shards in S3, with ``--engine local`` and ``--engine dask``, watching
every process's peak RSS and the local disk the job uses.

    python bench/scale_write.py [--images 2000] [--grow 10] [--per-shard 500] [--out-shard 500]
                                [--workers 2] [--no-dask] [--quick] [--json PATH]

The photos: the 20 vendored ImageNet JPEGs (tests/data/imagenet) cropped at a position drawn
for each photo, resized to 500x375 and mirrored half the time (bench/photo_write.py's recipe,
seeded per photo, so every photo is distinct and the same in every run), JPEG quality 90, in
tar shards of ``--per-shard`` (``jpg`` + ``cls``), ``--images`` x ``--grow`` of them in S3. Jobs,
each a whole ``ppencrypt dataset`` process writing to S3:

* ``--engine local --workers 2`` on the first ``--images`` (the baseline) and on all of them
  (the source x ``--grow``: RSS and local disk must stay flat);
* ``--engine dask`` on the first ``--images`` with a LocalCluster of 1 and of 2 worker
  processes (started by the job; its start-up measured alone too), ``--reproduce`` of the
  baseline: checked byte-identical to it.

While a job runs, every 0.1 s: each process of its tree (driver, pool workers, dask nannies
and workers) has its ``VmHWM`` read from /proc (the kernel's peak RSS of that process, so a
peak between two polls is not missed), and the job's private TMPDIR — where the streamed output
stages shards and dask workers keep their scratch space — is summed.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from common import ROOT, machine
from ratios import Ratios, bench_args

POLL_S = 0.1
_BASES: list[Image.Image] = []


def photo(i: int) -> bytes:
    """Photo i: a 416x312 crop of a vendored image at a position drawn from seed i, 500x375."""
    if not _BASES:
        _BASES.extend(Image.open(f).convert("RGB") for f in sorted((ROOT / "tests" / "data" / "imagenet").glob("*.jpg")))
    rng = np.random.default_rng(i)
    x, y = (int(v) for v in rng.integers(0, 96, 2))
    im = _BASES[i % len(_BASES)].crop((x, y, x + 416, y + 312)).resize((500, 375), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def shard(span: tuple[int, int]) -> bytes:
    """A webdataset tar of photos [start, stop): ``<key>.jpg`` and ``<key>.cls`` (class i % 10)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(*span):
            for ext, data in (("jpg", photo(i)), ("cls", str(i % 10).encode())):
                info = tarfile.TarInfo(f"{i:08d}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def upload_source(fs, prefix: str, n: int, per_shard: int, workers: int) -> tuple[int, int]:
    """n photos as shards under s3://prefix/; (shards, bytes)."""
    spans = [(s, min(s + per_shard, n)) for s in range(0, n, per_shard)]
    total = 0
    with mp.get_context("fork").Pool(workers) as pool:
        for k, data in enumerate(pool.imap(shard, spans)):
            fs.pipe_file(f"{prefix}/train-{k:06d}.tar", data)
            total += len(data)
    return len(spans), total


@dataclass(kw_only=True)
class Watched:
    seconds: float = 0.0
    hwm: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM (KiB)
    driver: int = 0
    disk_peak: int = 0  # bytes under the job's TMPDIR, most at once
    methods: dict[str, int] = field(default_factory=dict)  # S3 requests by method
    got: int = 0  # bytes of GET bodies sent to the job
    put: int = 0  # bytes of PUT/POST bodies the job sent

    def others(self) -> list[int]:
        return sorted((v for p, v in self.hwm.items() if p != self.driver), reverse=True)


class Requests:
    """WSGI middleware in front of moto: S3 requests by method, and the bytes sent to clients
    (GET bodies) and received from them (PUT/POST bodies), for the request rates on paper."""

    def __init__(self, app):
        self.app, self.lock = app, threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.methods: dict[str, int] = {}
        self.sent = self.received = 0

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "")
        with self.lock:
            self.methods[method] = self.methods.get(method, 0) + 1
            self.received += int(environ.get("CONTENT_LENGTH") or 0) if method in ("PUT", "POST") else 0
        for piece in self.app(environ, start_response):
            with self.lock:
                self.sent += len(piece) if method == "GET" else 0
            yield piece


def _vmhwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.Error:
        return [pid]


def _du(root: str) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(folder, f)).st_size
            except OSError:  # staged and gone between the listing and the stat
                pass
    return total


def watch(argv: list[str], env: dict[str, str]) -> Watched:
    """Run argv, polling its process tree's VmHWM and its TMPDIR's size until it exits."""
    w = Watched()
    t = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    w.driver = p.pid
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(p.stderr.read()), daemon=True)
    reader.start()
    while p.poll() is None:
        for pid in _tree(p.pid):
            v = _vmhwm(pid)
            if v is not None:
                w.hwm[pid] = max(w.hwm.get(pid, 0), v)
        w.disk_peak = max(w.disk_peak, _du(env["TMPDIR"]))
        time.sleep(POLL_S)
    w.seconds = time.perf_counter() - t
    reader.join()
    if p.returncode:
        raise SystemExit(f"{' '.join(argv[2:5])}... exit {p.returncode}: {''.join(errors)[-2000:]}")
    return w


def startup(n: int, env: dict[str, str]) -> float:
    """A LocalCluster of n workers started, connected and closed, as the dask engine does."""
    code = ("from distributed import Client, LocalCluster; c = LocalCluster(n_workers=%d, threads_per_worker=1, "
            "processes=True, host='127.0.0.1', dashboard_address=None); Client(c).close(); c.close()" % n)  # fmt: skip
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def listing(fs, prefix: str) -> dict[str, tuple[int, str]]:
    """name -> (size, ETag) of every object under prefix: what two outputs are compared by."""
    return {k[len(prefix):]: (v["size"], v.get("ETag", "")) for k, v in fs.find(prefix, detail=True).items()}


COLLECTIONS = {"ImageNet-1k (1.28 M images)": 1_281_167, "a 100 M-image collection": 100_000_000}
CLUSTER = 100  # cores, for the wall-clock and aggregate columns


def on_paper(n: int, w: Watched, cores: int) -> None:
    """The big job's rate per core, bytes and requests per image, scaled to the collections."""
    per_core = n / w.seconds / cores
    reads = sum(v for k, v in w.methods.items() if k not in ("PUT", "POST"))
    writes = w.methods.get("PUT", 0) + w.methods.get("POST", 0)
    in_mb, out_mb = per_core * w.got / n / 1e6, per_core * w.put / n / 1e6
    print(f"\non paper, from the largest job's {per_core:.1f} images/s per core ({n:,} images, {w.seconds:.0f} s, "
          f"{cores} cores): each core reads {in_mb:.2f} MB/s and writes {out_mb:.2f} MB/s, "
          f"{reads / n * per_core:.3f} GET/HEAD and {writes / n * per_core:.3f} PUT/POST requests/s")  # fmt: skip
    print(f"\n| collection | core-hours | hours on {CLUSTER} cores | network in + out, {CLUSTER} cores | "
          f"S3 GET/HEAD per s, {CLUSTER} cores | S3 PUT/POST per s, {CLUSTER} cores |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, images in COLLECTIONS.items():
        hours = images / per_core / 3600
        print(f"| {name} | {hours:,.0f} | {hours / CLUSTER:,.1f} | {CLUSTER * (in_mb + out_mb) * 8 / 1e3:.2f} Gbit/s | "
              f"{CLUSTER * reads / n * per_core:,.1f} | {CLUSTER * writes / n * per_core:,.1f} |")  # fmt: skip


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000, help="the baseline's and the dask jobs' photos")
    ap.add_argument("--grow", type=int, default=10, help="the large local job reads this many times --images")
    ap.add_argument("--per-shard", type=int, default=500, help="photos per source shard")
    ap.add_argument("--out-shard", type=int, default=500, help="--shard-size of the encrypted output")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-dask", action="store_true", help="the local jobs only")
    args = bench_args(ap, quick={"images": 100, "grow": 5, "per_shard": 25, "out_shard": 25})
    if args.images % args.per_shard:
        ap.error("--images must be a multiple of --per-shard (the small jobs read whole source shards)")
    ratios = Ratios(__file__, args)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    sys.path.insert(0, str(ROOT / "tests"))
    import fsspec
    from servers import S3Server, make_bucket

    server = S3Server()
    requests = server.counting.app = Requests(server.counting.app)
    results: dict[str, tuple[int, Watched]] = {}
    with tempfile.TemporaryDirectory(prefix="scale-write-") as tmp:
        tmp = Path(tmp)
        os.environ.update(server.env(tmp))
        make_bucket("bench")
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        big = args.images * args.grow
        t = time.perf_counter()
        n_shards, src_bytes = upload_source(fs, "bench/src", big, args.per_shard, args.workers)
        print(f"{big} photos (500x375 JPEG) as {n_shards} shards, {src_bytes / 1e6:.0f} MB, made and uploaded in "
              f"{time.perf_counter() - t:.1f} s")  # fmt: skip
        classes = tmp / "classes.txt"
        classes.write_text("".join(f"class{c}\n" for c in range(10)))
        key = tmp / "k.key"
        subprocess.run([sys.executable, "-m", "ppencrypt", "keygen", str(key)], check=True, capture_output=True)

        def src(n: int) -> str:
            return f"s3://bench/src/train-{{000000..{n // args.per_shard - 1:06d}}}.tar"

        def job(name: str, n: int, out: str, *extra: str) -> Watched:
            scratch = tmp / f"tmp-{len(results)}"
            scratch.mkdir()
            env = {**os.environ, "TMPDIR": str(scratch)}
            argv = [sys.executable, "-m", "ppencrypt", "dataset", src(n), f"s3://bench/{out}", "--key", str(key),
                    "--classes", str(classes), "--size", "224", "--shard-size", str(args.out_shard), "--quiet", *extra]  # fmt: skip
            requests.reset()
            w = watch(argv, env)
            w.methods, w.got, w.put = dict(requests.methods), requests.sent, requests.received
            shutil.rmtree(scratch)
            results[name] = (n, w)
            print(f"  {name}: {n} images in {w.seconds:.1f} s ({n / w.seconds:.0f}/s), driver {mib(w.hwm[w.driver])}, "
                  f"others {[mib(v) for v in w.others()]}, local disk at most {w.disk_peak / 1e6:.1f} MB; S3 {w.methods}, "
                  f"{w.got / n / 1e3:.1f} kB/image in, {w.put / n / 1e3:.1f} kB/image out", flush=True)  # fmt: skip
            return w

        base = "local, --workers 2 (baseline)"
        job(base, args.images, "out-local", "--workers", str(args.workers))
        reference = listing(fs, "bench/out-local/")
        out_bytes = sum(size for size, _ in reference.values())
        out_objects = len(reference)
        if not args.no_dask:
            starts = {n: startup(n, {**os.environ}) for n in (1, 2)}
            for n in (1, 2):
                name = f"dask LocalCluster, {n} worker process{'es' if n > 1 else ''}"
                job(name, args.images, f"out-dask{n}", "--engine", "dask", "--workers", str(n), "--reproduce", "s3://bench/out-local")
                assert listing(fs, f"bench/out-dask{n}/") == reference, f"{name}: not the local engine's bytes"
                fs.rm(f"bench/out-dask{n}", recursive=True)
        fs.rm("bench/out-local", recursive=True)
        grown = f"local, --workers 2, x{args.grow} the source"
        job(grown, big, "out-big", "--workers", str(args.workers))
        big_objects = len(fs.find("bench/out-big/"))
    server.stop()

    local = results[base][1].seconds
    print(f"\nsource: {n_shards} shards of {args.per_shard} photos, {src_bytes / big / 1e3:.1f} kB a photo; output "
          f"--shard-size {args.out_shard}: {out_bytes / args.images / 1e3:.1f} kB an image, {out_objects} objects for "
          f"{args.images} images, {big_objects} for {big}")  # fmt: skip
    print("\n| job | images | seconds | images/s | × local's speed | peak RSS: driver | peak RSS: other processes | local disk at most |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (n, w) in results.items():
        print(f"| {name} | {n:,} | {w.seconds:.1f} | {n / w.seconds:,.0f} | {local / args.images * n / w.seconds:.2f}× | "
              f"{mib(w.hwm[w.driver])} | {', '.join(mib(v) for v in w.others()) or '-'} | {w.disk_peak / 1e6:.1f} MB |")  # fmt: skip
    print("\n| job | S3 requests by method | kB an image in (GET bodies) | kB an image out (PUT/POST bodies) |")
    print("|---|---|---|---|")
    for name, (n, w) in results.items():
        print(f"| {name} | {', '.join(f'{k} {v:,}' for k, v in sorted(w.methods.items()))} | {w.got / n / 1e3:.1f} | {w.put / n / 1e3:.1f} |")
    if not args.no_dask:
        print("(every dask output byte-identical to the local engine's: the same objects, sizes and ETags)")
        for n in (1, 2):
            w = results[f"dask LocalCluster, {n} worker process{'es' if n > 1 else ''}"][1]
            work = w.seconds - starts[n]
            print(f"LocalCluster of {n} alone (start, connect, close): {starts[n]:.1f} s; the job without it: {work:.1f} s, "
                  f"{args.images / work:,.0f} images/s, {local / work:.2f}x local's speed")  # fmt: skip
            ratios.add(f"dask{n}_speed", local / w.seconds, "higher",
                       f"--engine dask, a LocalCluster of {n}, from S3 to S3: speed / --engine local --workers 2's")  # fmt: skip
    small, large = results[base][1], results[grown][1]
    on_paper(big, large, len(os.sched_getaffinity(0)))
    peak = lambda w: max(w.hwm.values())  # noqa: E731
    ratios.add("rss_growth", peak(large) / peak(small), "lower",
               f"largest process's peak RSS, x{args.grow} the source / x1 (flat: 1)", goal=1.2)  # fmt: skip
    ratios.add("disk_growth", large.disk_peak / max(small.disk_peak, 1), "lower",
               f"local disk used at most, x{args.grow} the source / x1 (flat: 1)", goal=1.2)  # fmt: skip
    ratios.add("peak_rss", max(peak(w) for _, w in results.values()) / 1024, "lower", "peak RSS of any process of any job",
               goal=1024, unit="MiB")  # fmt: skip
    ratios.report()


if __name__ == "__main__":
    main()
