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

import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import augment as client
from .atomic import is_within
from .ciphers import ImageCipher, cipher_class, make_cipher
from .errors import CipherError, KeyFileError, ManifestError, OptionError, OutputError, SourceError
from .formats import STORAGES, Manifest, SplitInfo, SplitWriter, is_url, open_location, other_files, split_writer
from .formats.manifest import CipherInfo, ClientAugment, SourceInputs
from .keys import KeyRing, KeyUse, MasterKey, binding, open_keyed, sign, source_digest
from .parallel import WorkerPool, default_workers
from .progress import ProgressFactory, no_progress
from .sources import Source, StreamOptions, open_source, run_task
from .sources.place import is_pattern
from .sources.streamed import MAX_LABEL, inputs_digest

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
    # An earlier dataset (folder or URL) to reproduce byte for byte from the same source: its id
    # (and, image scope, salt) are reused only once the source is known to be the same (its digests)
    reproduce: str | None = None
    copies: int | None = None  # --copies: augmented copies of the train split (None: as it is)
    pad: int | None = None  # the copies' largest shift, pixels (None: PAD); only with copies
    augment_seed: int | None = None  # seeds the copies' draws (None: AUGMENT_SEED); only with copies
    # --split NAME=SRC: each split's own source (SRC is then '-'); None: SRC's splits
    split_sources: dict[str, str] | None = None
    # --classes, --image-column, --label-column: the streamed sources' (wds, parquet) options
    stream: StreamOptions = field(default_factory=StreamOptions)

    def __post_init__(self):
        cls = cipher_class(self.method)
        if not cls.needs_key and self.scope == "image":
            raise OptionError("--key-scope", f"method {self.method!r} uses no key, so there is no key per image")
        if not cls.needs_key and self.reproduce is not None:
            raise OptionError("--reproduce", f"method {self.method!r} uses no key: the same input always gives the same output")
        if "block_size" in self.params and "block_size" not in cls.defaults:
            raise OptionError("--block-size", f"method {self.method!r} is pixel-based and takes no block size")
        for name, value in (("--pad", self.pad), ("--augment-seed", self.augment_seed)):
            if value is not None and self.copies is None:
                raise OptionError(name, f"{name} belongs to --copies (the client's augmentation)")

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


def prepare(opts: EncryptOptions, key: MasterKey | None) -> tuple[ImageCipher, KeyUse, Manifest | None]:
    """The cipher, how it uses the key, and with ``--reproduce`` the dataset to reproduce (its
    salt, its id, and the digests the source must have)."""
    cipher = make_cipher(opts.method, opts.params)
    if cipher.needs_key and key is None:
        raise KeyFileError(f"method {opts.method!r} encrypts with a key: pass --key")
    if opts.reproduce is None:
        return cipher, KeyUse.new(opts.key_scope if cipher.needs_key else None), None
    earlier = open_keyed(opts.reproduce, key, accept_v1=False).manifest  # its MAC vouches for salt and digests
    c, shown = earlier.cipher, f"--reproduce {opts.reproduce}"
    if c.sources is None:
        raise SourceError(f"{shown}: made before ppencrypt recorded its source's digests (version {earlier.version}), "
                          "so nothing shows that SRC is that source; encrypt anew")  # fmt: skip
    if (c.method, c.params, c.key_scope) != (cipher.name, cipher.params, opts.key_scope):
        raise SourceError(f"{shown}: made with method {c.method} {c.params} and {c.key_scope} scope, "
                          f"not {cipher.name} {cipher.params} and {opts.key_scope} scope")  # fmt: skip
    return cipher, KeyUse.new(c.key_scope, None if c.salt is None else bytes.fromhex(c.salt)), earlier


def encrypt_split(
    src: str, source: Source, name: str, cipher: ImageCipher, ring: KeyRing | None, writer: SplitWriter, pool: WorkerPool,
    augment: ClientAugment | None = None, progress: ProgressFactory = no_progress, digest=None,
) -> tuple[int, list[int], list[tuple[str, str]]]:  # fmt: skip
    """Encrypt split ``name`` of ``source`` (read from ``src``) into ``writer``: image j as
    sample j, or, when ``augment`` copies this split, copy k of image j as sample k x N + j;
    ``digest`` (keys.source_digest) is fed every plain image as it is encrypted.
    Returns the samples written, their count per class, and the files that could not be
    decoded (each once, however many copies were made)."""
    loader = source.splits[name]
    classes = MAX_LABEL if source.numbered else len(source.classes)  # numbered: found as they come
    per_class = np.zeros(len(source.classes), np.int64)
    bad: list[tuple[str, str]] = []
    count = 0
    passes = augment.copies if augment is not None and name == augment.split else None
    total = None if loader.count is None else loader.count * (passes or 1)  # None: a streamed source's unknown size
    with progress(total, f"encrypt {name}") as bar:
        for copy in range(passes or 1):
            draws = client.draws(loader.count, augment.pad, augment.seed, copy) if passes else None
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
                if chunk.labels.min() < 0 or chunk.labels.max() >= classes:
                    raise SourceError(f"{src}: split {name} has labels outside 0..{classes - 1}")
                images = chunk.images if draws is None else client.shift_flip(chunk.images, draws[at : at + n])
                if digest is not None:
                    digest.update(np.ascontiguousarray(images))
                writer.write(cipher.encrypt(images, ring, np.arange(count, count + n, dtype=np.int64)), chunk.labels)
                seen = np.bincount(chunk.labels, minlength=len(per_class))
                per_class = np.pad(per_class, (0, len(seen) - len(per_class))) + seen
                count += n
                at += n
    return count, per_class.tolist(), bad


def encrypt_dataset(
    src: str | None,
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
    cipher, use, earlier = prepare(opts, key)
    expected = None if earlier is None else earlier.cipher.sources
    dataset_id = secrets.token_hex(16) if earlier is None else earlier.dataset_id  # a reproduction is that dataset
    target = open_location(out)  # a folder, or a URL: built locally, then uploaded, manifest last
    if target.local:
        for given in [src, *(opts.split_sources or {}).values()]:
            if given not in (None, "-") and not is_url(given) and not is_pattern(given):
                _check_paths(Path(given), target.root)
    augment = opts.client_augment()
    with WorkerPool(opts.workers) as pool, target.output_dir(overwrite) as tmp:
        source = open_source(src, opts.size, pool, opts.skip_bad, progress, stream=opts.stream, splits=opts.split_sources)
        cipher.check(source.shape, use.scope)
        if augment is not None:
            problem = client.check(augment.copies, augment.pad, source.shape)
            if problem or augment.split not in source.splits:
                raise CipherError(problem or f"{src}: --copies augments the {augment.split!r} split, and there is none")
            if hasattr(source.splits[augment.split], "inputs"):  # its draws are made for a count a stream knows only at its end
                raise OptionError("--copies", f"the {augment.split} split is streamed ({source.layout}); --copies needs a local "
                                  "ImageFolder, CIFAR or IDX source")  # fmt: skip
        skipped = list(source.skipped)
        splits: dict[str, SplitInfo] = {}
        sources: dict[str, str] = {}
        for name in source.splits:
            ring = use.ring(cipher, key, name)
            writer = split_writer(opts.storage, tmp, name, source.shape, opts.shard_size)
            digest = source_digest(key, dataset_id, name) if cipher.needs_key else None
            count, per_class, bad = encrypt_split(src, source, name, cipher, ring, writer, pool, augment, progress, digest)
            skipped.extend(bad)
            shards = writer.close()
            if count:
                splits[name] = SplitInfo(count, per_class, shards)
                if digest is not None:
                    sources[name] = digest.hexdigest()
            else:
                shutil.rmtree(tmp / name, ignore_errors=True)  # every file of the split was bad
        if expected is not None and sources != expected:
            # Before anything leaves this machine: the reused salt gave these images the masks of
            # the earlier dataset's, which XORed with its ciphertexts would reveal both.
            differ = sorted(set(sources) ^ set(expected)) or sorted(k for k in sources if sources[k] != expected[k])
            raise SourceError(f"{src}: not the source --reproduce {opts.reproduce} was made from (split {differ[0]} differs); "
                              "reusing its salt would give these images its masks; nothing written")  # fmt: skip
        if not splits:
            raise SourceError(f"{src}: no image could be decoded ({len(skipped)} bad files skipped)")
        classes = source.classes
        if source.numbered:  # the label numbers, up to the largest seen in any split
            classes = [str(i) for i in range(max(len(s.per_class) for s in splits.values()))]
            for s in splits.values():
                s.per_class += [0] * (len(classes) - len(s.per_class))
        inputs = {name: SourceInputs(layout=source.layouts.get(name, source.layout), files=len(loader.inputs),
                                     sha256=inputs_digest(loader.inputs))
                  for name, loader in source.splits.items() if name in splits and hasattr(loader, "inputs")}  # fmt: skip
        listed = {sh.path for s in splits.values() for sh in s.shards}
        manifest = Manifest(
            storage=opts.storage,
            cipher=CipherInfo(cipher.name, cipher.params, key.key_id if cipher.needs_key else None, use.scope,
                              use.labels(cipher, key, splits, source.shape), **cipher.facts(source.shape[2]),
                              kdf=use.kdf, salt=use.salt_hex, sources=sources if cipher.needs_key else None),  # fmt: skip
            height=source.shape[0],
            width=source.shape[1],
            channels=source.shape[2],
            resize=opts.size,
            classes=classes,
            layout=source.layout,
            skipped=len(skipped),
            splits=splits,
            files=other_files(tmp, listed),
            augment=augment,
            dataset_id=dataset_id,
            inputs=inputs or None,
        )
        if cipher.needs_key:
            manifest.mac = sign(manifest, key)  # last: it covers every field above
        manifest.write(tmp)
    warnings = list(source.warnings)
    try:  # once the dataset is there: the id this client expects at OUT
        binding.remember(target, manifest)
    except (OSError, ManifestError) as e:  # the dataset is written all the same: say what is not remembered
        where = f"{e.filename}: " if isinstance(e, OSError) and e.filename else ""
        warnings.append(f"{where}could not remember dataset {manifest.dataset_id} for {out} "
                        f"({e.strerror if isinstance(e, OSError) else e}); pass --dataset-id {manifest.dataset_id} to commands that use it")
    return EncryptResult(manifest, skipped, warnings)
