"""The privacy table of docs/privacy.md: ``ppencrypt audit`` for every method and key scope, on
Fashion-MNIST (test split, 1,000 images) and on the 20 vendored real CIFAR-10 test images.

    python bench/privacy_table.py [--write docs/privacy.md] [--fmnist DIR] [-n 1000]

For each (method, scope) it runs, as a user would, with a fresh key:

    ppencrypt dataset SRC OUT --key KEY --method M --key-scope S --quiet
    ppencrypt audit OUT --plain SRC --split test -n N -o REPORT

and reads REPORT.json. For dataset-scope keys it also finds the smallest k (up to 8) for which
the known-plaintext attack reconstructs every scored image exactly, scoring on the same images
(those after the first 8) for every k. ``--write`` replaces the part of the file between the
``privacy-table`` markers; without it the tables go to stdout.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import FMNIST, ROOT, machine

sys.path.insert(0, str(ROOT / "tests"))
from conftest import load_vendored, write_cifar10  # noqa: E402

from pipeline.audit.attacks import KnownPairs, Target  # noqa: E402
from pipeline.audit.audit import AuditOptions, load_plain, read_samples  # noqa: E402
from pipeline.audit.known import KnownPlaintext  # noqa: E402
from pipeline.keys import generate_key_file  # noqa: E402

CONFIGS = [("pe", "dataset"), ("pe", "image"), ("np", "dataset"), ("np", "image"), ("plain", None),
           ("le", "dataset"), ("le", "image"), ("ele", "dataset"), ("ele", "image"), ("etc", "dataset"), ("etc", "image")]  # fmt: skip
ATTACKS = ["identity", "fr-basic", "fr-advanced", "fr-shared", "known-plaintext"]
MAX_K = 8
START, END = "<!-- privacy-table:start -->", "<!-- privacy-table:end -->"


def ppencrypt(*args) -> None:
    subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], check=True, capture_output=True, text=True)


def pairs_for_exact(out: Path, src: Path, n: int) -> str:
    """The smallest k <= MAX_K whose known-plaintext attack decrypts every scored image exactly."""
    m, batch = read_samples(str(out), AuditOptions(count=n, known=MAX_K))
    plain, _ = load_plain(str(src), m, "test", len(batch))
    target = Target(m.cipher.method, m.cipher.params, m.cipher.key_scope, m.shape)
    attack = KnownPlaintext()
    for k in range(1, MAX_K + 1):
        got = attack.run(batch.images[MAX_K:], target, KnownPairs(plain[:k], batch.images[:k])).images
        if np.array_equal(got, plain[MAX_K:]):
            return str(k)
    return f"> {MAX_K}"


def cell(row: dict) -> str:
    if "not_applicable" in row:
        return "n/a"
    text = f"{row['psnr']['mean']:.1f} / {row['ssim']['mean']:.2f} ({row['ssim']['max']:.2f})"
    return text + (f", {row['exact']}/{row['count']} exact" if row["exact"] else "")


def table(title: str, src: Path, n: int, work: Path, key: Path) -> str:
    lines = [f"### {title}", "", "| method | key scope | key space (bits) | " + " | ".join(ATTACKS) + " | exact with k = |",
             "|---|---|---|" + "---|" * len(ATTACKS) + "---|"]  # fmt: skip
    for method, scope in CONFIGS:
        out = work / f"{src.name}-{method}-{scope}"
        key_args = ("--key", key, "--key-scope", scope) if scope else ()
        ppencrypt("dataset", src, out, *key_args, "--method", method, "--quiet", "--overwrite")
        ppencrypt("audit", out, "--plain", src, "--split", "test", "-n", n, "-o", work / "report")
        doc = json.loads((work / "report.json").read_text())
        rows = {r["attack"]: r for r in doc["attacks"]}
        bits = doc["key_space"]["bits"]
        k = pairs_for_exact(out, src, n) if scope == "dataset" else "—"
        cells = [method, scope or "—", f"{bits:,.0f}", *(cell(rows[a]) for a in ATTACKS), k]
        lines.append("| " + " | ".join(cells) + " |")
        print(f"{title}: {method} {scope} done", file=sys.stderr)
    scored = doc["scored_images"]
    return "\n".join(lines) + f"\n\n{scored} images scored, 1 known pair.\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, help="Markdown file whose privacy-table section to replace.")
    ap.add_argument("--fmnist", type=Path, default=FMNIST)
    ap.add_argument("-n", type=int, default=1000, help="Fashion-MNIST images to score")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = work / "audit.key"
        generate_key_file(key)
        images, labels = load_vendored("cifar10")
        # test split: the 20 real images; train split: the same again (the CIFAR layout wants one)
        cifar = write_cifar10(work / "cifar10", np.concatenate([images, images]), np.concatenate([labels, labels]), n_test=len(images))
        tables = [table(f"Fashion-MNIST (test split, {args.n} images)", args.fmnist, args.n, work, key),
                  table("CIFAR-10 (the 20 vendored real test images)", cifar, len(images) - 1, work, key)]  # fmt: skip
    body = f"{START}\n\n<!-- generated by bench/privacy_table.py on {machine()} -->\n\n" + "\n".join(tables) + f"\n{END}"
    if args.write is None:
        print(body)
        return
    text = args.write.read_text()
    if START not in text or END not in text:
        sys.exit(f"{args.write}: no {START} ... {END} section to replace")
    args.write.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S))


if __name__ == "__main__":
    main()
