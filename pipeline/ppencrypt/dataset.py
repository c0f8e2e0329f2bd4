"""The batch job: a source dataset in, an encrypted, sharded dataset with its manifest out.

    decode (worker processes) -> [client augmentation, --copies] -> encrypt (batched,
    vectorised) -> write shards (in order)

Samples are numbered in source order after dropping skipped files, so the index — and with
it the image-scope key and the shard layout — is the same for any worker count. With
``--copies K`` the train split is read K times, one augmented copy per pass (augment.py):
copy k of image j is sample k x N + j.

OUT is a folder, built beside its final place and renamed into it, or a URL (s3://, gs://):
built in a local temporary folder, then uploaded, every shard first and manifest.json last
(formats/remote.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import augment as client
from .atomic import is_within
from .ciphers import ImageCipher, make_cipher
from .errors import CipherError, KeyFileError, OutputError, SourceError
from .formats import STORAGES, Manifest, SplitInfo, open_location, other_files, split_writer
from .formats.manifest import CipherInfo, ClientAugment
from .keys import KeyUse, MasterKey, sign
from .parallel import WorkerPool, default_workers
from .progress import ProgressFactory, no_progress
from .sources import open_source, run_task


@dataclass
class EncryptOptions:
    method: str = "pe"
    params: dict = field(default_factory=dict)
    scope: str = "image"  # image (a mask per image: private by default) | dataset ([P]'s shared mask)
    storage: str = "wds"  # wds | zarr
    size: int | None = None  # --size: resize + centre-crop to size x size
    shard_size: int = 10_000  # samples per shard
    workers: int = field(default_factory=default_workers)
    skip_bad: bool = False
    salt: bytes | None = None  # image scope: reuse a dataset's salt to reproduce it byte for byte (never for new data)
    copies: int | None = None  # --copies: augmented copies of the train split (None: as it is)
    pad: int = 4  # the copies' largest shift, pixels
    augment_seed: int = 0  # seeds the copies' draws

    def client_augment(self) -> ClientAugment | None:
        if self.copies is None:
            return None
        return ClientAugment(self.copies, self.pad, self.augment_seed, list(client.OPS), client.FILL, client.SPLIT)


@dataclass
class EncryptResult:
    manifest: Manifest
    skipped: list[tuple[str, str]]  # (file, reason): printed to stderr, never stored
    warnings: list[str]


def _check_paths(src: Path, out: Path) -> None:
    if is_within(out, src):
        raise OutputError(f"{out}: the output must not be inside the source {src}")
    if is_within(src, out):
        raise OutputError(f"{out}: the output must not contain the source {src}")


def prepare(method: str, params: dict, key: MasterKey | None, scope: str, salt: bytes | None) -> tuple[ImageCipher, KeyUse]:
    cipher = make_cipher(method, params)
    if cipher.needs_key and key is None:
        raise KeyFileError(f"method {method!r} encrypts with a key: pass --key")
    if salt is not None and (scope != "image" or not cipher.needs_key):
        raise CipherError("--salt belongs to image-scope keys: a dataset-scope key uses no salt")
    return cipher, KeyUse.new(scope if cipher.needs_key else None, salt)


def encrypt_dataset(
    src: str,
    out: str,
    key: MasterKey | None,
    opts: EncryptOptions,
    overwrite: bool = False,
    progress: ProgressFactory = no_progress,
) -> EncryptResult:
    if opts.storage not in STORAGES:
        raise CipherError(f"unknown format {opts.storage!r}")
    if opts.shard_size < 1:
        raise CipherError("--shard-size must be at least 1")
    cipher, use = prepare(opts.method, opts.params, key, opts.scope, opts.salt)
    target = open_location(out)  # a folder, or a URL: built locally, then uploaded, manifest last
    if target.local:
        _check_paths(Path(src), target.root)
    augment = opts.client_augment()
    with WorkerPool(opts.workers) as pool, target.output_dir(overwrite) as tmp:
        source = open_source(src, opts.size, pool, opts.skip_bad, progress)
        cipher.check(source.shape, use.scope)
        if augment is not None:
            problem = client.check(augment.copies, augment.pad, source.shape)
            if problem or augment.split not in source.splits:
                raise CipherError(problem or f"{src}: --copies augments the {augment.split!r} split, and there is none")
        skipped = list(source.skipped)
        splits: dict[str, SplitInfo] = {}
        for name, loader in source.splits.items():
            ring = use.ring(cipher, key, name)
            writer = split_writer(opts.storage, tmp, name, source.shape, opts.shard_size)
            per_class = np.zeros(len(source.classes), np.int64)
            count = 0
            passes = augment.copies if augment is not None and name == augment.split else None
            with progress(len(loader) * (passes or 1), f"encrypt {name}") as bar:
                for copy in range(passes or 1):
                    draws = client.draws(len(loader), augment.pad, augment.seed, copy) if passes else None
                    at = 0  # the image's position in the split (after skipped files): its draw
                    for chunk in pool.map(run_task, loader.tasks(), parallel=loader.parallel):
                        if copy == 0:
                            skipped.extend(chunk.bad)
                        bar.update(len(chunk.labels) + len(chunk.bad))
                        n = len(chunk.labels)
                        if n == 0:
                            continue
                        if chunk.images.shape[1:] != source.shape:
                            raise SourceError(f"{src}: an image of split {name} decoded to {chunk.images.shape[1:]}, expected {source.shape}")
                        if chunk.labels.min() < 0 or chunk.labels.max() >= len(source.classes):
                            raise SourceError(f"{src}: split {name} has labels outside 0..{len(source.classes) - 1}")
                        images = chunk.images if draws is None else client.shift_flip(chunk.images, draws[at : at + n])
                        encrypted = cipher.encrypt(images, ring, np.arange(count, count + n, dtype=np.int64))
                        writer.write(encrypted, chunk.labels)
                        per_class += np.bincount(chunk.labels, minlength=len(source.classes))
                        count += n
                        at += n
            shards = writer.close()
            if count:
                splits[name] = SplitInfo(count, per_class.tolist(), shards)
            else:
                shutil.rmtree(tmp / name, ignore_errors=True)  # every file of the split was bad
        if not splits:
            raise SourceError(f"{src}: no image could be decoded ({len(skipped)} bad files skipped)")
        listed = {sh.path for s in splits.values() for sh in s.shards}
        manifest = Manifest(
            storage=opts.storage,
            cipher=CipherInfo(cipher.name, cipher.params, key.key_id if cipher.needs_key else None, use.scope,
                              use.labels(cipher, key, splits, source.shape), **cipher.facts(source.shape[2]),
                              kdf=use.kdf, salt=use.salt_hex),  # fmt: skip
            height=source.shape[0],
            width=source.shape[1],
            channels=source.shape[2],
            resize=opts.size,
            classes=source.classes,
            layout=source.layout,
            skipped=len(skipped),
            splits=splits,
            files=other_files(tmp, listed),
            augment=augment,
        )
        if cipher.needs_key:
            manifest.mac = sign(manifest, key)  # last: it covers every field above
        manifest.write(tmp)
    return EncryptResult(manifest, skipped, source.warnings)
