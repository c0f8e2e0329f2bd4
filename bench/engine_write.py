"""``ppencrypt dataset --engine dask`` against ``--engine local`` on the same photos, in the
same run (issue 23): photo JPEGs (bench/photo_write.py's) to 224 px encrypted shards in a
local folder.

    python bench/engine_write.py [--images 2000] [--repeat 2] [--quick] [--json PATH]

Rows, each a whole process, best of ``--repeat``: the local engine with ``--workers 2`` (the
baseline), and the dask engine on a ``distributed.LocalCluster`` the job starts itself with 1
and with 2 worker processes (start-up of the cluster included). Every output is checked to be
byte-identical to the local engine's (``--reproduce``, the same salt). Peak RSS: the largest
process of the job (workers included).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine
from photo_write import make_photos, run
from ratios import Ratios, bench_args


def same_tree(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        filecmp.cmp(a / f, b / f, shallow=False) for f in files)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2)
    args = bench_args(ap, quick={"images": 400, "repeat": 1})
    ratios = Ratios(__file__, args)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        src = make_photos(tmp / "photos", args.images, 0.0)
        print(f"{args.images} photos (500x375) made in {time.perf_counter() - t:.1f} s")
        key = tmp / "k.key"
        subprocess.run([sys.executable, "-m", "ppencrypt", "keygen", str(key)], check=True, capture_output=True)
        base = [sys.executable, "-m", "ppencrypt", "dataset", str(src), None, "--key", str(key), "--size", "224", "--shard-size", "100", "--quiet"]
        reference = tmp / "reference"
        subprocess.run([*base[:5], str(reference), *base[6:], "--workers", "2"], check=True)
        jobs = {
            "local, --workers 2 (baseline)": ["--workers", "2"],
            "dask LocalCluster, 1 worker process": ["--engine", "dask", "--workers", "1"],
            "dask LocalCluster, 2 worker processes": ["--engine", "dask", "--workers", "2"],
        }
        results = {}
        for name, extra in jobs.items():
            best, rss = float("inf"), 0
            for r in range(args.repeat):
                out = tmp / f"out-{len(results)}-{r}"
                seconds, peak, _ = run([*base[:5], str(out), *base[6:], *extra, "--reproduce", str(reference)])
                assert same_tree(out, reference), f"{name}: not the local engine's bytes"
                best, rss = min(best, seconds), max(rss, peak)
                subprocess.run(["rm", "-rf", str(out)], check=True)
            results[name] = (best, rss)
        startup = {}
        for n in (1, 2):  # what a LocalCluster costs before any work: started, connected, closed
            code = ("from distributed import Client, LocalCluster; c = LocalCluster(n_workers=%d, threads_per_worker=1, "
                    "processes=True, host='127.0.0.1', dashboard_address=None); Client(c).close(); c.close()" % n)  # fmt: skip
            startup[n] = min(run([sys.executable, "-c", code])[0] for _ in range(args.repeat))
    local = results["local, --workers 2 (baseline)"][0]
    print(f"\n| job | seconds (best of {args.repeat}) | images/s | × local's speed | peak RSS of its largest process |")
    print("|---|---|---|---|---|")
    for name, (seconds, rss) in results.items():
        print(f"| {name} | {seconds:.2f} | {args.images / seconds:,.0f} | {local / seconds:.2f}× | {rss / 1024:.0f} MiB |")
    print("(every output byte-identical to the local engine's)")
    for n, name in ((1, "dask LocalCluster, 1 worker process"), (2, "dask LocalCluster, 2 worker processes")):
        work = results[name][0] - startup[n]
        print(f"LocalCluster of {n} alone (start, connect, close): {startup[n]:.2f} s; the job without it: "
              f"{work:.2f} s, {args.images / work:,.0f} images/s, {local / work:.2f}x local's speed")  # fmt: skip
    ratios.add("dask1_speed", local / results["dask LocalCluster, 1 worker process"][0], "higher",
               "--engine dask, a LocalCluster of 1 worker: speed / --engine local --workers 2's")  # fmt: skip
    ratios.add("dask2_speed", local / results["dask LocalCluster, 2 worker processes"][0], "higher",
               "--engine dask, a LocalCluster of 2 workers: speed / --engine local --workers 2's")  # fmt: skip
    ratios.add("peak_rss", max(rss for _, rss in results.values()) / 1024, "lower", "peak RSS of the largest process of any job", unit="MiB")
    ratios.report()


if __name__ == "__main__":
    main()
