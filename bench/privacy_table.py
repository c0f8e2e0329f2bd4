"""The privacy tables of docs/privacy.md: ``ppencrypt audit`` for every method and key scope, on
Fashion-MNIST (test split, 1,000 images) and on the 20 vendored real CIFAR-10 test images.

    python bench/privacy_table.py [--write docs/privacy.md] [--fmnist DIR] [-n 1000] [--learned]

For each (method, scope) it runs, as a user would, with a fresh key:

    ppencrypt dataset SRC OUT --key KEY --method M --key-scope S --quiet
    ppencrypt audit OUT --plain SRC --split test -n N -o REPORT [--learned [--public PUBLIC]]

and reads REPORT.json, timing the audit. For dataset-scope keys it also finds the smallest k (up
to 8) for which the known-plaintext attack reconstructs every scored image exactly, scoring on
the same images (those after the first 8) for every k. ``--write`` replaces the part of the file
between the ``privacy-table`` markers; without it the tables go to stdout.

``--learned`` adds the learned attacks (default budgets) and, where the attacker's public images
carry the dataset's classes, a table of recognition accuracies. The learned attacker's public
images: Fashion-MNIST's training split (the default, first 5,000); for CIFAR-10, the 20
vendored CIFAR-100 images, rolled and mirrored into 400 (the only other real colour images
here; their classes differ, so no recognition score on CIFAR-10).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import FMNIST, ROOT, machine, public_cifar

sys.path.insert(0, str(ROOT / "tests"))
from conftest import load_vendored, write_cifar10  # noqa: E402

from ppencrypt.audit.attacks import KnownPairs, Target  # noqa: E402
from ppencrypt.audit.audit import AuditOptions, load_plain, read_samples  # noqa: E402
from ppencrypt.audit.known import KnownPlaintext  # noqa: E402
from ppencrypt.keys import generate_key_file  # noqa: E402

CONFIGS = [("pe", "dataset"), ("pe", "image"), ("np", "dataset"), ("np", "image"), ("plain", None),
           ("le", "dataset"), ("le", "image"), ("ele", "dataset"), ("ele", "image"), ("etc", "dataset"), ("etc", "image"), ("bsm", "dataset"), ("bsm", "image")]  # fmt: skip
ATTACKS = ["identity", "fr-basic", "fr-advanced", "fr-shared", "jigsaw", "known-plaintext"]
LEARNED = ["learned", "learned-shared", "learned-features"]  # with --learned
MAX_K = 8
START, END = "<!-- privacy-table:start -->", "<!-- privacy-table:end -->"


def ppencrypt(*args) -> None:
    subprocess.run([sys.executable, "-m", "ppencrypt", *map(str, args)], check=True, capture_output=True, text=True)


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
    stopped = " ‡" if row["stats"].get("stopped_by_clock") else ""  # its training hit --train-seconds
    return text + (f", {row['exact']}/{row['count']} exact" if row["exact"] else "") + stopped


def recognition_cell(row: dict) -> str:
    return "n/a" if "not_applicable" in row else f"{row['recognition_accuracy']:.0%}"


def header(first: list[str], columns: list[str]) -> list[str]:
    return ["| " + " | ".join(first + columns) + " |", "|" + "---|" * (len(first) + len(columns))]


def audit(src: Path, out: Path, n: int, work: Path, learned: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    ppencrypt("audit", out, "--plain", src, "--split", "test", "-n", n, "-o", work / "report", *learned)
    return json.loads((work / "report.json").read_text()), time.perf_counter() - start


def table(title: str, src: Path, n: int, work: Path, key: Path, learned: list[str] | None) -> str:
    attacks = ATTACKS + (LEARNED if learned is not None else [])
    lines = [f"### {title}", "", *header(["method", "key scope", "key space (bits)"], attacks + ["exact with k =", "audit time"])]
    recognition = header(["method", "key scope", "plain", "chance"], attacks)
    for method, scope in CONFIGS:
        out = work / f"{src.name}-{method}-{scope}"
        key_args = ("--key", key, "--key-scope", scope) if scope else ()
        ppencrypt("dataset", src, out, *key_args, "--method", method, "--quiet", "--overwrite")
        doc, seconds = audit(src, out, n, work, ["--learned", *learned] if learned is not None else [])
        rows = {r["attack"]: r for r in doc["attacks"]}
        bits = doc["key_space"]["bits"]
        k = pairs_for_exact(out, src, n) if scope == "dataset" else "—"
        cells = [method, scope or "—", f"{bits:,.0f}", *(cell(rows[a]) for a in attacks), k, f"{seconds:.0f} s"]
        lines.append("| " + " | ".join(cells) + " |")
        if doc.get("recognition"):
            rec = doc["recognition"]
            recognition.append("| " + " | ".join([method, scope or "—", f"{rec['plain_accuracy']:.0%}", f"{rec['chance']:.0%}",
                                                  *(recognition_cell(rows[a]) for a in attacks)]) + " |")  # fmt: skip
        print(f"{title}: {method} {scope} done ({seconds:.0f} s)", file=sys.stderr)
    scored = doc["scored_images"]
    text = "\n".join(lines) + f"\n\n{scored} images scored, 1 known pair; audit time: the whole `ppencrypt audit` command.\n"
    if len(recognition) > 2:
        text += ("\nRecognition accuracy (a classifier trained on the learned attacker's public images; plain: on the plain "
                 "scored images; chance: the largest class share among them):\n\n" + "\n".join(recognition) + "\n")  # fmt: skip
    if doc.get("learned"):
        pub = doc["learned"]["public"]
        text += (f"\nLearned attacker: {pub['images']:,} public images ({', '.join(pub['splits'])} of "
                 f"{'SRC' if pub['source'] == str(src) else 'another folder'}), at most {doc['learned']['train_steps']} steps "
                 f"or {doc['learned']['train_seconds']:g} s per model (‡: stopped by the clock), seed {doc['learned']['seed']}.\n")  # fmt: skip
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, help="Markdown file whose privacy-table section to replace.")
    ap.add_argument("--fmnist", type=Path, default=FMNIST)
    ap.add_argument("-n", type=int, default=1000, help="Fashion-MNIST images to score")
    ap.add_argument("--learned", action="store_true", help="also the learned attacks and recognition")
    ap.add_argument("--train-steps", type=int, help="passed to ppencrypt audit (default: its own)")
    args = ap.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = work / "audit.key"
        generate_key_file(key)
        images, labels = load_vendored("cifar10")
        # test split: the 20 real images; train split: the same again (the CIFAR layout wants one)
        cifar = write_cifar10(work / "cifar10", np.concatenate([images, images]), np.concatenate([labels, labels]), n_test=len(images))
        steps = ["--train-steps", args.train_steps] if args.train_steps else []
        learned = {"fmnist": steps, "cifar": ["--public", public_cifar(work / "cifar100"), *steps]} if args.learned else {"fmnist": None, "cifar": None}
        tables = [table(f"Fashion-MNIST (test split, {args.n} images)", args.fmnist, args.n, work, key, learned["fmnist"]),
                  table("CIFAR-10 (the 20 vendored real test images)", cifar, len(images) - 1, work, key, learned["cifar"])]  # fmt: skip
    command = "python bench/privacy_table.py" + " --learned" * args.learned + (f" -n {args.n}" if args.n != 1000 else "") + (
        f" --train-steps {args.train_steps}" if args.train_steps else "")
    body = (f"{START}\n\n<!-- generated by bench/privacy_table.py -->\n\n"
            f"`{command}`: {(time.perf_counter() - start) / 60:.0f} minutes on {machine()}.\n\n" + "\n".join(tables) + f"\n{END}")  # fmt: skip
    if args.write is None:
        print(body)
        return
    text = args.write.read_text()
    if START not in text or END not in text:
        sys.exit(f"{args.write}: no {START} ... {END} section to replace")
    args.write.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S))


if __name__ == "__main__":
    main()
