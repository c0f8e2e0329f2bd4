"""``ppencrypt dataset`` on photo JPEGs to 224 px, next to the 20-line script a user would write,
in the same run (issue 21's first two rows).

    python bench/photo_write.py [--images 2000] [--large 0.1] [--workers 2] [--repeat 3] [--quick] [--json PATH]

The photos: the 20 vendored ImageNet JPEGs (tests/data/imagenet, 512x512) cropped, shifted and
resized to 500x375 (a tenth of them, with ``--large``, to 3000x2000 like a phone photo), JPEG
quality 90, in an ImageFolder of 10 classes. Every row is a whole process, best of ``--repeat``:

* baseline — what a user writes without this project: ``multiprocessing.Pool(workers)``, Pillow
  open / convert / resize the shorter side to 224 (bicubic) / centre crop, written
  **unencrypted** with ``webdataset.ShardWriter`` (.npy + .cls);
* ``ppencrypt dataset --size 224 --workers N`` with image keys (the default) and with a
  dataset key.

Peak RSS of each process and the CPU time of the whole job (user + system, the workers
included) are read from ``resource.getrusage``. On a shared machine the CPU time moves far less
than the wall time does, so its ratios are printed beside the wall-time ones.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import ROOT, machine
from ratios import Ratios, bench_args

BASELINE = textwrap.dedent('''
    import sys, multiprocessing as mp
    from pathlib import Path
    import numpy as np, webdataset as wds
    from PIL import Image
    def load(item):
        path, label = item
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size; s = 224 / min(w, h)
            im = im.resize((max(224, round(w * s)), max(224, round(h * s))), Image.Resampling.BICUBIC)
            l, t = (im.width - 224) // 2, (im.height - 224) // 2
            return np.asarray(im.crop((l, t, l + 224, t + 224))), label
    if __name__ == "__main__":
        src, out, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
        classes = sorted(p.name for p in src.iterdir())
        items = [(str(f), i) for i, c in enumerate(classes) for f in sorted((src / c).iterdir())]
        out.mkdir()
        with mp.Pool(workers) as pool, wds.ShardWriter(str(out / "%06d.tar"), maxcount=10000, verbose=0) as sink:
            for i, (image, label) in enumerate(pool.imap(load, items, chunksize=16)):
                sink.write({"__key__": f"{i:08d}", "npy": image, "cls": label})
''')


def make_photos(root: Path, n: int, large: float) -> Path:
    """n JPEGs in 10 class folders from the vendored ImageNet images; a fraction ``large`` at
    3000x2000, the rest at 500x375."""
    files = sorted((ROOT / "tests" / "data" / "imagenet").glob("*.jpg"))
    bases = [Image.open(f).convert("RGB") for f in files]
    rng = np.random.default_rng(0)
    n_large = round(n * large)
    for i in range(n):
        im = bases[i % len(bases)]
        x, y = (int(v) for v in rng.integers(0, 96, 2))
        crop = im.crop((x, y, x + 416, y + 312))  # 4:3
        size = (3000, 2000) if i < n_large else (500, 375)
        crop = crop.resize(size, Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        crop.save(folder / f"{i:06d}.jpg", quality=90)
    return root


def run(argv: list[str]) -> tuple[float, int, float]:
    """Seconds, the peak RSS of the largest process of the job (KiB), and its CPU seconds."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(time.perf_counter() - t, u.ru_maxrss, u.ru_utime + u.ru_stime)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), float(out[2])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--large", type=float, default=0.0, help="fraction of 3000x2000 photos")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = bench_args(ap, quick={"images": 400, "repeat": 2})
    ratios = Ratios(__file__, args)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        src = make_photos(tmp / "photos", args.images, args.large)
        print(f"{args.images} photos ({args.large:.0%} at 3000x2000, the rest 500x375) made in {time.perf_counter() - t:.1f} s")
        (tmp / "baseline.py").write_text(BASELINE)
        key = tmp / "k.key"
        subprocess.run([sys.executable, "-m", "ppencrypt", "keygen", str(key)], check=True, capture_output=True)
        ppencrypt = [sys.executable, "-m", "ppencrypt", "dataset", str(src), None, "--key", str(key), "--size", "224",
                     "--workers", str(args.workers), "--quiet"]  # fmt: skip
        jobs = {
            "baseline: Pool + PIL + ShardWriter, plain": lambda out: [sys.executable, str(tmp / "baseline.py"), str(src), str(out), str(args.workers)],
            "ppencrypt dataset, image keys (default)": lambda out: [*ppencrypt[:5], str(out), *ppencrypt[6:]],
            "ppencrypt dataset, dataset key": lambda out: [*ppencrypt[:5], str(out), *ppencrypt[6:], "--key-scope", "dataset"],
        }
        results = {name: (float("inf"), 0, float("inf")) for name in jobs}
        for r in range(args.repeat):  # the jobs take turns, so a burst of load on the machine hits all of them
            for i, (name, argv) in enumerate(jobs.items()):
                out = tmp / f"out-{i}-{r}"
                seconds, peak, cpu = run(argv(out))
                best, rss, least = results[name]
                results[name] = (min(best, seconds), max(rss, peak), min(least, cpu))
                subprocess.run(["rm", "-rf", str(out)], check=True)
                os.sync()  # the job's writes flushed now, not while the next job runs: no job pays for the one before
        base, _, base_cpu = results["baseline: Pool + PIL + ShardWriter, plain"]
        image_keys, image_rss, image_cpu = results["ppencrypt dataset, image keys (default)"]
        dataset_key, dataset_rss, dataset_cpu = results["ppencrypt dataset, dataset key"]
        print(f"\n| job | seconds (best of {args.repeat}) | images/s | × baseline | × dataset key | CPU seconds (least) | "
              "CPU × baseline | CPU × dataset key | peak RSS of its largest process |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for name, (seconds, rss, cpu) in results.items():
            print(f"| {name} | {seconds:.2f} | {args.images / seconds:,.0f} | {seconds / base:.2f}× | "
                  f"{seconds / dataset_key:.3f}× | {cpu:.2f} | {cpu / base_cpu:.2f}× | {cpu / dataset_cpu:.3f}× | {rss / 1024:.0f} MiB |")  # fmt: skip
    ratios.add("image_keys_time", image_keys / base, "lower", "ppencrypt dataset --size 224, image keys: time / the 20-line Pool + PIL script's", goal=0.5)
    ratios.add("dataset_key_time", dataset_key / base, "lower", "the same with a dataset key: time / the script's")
    ratios.add("image_vs_dataset_key_time", image_keys / dataset_key, "lower", "image keys' time / a dataset key's, the same photos", goal=1.05)
    ratios.add("image_keys_cpu", image_cpu / base_cpu, "lower", "the same, CPU seconds of the whole job (workers included) / the script's")
    ratios.add("image_vs_dataset_key_cpu", image_cpu / dataset_cpu, "lower", "image keys' CPU seconds / a dataset key's, the same photos")
    ratios.add("peak_rss", max(image_rss, dataset_rss) / 1024, "lower", "peak RSS of ppencrypt dataset's largest process (no baseline)", goal=512, unit="MiB")
    ratios.report()


if __name__ == "__main__":
    main()
