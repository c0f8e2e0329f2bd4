"""``ppencrypt image``: encrypt query images exactly as a dataset was, for inference.

The dataset's manifest fixes method, parameters, size rule and channels; its key id must
match. Under a dataset-scope key a query gets the dataset's mask. Under an image-scope key
each query gets its own mask, chosen by a keyed hash of its pixels (docs/cipher.md): two
different queries never share a mask, and the same query always encrypts the same way.
Outputs are named by position (000000.png, ...), never after the source file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decrypt import cipher_for, to_pil
from .derive import KeyRing
from .errors import OutputError, SourceError
from .formats import read_manifest
from .imageio import load_image
from .keys import MasterKey

QUERY_SPLIT = "query"


@dataclass
class Query:
    source: str
    output: Path


def encrypt_queries(
    images: list[str], like: str | os.PathLike, out_dir: str | os.PathLike, key: MasterKey | None,
    key_name: str = "the key", overwrite: bool = False,
) -> list[Query]:  # fmt: skip
    m = read_manifest(like)
    cipher = cipher_for(m, key, key_name)
    plain = []
    for path in images:  # decode everything first: a bad file stops us before any write
        arr = load_image(path, path, m.channels, m.resize)
        if arr.shape != m.shape:
            raise SourceError(
                f"{path}: {arr.shape[1]}x{arr.shape[0]}, but {like} holds {m.width}x{m.height} images "
                "and was made without --size; resize the query or re-encrypt the dataset with --size"
            )
        plain.append(arr)
    out_dir = Path(out_dir)
    targets = [out_dir / f"{i:06d}.png" for i in range(len(images))]
    clash = next((t for t in targets if t.exists()), None)
    if clash is not None and not overwrite:
        raise OutputError(f"{clash}: already exists (pass --overwrite to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    batch = np.stack(plain)
    if cipher.needs_key and m.cipher.key_scope == "image":
        ring = KeyRing(key.secret, cipher.name, "image", QUERY_SPLIT)
        nonces = [ring.content_nonce(a.tobytes()) for a in plain]
        encrypted = cipher.encrypt(batch, ring, nonces)
    elif cipher.needs_key:
        encrypted = cipher.encrypt(batch, KeyRing(key.secret, cipher.name, "dataset"), None)
    else:
        encrypted = cipher.encrypt(batch, None, None)
    done = []
    for src, target, image in zip(images, targets, encrypted):
        tmp = target.with_name(f".{target.name}.tmp")
        to_pil(image).save(tmp, format="PNG")
        os.replace(tmp, target)
        done.append(Query(src, target))
    return done
