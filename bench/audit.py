"""``ppencrypt audit`` on 1,000 32x32 RGB images: the issue's bound is one minute (without
``--learned``).

    python bench/audit.py [--n 1000] [--method pe] [--scope dataset] [--learned] [--quick] [--json PATH]

Data: the 20 vendored real CIFAR-10 test images, tiled into 1,000 + k images by horizontal
rolls (tests/conftest.py ``tile_real``; a 32 px roll is the image again, so 640 of them differ), written as a cifar-10-batches-py folder and
encrypted with ``ppencrypt dataset``. Timed: the whole ``ppencrypt audit`` command as a
subprocess (interpreter start-up, reading both datasets, every attack, PSNR and SSIM, the
table, report.json and report.png), then the per-attack breakdown from its report.json.

``--learned`` adds the learned attacks with their default budgets; the attacker's public images
are 400 made from the 20 vendored CIFAR-100 images (common.public_cifar), whose classes are not
CIFAR-10's, so there is no recognition score (bench/privacy_table.py has its time on
Fashion-MNIST).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, public_cifar
from ratios import Ratios, bench_args

sys.path.insert(0, str(ROOT / "tests"))
from conftest import load_vendored, tile_real, write_cifar10  # noqa: E402

from ppencrypt.keys import generate_key_file  # noqa: E402


def ppencrypt(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ppencrypt", *map(str, args)], capture_output=True, text=True, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="images scored")
    ap.add_argument("--method", default="pe")
    ap.add_argument("--scope", default="dataset")
    ap.add_argument("--learned", action="store_true", help="also the learned attacks and recognition (default budgets)")
    args = bench_args(ap, quick={"n": 300})
    ratios = Ratios(__file__, args)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images, labels = tile_real(*load_vendored("cifar10"), args.n + 1 + 100)
        src = write_cifar10(work / "cifar-10-batches-py", images, labels, n_test=args.n + 1)
        key = work / "bench.key"
        generate_key_file(key)
        out = work / "enc"
        ppencrypt("dataset", src, out, "--key", key, "--method", args.method, "--key-scope", args.scope, "--quiet")
        start = time.perf_counter()
        learned = ["--learned", "--public", public_cifar(work / "cifar-100-python")] if args.learned else []
        run = ppencrypt("audit", out, "--plain", src, "-n", args.n, "-o", work / "report", *learned)
        wall = time.perf_counter() - start
        report = json.loads((work / "report.json").read_text())
    print(f"machine: {machine()}")
    print(f"ppencrypt audit{' --learned' * args.learned}, {args.method} ({args.scope}-scope key), {report['scored_images']} images "
          f"of 32x32x3 + {report['known_pairs']} known pair: {wall:.1f} s wall" + ("" if args.learned else " (bound: 60 s)"))  # fmt: skip
    if report["recognition"]:
        print(f"  recognition classifier: trained in {report['recognition']['classifier']['seconds']:.1f} s")
    print(f"  in-process audit (reading, attacks, scoring): {report['seconds']:.1f} s")
    for row in report["attacks"]:
        if "seconds" in row:
            print(f"  {row['attack']:<16} attack {row['seconds']:6.2f} s   PSNR+SSIM {row['scoring_seconds']:5.2f} s")
        else:
            print(f"  {row['attack']:<16} n/a")
    print()
    print(run.stdout, end="")
    ratios.add("wall_seconds" + "_learned" * args.learned, wall, "lower", f"ppencrypt audit{' --learned' * args.learned}, {args.method} "
               f"{args.scope} key, {args.n} images, wall seconds (no baseline to divide by: machine-dependent)",
               goal=None if args.learned else 60, unit="s")  # fmt: skip
    ratios.report()


if __name__ == "__main__":
    main()
