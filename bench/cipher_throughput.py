"""Cipher throughput next to numpy copying the same bytes, in the same run.

    python bench/cipher_throughput.py [--n 50000] [--photos 256] [--quick] [--json PATH]

Baselines: ``x.copy()`` (allocates, like ``encrypt`` does) and ``np.copyto`` into a
preallocated array (pure memory bandwidth). The "fancy indexing" row is the obvious
implementation of the colour shuffle (``x[:, src] ^ mask``) for comparison. Image-scope keys
are timed under the key derivation datasets are written with (v3: a batch of keys per ChaCha20
call) and the one before it (v2: streams per image and purpose).

Second table: 224x224 photos (the vendored ImageNet images, resized), ms per image, against the
dataset-scope key in the same run — the cost a key per image adds to ``ppencrypt dataset``.
"""

from __future__ import annotations

import argparse

import numpy as np

from PIL import Image

from common import ROOT, best_of, machine, real_cifar
from ratios import Ratios, bench_args
from ppencrypt.ciphers import make_cipher
from ppencrypt.keys import KDF_V2, KDF_V3, KeyRing

MASTER = bytes(range(32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="images (32x32x3)")
    ap.add_argument("--photos", type=int, default=256, help="224x224x3 images")
    args = bench_args(ap, quick={"n": 30_000, "photos": 64})
    ratios = Ratios(__file__, args)
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
    t = pe._transform(ring("pe", "dataset", KDF_V3), x.shape[1:], None, False)
    flat = x.reshape(len(x), -1)
    rows.append(("pe dataset, fancy indexing x[:, src] ^ m", best_of(lambda: flat[:, t.src] ^ t.xor, 2)))
    for method in ("pe", "np"):
        c = make_cipher(method)
        for scope, kdf in (("dataset", KDF_V3), ("image", KDF_V3), ("image", KDF_V2)):
            r = ring(method, scope, kdf)
            n = len(x) if kdf == KDF_V3 else min(len(x), 10_000)  # v2 image scope: per-image key setup dominates
            part, part_idx = x[:n], idx[:n]
            secs = best_of(lambda: c.encrypt(part, r, part_idx), 3) * len(x) / n
            rows.append((f"{method} {scope}-scope encrypt ({kdf[-2:]})", secs))
            if kdf == KDF_V3:
                keys = "image keys" if scope == "image" else "dataset key"
                ratios.add(f"{method}_{keys.replace(' ', '_')}_speed", copy / secs, "higher", f"{method} encrypt, {keys}: speed / numpy x.copy()'s",
                           goal=0.2 if (method, scope) == ("pe", "dataset") else None)  # fmt: skip
        rows.append((f"{method} image-scope decrypt (v3)", best_of(lambda: c.decrypt(x, ring(method, "image", KDF_V3), idx), 3)))
        rows.append((f"{method} dataset-scope decrypt", best_of(lambda: c.decrypt(x, ring(method, "dataset", KDF_V3), idx), 3)))

    print(f"\n{'operation':44s} {'seconds':>8s} {'GB/s':>7s} {'vs copy()':>10s} {'vs copyto':>10s}")
    for name, secs in rows:
        print(f"{name:44s} {secs:8.3f} {gb / secs:7.2f} {copy / secs:9.2f}x {copyto / secs:9.2f}x")
    print("\n(ratios are speed relative to the baseline: 0.25x = a quarter of numpy's copy speed;"
          " v2 image scope timed on 10,000 images and scaled)")
    image, dataset = photos(args.photos)
    ratios.add("photo_image_keys_time", image / dataset, "lower", "pe on 224 px photos: image keys' time / a dataset key's")
    ratios.report()


def ring(method: str, scope: str, kdf: str) -> KeyRing:
    image = scope == "image"
    return KeyRing(MASTER, method, scope, "train" if image else None, bytes(16) if image else None, kdf=kdf)


def photos(n: int) -> tuple[float, float]:
    """Prints the table; returns the seconds of image keys (v3) and of a dataset key."""
    files = sorted((ROOT / "tests" / "data" / "imagenet").glob("*.jpg"))
    base = np.stack([np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)) for f in files])
    x = np.ascontiguousarray(np.resize(base, (n, 224, 224, 3)))
    idx = np.arange(n)
    pe = make_cipher("pe")
    dataset = best_of(lambda: pe.encrypt(x, ring("pe", "dataset", KDF_V3), None), 3)
    print(f"\n{n} photos, 224x224x3: pe, ms per image")
    print(f"{'key':34s} {'ms/image':>9s} {'+ms over a dataset key':>23s}")
    seconds = []
    for name, r, d in (("dataset scope", ring("pe", "dataset", KDF_V3), None),
                       ("image scope (v3, written now)", ring("pe", "image", KDF_V3), idx),
                       ("image scope (v2, before)", ring("pe", "image", KDF_V2), idx)):  # fmt: skip
        secs = best_of(lambda: pe.encrypt(x, r, d), 3)
        print(f"{name:34s} {secs / n * 1e3:9.3f} {(secs - dataset) / n * 1e3:23.3f}")
        seconds.append(secs)
    return seconds[1], seconds[0]


if __name__ == "__main__":
    main()
