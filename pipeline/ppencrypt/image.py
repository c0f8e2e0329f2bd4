"""``ppencrypt image``: encrypt query images exactly as a dataset was, for inference.

The dataset's manifest fixes method, parameters, size rule and channels — and since the query
goes to the server, the manifest must first be authenticated by the key (keys/mac.py): a
server that rewrote it to say ``plain`` or a weaker scope would otherwise get the query in the
clear or under a reused mask. A version 1 manifest carries no MAC and is refused unless the
user trusts it explicitly (``--trust-manifest``).

Under a dataset-scope key a query gets the dataset's mask. Under an image-scope key each query
gets its own mask, from a derivation label of its own (``|query`` instead of ``|split=…``, so
no dataset image can share it) and a nonce that is a keyed hash of its pixels (docs/cipher.md):
two different queries never share a mask, and the same query always encrypts the same way.
Outputs are named by position (000000.png, ...), never after the source file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_writer
from .errors import KeyFileError, OutputError, SourceError
from .imageio import load_image
from .keys import MasterKey, open_keyed
from .pictures import to_pil


def shared_by(m) -> str | None:
    """Why a query encrypted like ``m``'s dataset would share its mask with other images, if it would."""
    if m.cipher.key_id is None:
        return None
    if m.cipher.key_scope == "dataset":
        return ("its key scope is dataset: every query would share the one mask of all its images, which one known "
                "plain image of the dataset reveals")  # fmt: skip
    if m.cipher.family == "block":
        return f"method {m.cipher.method} is block-wise: the known-plaintext and jigsaw attacks recover its queries (docs/privacy.md)"
    return None


def describe(m) -> str:
    """What a query will get, said before it goes anywhere."""
    if m.cipher.key_id is None:
        return f"method {m.cipher.method}: queries are written unencrypted"
    scope = "a fresh mask per query" if m.cipher.key_scope == "image" else "the dataset's one shared mask"
    ident = f", dataset {m.dataset_id}" if m.dataset_id else ""
    return f"method {m.cipher.method}, {m.cipher.key_scope} scope ({scope}){ident}"


@dataclass
class Query:
    source: str
    output: Path


def encrypt_queries(
    images: list[str], like: str | os.PathLike, out_dir: str | os.PathLike, key: MasterKey | None,
    overwrite: bool = False, trust_manifest: bool = False, shared_mask: bool = False, dataset_id: str | None = None,
) -> tuple[list[Query], list[str], str]:  # fmt: skip
    """The queries written, warnings, and what the queries got (method, scope, dataset id)."""
    # With a key, a manifest that says "plain" is refused (keys/mac.py); without one, a plain
    # dataset's queries are written as they are, the baseline's inputs.
    keyed = open_keyed(like, key, accept_v1=trust_manifest, dataset_id=dataset_id)
    m, cipher = keyed.manifest, keyed.cipher
    shared = shared_by(m)
    if shared and not shared_mask:
        raise KeyFileError(f"{like}: {shared}; pass --shared-mask to encrypt queries so anyway")
    plain = []
    for path in images:  # decode everything first: a bad file stops us before any write
        arr = load_image(path, path, m.channels, m.size)
        if arr.shape != m.shape:
            raise SourceError(
                f"{path}: {arr.shape[1]}x{arr.shape[0]}, but {like} holds {m.width}x{m.height} images "
                "and was made without --size; resize the query or re-encrypt the dataset with --size"
            )
        plain.append(arr)
    out_dir = Path(out_dir)
    targets = [out_dir / f"{i:06d}.png" for i in range(len(images))]
    clash = next((t for t in targets if t.exists() or t.is_symlink()), None)
    if clash is not None and not overwrite:
        raise OutputError(f"{clash}: already exists (pass --overwrite to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    batch = np.stack(plain)
    if keyed.use.scope == "image":
        ring = keyed.ring(query=True).bind(m.shape, cipher.params)
        encrypted = cipher.encrypt(batch, ring, [ring.content_nonce(a.tobytes()) for a in plain])
    else:
        encrypted = cipher.encrypt(batch, keyed.ring(), None)
    done = []
    for src, target, image in zip(images, targets, encrypted):
        with atomic_writer(target) as f:
            to_pil(image).save(f, format="PNG")
        done.append(Query(src, target))
    return done, keyed.warnings, describe(m)
