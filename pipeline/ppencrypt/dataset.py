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
from .ciphers import ImageCipher, cipher_class, make_cipher
from .errors import CipherError, KeyFileError, OptionError, OutputError, SourceError
from .formats import STORAGES, Manifest, SplitInfo, SplitWriter, open_location, other_files, split_writer
from .formats.manifest import CipherInfo, ClientAugment
from .keys import DATASET_SALT_BYTES, KeyRing, KeyUse, MasterKey, sign
from .parallel import WorkerPool, default_workers
from .progress import ProgressFactory, no_progress
from .sources import Source, open_source, run_task

PAD, AUGMENT_SEED = 4, 0  # the copies' largest shift (pixels) and seed when none is given


@dataclass(kw_only=True)
class EncryptOptions:
    """What to encrypt how. Options that do not fit together are refused when the options are
    made (:class:`OptionError`, naming the command-line option), before any file is read."""

    method: str = "pe"
    params: dict = field(default_factory=dict)
    # image (a mask per image: private, the default for a keyed method) | dataset ([P]'s shared
    # mask). None until chosen, so that choosing image scope for a keyless method is refused.
    scope: str | None = None
    storage: str = "wds"  # wds | zarr
    size: int | None = None  # --size: resize + centre-crop to size x size
    shard_size: int = 10_000  # samples per shard
    workers: int = field(default_factory=default_workers)
    skip_bad: bool = False
    # Image scope: reuse a dataset's salt (its manifest's 32 hex digits, or the 16 bytes) to
    # reproduce it byte for byte; never for new data. Hex digits are read into bytes here.
    salt: bytes | str | None = None
    copies: int | None = None  # --copies: augmented copies of the train split (None: as it is)
    pad: int | None = None  # the copies' largest shift, pixels (None: PAD); only with copies
    augment_seed: int | None = None  # seeds the copies' draws (None: AUGMENT_SEED); only with copies

    def __post_init__(self):
        cls = cipher_class(self.method)
        if not cls.needs_key and self.scope == "image":
            raise OptionError("--key-scope", f"method {self.method!r} uses no key, so there is no key per image")
        if not cls.needs_key and self.salt is not None:
            raise OptionError("--salt", f"method {self.method!r} uses no key, so no salt")
        if "block_size" in self.params and "block_size" not in cls.defaults:
            raise OptionError("--block-size", f"method {self.method!r} is pixel-based and takes no block size")
        for name, value in (("--pad", self.pad), ("--augment-seed", self.augment_seed)):
            if value is not None and self.copies is None:
                raise OptionError(name, f"{name} belongs to --copies (the client's augmentation)")
        if self.salt is not None:
            if self.key_scope != "image":
                raise OptionError("--salt", "a dataset-scope key uses no salt")
            if isinstance(self.salt, str):
                self.salt = _salt_from_hex(self.salt)

    @property
    def key_scope(self) -> str:
        """The scope a key is used under (a keyless method ignores it)."""
        return self.scope or "image"

    def client_augment(self) -> ClientAugment | None:
        if self.copies is None:
            return None
        pad = PAD if self.pad is None else self.pad
        seed = AUGMENT_SEED if self.augment_seed is None else self.augment_seed
        return ClientAugment(self.copies, pad, seed, list(client.OPS), client.FILL, client.SPLIT)


def _salt_from_hex(text: str) -> bytes:
    try:
        salt = bytes.fromhex(text)
    except ValueError:
        salt = b""
    if len(salt) != DATASET_SALT_BYTES:
        raise OptionError("--salt", "expected 32 hexadecimal digits (a manifest's cipher.salt)")
    return salt


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


def prepare(opts: EncryptOptions, key: MasterKey | None) -> tuple[ImageCipher, KeyUse]:
    cipher = make_cipher(opts.method, opts.params)
    if cipher.needs_key and key is None:
        raise KeyFileError(f"method {opts.method!r} encrypts with a key: pass --key")
    return cipher, KeyUse.new(opts.key_scope if cipher.needs_key else None, opts.salt)


def encrypt_split(
    src: str, source: Source, name: str, cipher: ImageCipher, ring: KeyRing | None, writer: SplitWriter, pool: WorkerPool,
    augment: ClientAugment | None = None, progress: ProgressFactory = no_progress,
) -> tuple[int, list[int], list[tuple[str, str]]]:  # fmt: skip
    """Encrypt split ``name`` of ``source`` (read from ``src``) into ``writer``: image j as
    sample j, or, when ``augment`` copies this split, copy k of image j as sample k x N + j.
    Returns the samples written, their count per class, and the files that could not be
    decoded (each once, however many copies were made)."""
    loader = source.splits[name]
    per_class = np.zeros(len(source.classes), np.int64)
    bad: list[tuple[str, str]] = []
    count = 0
    passes = augment.copies if augment is not None and name == augment.split else None
    with progress(len(loader) * (passes or 1), f"encrypt {name}") as bar:
        for copy in range(passes or 1):
            draws = client.draws(len(loader), augment.pad, augment.seed, copy) if passes else None
            at = 0  # the image's position in the split (after skipped files): its draw
            for chunk in pool.map(run_task, loader.tasks(), parallel=loader.parallel):
                if copy == 0:
                    bad.extend(chunk.bad)
                bar.update(len(chunk.labels) + len(chunk.bad))
                n = len(chunk.labels)
                if n == 0:
                    continue
                if chunk.images.shape[1:] != source.shape:
                    raise SourceError(f"{src}: an image of split {name} decoded to {chunk.images.shape[1:]}, expected {source.shape}")
                if chunk.labels.min() < 0 or chunk.labels.max() >= len(source.classes):
                    raise SourceError(f"{src}: split {name} has labels outside 0..{len(source.classes) - 1}")
                images = chunk.images if draws is None else client.shift_flip(chunk.images, draws[at : at + n])
                writer.write(cipher.encrypt(images, ring, np.arange(count, count + n, dtype=np.int64)), chunk.labels)
                per_class += np.bincount(chunk.labels, minlength=len(source.classes))
                count += n
                at += n
    return count, per_class.tolist(), bad


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
    cipher, use = prepare(opts, key)
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
        for name in source.splits:
            ring = use.ring(cipher, key, name)
            writer = split_writer(opts.storage, tmp, name, source.shape, opts.shard_size)
            count, per_class, bad = encrypt_split(src, source, name, cipher, ring, writer, pool, augment, progress)
            skipped.extend(bad)
            shards = writer.close()
            if count:
                splits[name] = SplitInfo(count, per_class, shards)
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
