"""``ppencrypt dataset --size 224`` from the streamed sources of issue 23 — webdataset shards
and Hugging Face parquet, local and in S3 (moto's server on 127.0.0.1) — against the same
photos as a local ImageFolder, in the same run.

    python bench/source_stream.py [--images 1000] [--workers 2] [--repeat 2] [--quick] [--json PATH]

The photos are bench/photo_write.py's (500x375 JPEGs made from the vendored ImageNet images),
their JPEG bytes unchanged in every layout: 10 class folders; 4 shards (jpg + cls); 4 parquet
files in row groups of 100 (image struct + ClassLabel). Every row is a
whole process, best of ``--repeat``, with the peak RSS of its largest process
(``RUSAGE_CHILDREN``: the driver or a worker). The last row reads the local shards copied ten
times over (``--images`` x 10): the peak RSS must not grow with the source.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine
from photo_write import make_photos, run
from ratios import Ratios, bench_args

SHARDS = 4  # of --images: enough tasks for 2 workers in every row

def write_wds(folder: Path, out: Path, per_shard: int) -> list[str]:
    import webdataset

    classes = sorted(p.name for p in folder.iterdir())
    rows = [(f, i) for i, c in enumerate(classes) for f in sorted((folder / c).iterdir())]
    out.mkdir(parents=True)
    for s in range(0, len(rows), per_shard):
        with webdataset.TarWriter(str(out / f"train-{s // per_shard:06d}.tar")) as w:
            for f, y in rows[s : s + per_shard]:
                w.write({"__key__": f.stem, "jpg": f.read_bytes(), "cls": str(y).encode()})
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return classes


def write_parquet(folder: Path, out: Path, per_file: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    classes = sorted(p.name for p in folder.iterdir())
    rows = [(f, i) for i, c in enumerate(classes) for f in sorted((folder / c).iterdir())]
    meta = {"info": {"features": {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": classes}}}}
    out.mkdir(parents=True)
    for s in range(0, len(rows), per_file):
        part = rows[s : s + per_file]
        table = pa.table({"image": [{"bytes": f.read_bytes(), "path": None} for f, _ in part], "label": [y for _, y in part]})
        pq.write_table(table.replace_schema_metadata({"huggingface": json.dumps(meta)}), out / f"train-{s // per_file:05d}.parquet",
                       row_group_size=100)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = bench_args(ap, quick={"images": 250, "repeat": 1})
    ratios = Ratios(__file__, args)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    sys.path.insert(0, str(ROOT / "tests"))
    from servers import S3Server, make_bucket

    server = S3Server()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.update(server.env(tmp))  # s3fs in this process and in every job
        t = time.perf_counter()
        photos = make_photos(tmp / "photos", args.images, 0.0)
        per_shard = -(-args.images // SHARDS)
        write_wds(photos, tmp / "wds", per_shard)
        write_parquet(photos, tmp / "pq", per_shard)
        big = tmp / "wds10"
        big.mkdir()
        shards = sorted((tmp / "wds").glob("*.tar"))
        for k in range(10):
            for i, f in enumerate(shards):
                os.link(f, big / f"train-{k * len(shards) + i:06d}.tar")
        shutil.copy(tmp / "wds" / "classes.txt", big / "classes.txt")
        import fsspec

        make_bucket("bench")
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        for f in shards:
            fs.pipe_file(f"bench/wds/{f.name}", f.read_bytes())
        fs.pipe_file("bench/wds/classes.txt", (tmp / "wds" / "classes.txt").read_bytes())
        print(f"{args.images} photos (500x375) as a folder, {len(shards)} shards and parquet files made in {time.perf_counter() - t:.1f} s")
        key = tmp / "k.key"
        run([sys.executable, "-m", "ppencrypt", "keygen", str(key)])
        common = ["--key", str(key), "--size", "224", "--workers", str(args.workers), "--quiet"]
        jobs = {
            "ImageFolder, local (baseline)": (str(photos), args.images),
            "webdataset shards, local": (str(tmp / "wds"), args.images),
            "parquet (Hugging Face), local": (str(tmp / "pq"), args.images),
            "webdataset shards, S3 (moto on 127.0.0.1), brace pattern": (f"s3://bench/wds/train-{{000000..{len(shards) - 1:06d}}}.tar", args.images),
            "webdataset shards, local, x10 the images": (str(big), 10 * args.images),
        }
        results = {}
        for name, (src, n) in jobs.items():
            best, rss = float("inf"), 0
            for r in range(args.repeat if "x10" not in name else 1):
                out = tmp / f"out-{len(results)}-{r}"
                seconds, peak, _ = run([sys.executable, "-m", "ppencrypt", "dataset", src, str(out), *common,
                                     *(("--classes", str(tmp / "wds" / "classes.txt")) if src.startswith("s3://") else ())])  # fmt: skip
                best, rss = min(best, seconds), max(rss, peak)
                shutil.rmtree(out)
            results[name] = (best, rss, n)
    server.stop()
    base, base_rss, _ = results["ImageFolder, local (baseline)"]
    print(f"\n| source | images | seconds (best of {args.repeat}) | images/s | × baseline time | peak RSS of its largest process |")
    print("|---|---|---|---|---|---|")
    for name, (seconds, rss, n) in results.items():
        print(f"| {name} | {n} | {seconds:.2f} | {n / seconds:,.0f} | {seconds / base * args.images / n:.2f}× | {rss / 1024:.0f} MiB |")
    wds_t, wds_rss, _ = results["webdataset shards, local"]
    pq_t = results["parquet (Hugging Face), local"][0]
    s3_t = results["webdataset shards, S3 (moto on 127.0.0.1), brace pattern"][0]
    big_rss = results["webdataset shards, local, x10 the images"][1]
    ratios.add("wds_local_time", wds_t / base, "lower", "webdataset shards, local: time / the same photos as an ImageFolder's", goal=1.1)
    ratios.add("parquet_local_time", pq_t / base, "lower", "parquet, local: time / the ImageFolder's", goal=1.1)
    ratios.add("wds_s3_time", s3_t / base, "lower", "webdataset shards in S3 (moto): time / the local ImageFolder's")
    ratios.add("wds_rss_growth", big_rss / wds_rss, "lower", "peak RSS reading x10 the shards / reading x1 (flat: 1)", goal=1.2)
    ratios.report()


if __name__ == "__main__":
    main()
