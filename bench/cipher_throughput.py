"""Cipher throughput next to numpy copying the same bytes, in the same run.

    python bench/cipher_throughput.py [--n 50000]

Baselines: ``x.copy()`` (allocates, like ``encrypt`` does) and ``np.copyto`` into a
preallocated array (pure memory bandwidth). The "fancy indexing" row is the obvious
implementation of the colour shuffle (``x[:, src] ^ mask``) for comparison.
"""

from __future__ import annotations

import argparse

import numpy as np

from common import best_of, machine, real_cifar
from ppencrypt.ciphers import make_cipher
from ppencrypt.keys import KeyRing

MASTER = bytes(range(32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="images (32x32x3)")
    args = ap.parse_args()
    x = real_cifar(args.n)
    idx = np.arange(len(x))
    out = np.empty_like(x)
    gb = x.nbytes / 1e9
    print(f"machine: {machine()}")
    print(f"data: {args.n} real CIFAR-10 images, 32x32x3 uint8, {gb * 1e3:.0f} MB")

    copy = best_of(lambda: x.copy())
    copyto = best_of(lambda: np.copyto(out, x))
    rows = [("numpy x.copy()", copy), ("numpy np.copyto (preallocated)", copyto)]

    pe = make_cipher("pe")
    ring = KeyRing(MASTER, "pe", "dataset")
    t = pe._transform(ring, x.shape[1:], None, False)
    flat = x.reshape(len(x), -1)
    rows.append(("pe dataset, fancy indexing x[:, src] ^ m", best_of(lambda: flat[:, t.src] ^ t.xor, 2)))
    for method in ("pe", "np"):
        c = make_cipher(method)
        for scope in ("dataset", "image"):
            r = KeyRing(MASTER, method, scope, "train" if scope == "image" else None, bytes(16) if scope == "image" else None)
            n = len(x) if scope == "dataset" else min(len(x), 10_000)  # image scope: per-image key setup dominates
            part, part_idx = x[:n], idx[:n]
            secs = best_of(lambda: c.encrypt(part, r, part_idx), 3) * len(x) / n
            rows.append((f"{method} {scope}-scope encrypt", secs))
        r = KeyRing(MASTER, method, "dataset")
        rows.append((f"{method} dataset-scope decrypt", best_of(lambda: c.decrypt(x, r, idx), 3)))

    print(f"\n{'operation':44s} {'seconds':>8s} {'GB/s':>7s} {'vs copy()':>10s} {'vs copyto':>10s}")
    for name, secs in rows:
        print(f"{name:44s} {secs:8.3f} {gb / secs:7.2f} {copy / secs:9.2f}x {copyto / secs:9.2f}x")
    print("\n(ratios are speed relative to the baseline: 0.25x = a quarter of numpy's copy speed;"
          " image scope timed on 10,000 images and scaled)")


if __name__ == "__main__":
    main()
