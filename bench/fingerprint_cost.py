"""What ``--resume``'s source fingerprint costs (pipeline/ppencrypt/sources/fingerprint.py):
every input file's name, size and mtime hashed, no image read — against what opening the
same source costs anyway (an ImageFolder's listing and scan, which probes every image's
header), in the same run.

    python bench/fingerprint_cost.py [--files 20000] [--repeat 3] [--quick] [--json PATH]

The files are the vendored CIFAR-10 PNGs copied under ``--files`` names in 10 class folders
(real image files; their bytes repeat, which neither side looks at beyond a header).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, best_of, machine
from ratios import Ratios, bench_args

sys.path.insert(0, str(ROOT / "pipeline"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = bench_args(parser, {"files": 2000, "repeat": 2})
    from ppencrypt.sources import open_source
    from ppencrypt.sources.fingerprint import fingerprint

    pngs = sorted((ROOT / "tests" / "data" / "cifar10").glob("*.png"))
    if not pngs:
        raise SystemExit("tests/data/cifar10 holds no PNG")
    tmp = Path(tempfile.mkdtemp(prefix="bench-fingerprint-"))
    try:
        root = tmp / "folder"
        for i in range(args.files):
            folder = root / f"class{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pngs[i % len(pngs)], folder / f"{i:07d}.png")
        source = open_source(str(root))
        opened = best_of(lambda: open_source(str(root)), args.repeat)
        printed = best_of(lambda: fingerprint(source), args.repeat)
        print(f"{machine()}; {args.files} files")
        print(f"  open the ImageFolder (list + scan): {opened:.3f} s")
        print(f"  its fingerprint (stat + hash):      {printed:.3f} s ({printed / args.files * 1e6:.1f} us a file)")
        ratios = Ratios(__file__, args)
        ratios.add("fingerprint_time", printed / opened, "lower", "the source fingerprint / opening the same ImageFolder", goal=0.25)
        ratios.report()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    t = time.time()
    main()
    print(f"({time.time() - t:.0f} s)")
