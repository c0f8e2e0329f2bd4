"""The batch job: a source dataset in, an encrypted, sharded dataset with its manifest out.

    decode (worker processes) -> [client augmentation, --copies] -> encrypt (batched,
    vectorised) -> write shards (in order)

Samples are numbered in source order after dropping skipped files, so the index — and with
it the image-scope key and the shard layout — is the same for any worker count. With
``--copies K`` the train split is read K times, one augmented copy per pass (augment.py):
copy k of image j is sample k x N + j.

OUT is a folder, built beside its final place and renamed into it, or a URL (s3://, gs://):
each shard is uploaded as soon as it is closed and dropped locally, manifest.json last
(formats/output.py). A shard closes at ``--shard-size`` samples or ``--shard-bytes`` bytes,
whichever comes first (a sample's encrypted size is fixed, so that is a fixed sample count).

Every closed shard is journaled at OUT with where the input continues after it
(formats/journal.py); ``--resume`` keeps the shards an interrupted job finished (each checked
against its size and SHA-256), skips the tasks whose images they hold without reading them,
and writes the rest, to the bytes an uninterrupted run writes (resume.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import augment as client
from .atomic import is_within
from .ciphers import ImageCipher, cipher_class, make_cipher
from .errors import CipherError, KeyFileError, ManifestError, OptionError, OutputError, SourceError
from .formats import STORAGES, Manifest, SplitInfo, SplitWriter, is_url, open_location, shown_url, split_writer
from .formats.location import local_path
from .formats.journal import ShardEntry
from .formats.manifest import CipherInfo, ClientAugment, SourceInputs
from .formats.output import OURS, Output, open_output, walk_order
from .engine import START, SplitJob, SplitRun, make_engine
from .keys import KeyUse, MasterKey, SourceDigest, binding, load_key, open_keyed, sign
from .parallel import WorkerPool, default_workers
from .progress import ProgressFactory, no_progress
from .resize import BICUBIC, DEFAULT, RULES, preload, sized
from .resume import journal_check, journal_signer, keep_finished
from .sources import Source, StreamOptions, open_source
from .sources.fingerprint import fingerprint
from .sources.place import is_pattern
from .sources.streamed import inputs_digest

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
    # The rule --size is applied by (resize.py); None: resize.DEFAULT, or --reproduce's dataset's
    resize_rule: str | None = None
    shard_size: int = 10_000  # samples per shard, at most
    shard_bytes: int = 256 << 20  # bytes per shard, at most (the smaller of the two limits wins)
    workers: int = field(default_factory=default_workers)
    skip_bad: bool = False
    # An earlier dataset (folder or URL) to reproduce byte for byte from the same source: its id
    # (and, image scope, salt) are reused only once the source is known to be the same (its digests)
    reproduce: str | None = None
    copies: int | None = None  # --copies: augmented copies of the train split (None: as it is)
    pad: int | None = None  # the copies' largest shift, pixels (None: PAD); only with copies
    augment_seed: int | None = None  # seeds the copies' draws (None: AUGMENT_SEED); only with copies
    resume: bool = False  # continue the interrupted job at OUT (its journal must be this job's)
    engine: str = "local"  # local | dask (engine.py)
    scheduler: str | None = None  # dask: the scheduler's address (None: $DASK_SCHEDULER_ADDRESS, else a LocalCluster)
    # --split NAME=SRC: each split's own source (SRC is then '-'); None: SRC's splits
    split_sources: dict[str, str] | None = None
    # --classes, --image-column, --label-column: the streamed sources' (wds, parquet) options
    stream: StreamOptions = field(default_factory=StreamOptions)

    def __post_init__(self):
        cls = cipher_class(self.method)
        if self.resize_rule is not None and (self.size is None or self.resize_rule not in RULES):
            raise OptionError("--size", f"a resize rule ({', '.join(RULES)}) belongs to a --size, not {self.resize_rule!r}")
        if self.resume and not cls.needs_key:
            raise OptionError("--resume", f"method {self.method!r} uses no key, and the journal a resume trusts is authenticated by the key")
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
    kept: int = 0  # --resume: shards an interrupted job had finished, kept as they were


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


def _resize_rule(opts: EncryptOptions, earlier: Manifest | None) -> str | None:
    """--size's rule: the one asked for, else a reproduction's dataset's (a manifest without
    one: the rule of its time), else the default."""
    if opts.size is None:
        return None
    if earlier is None:
        return opts.resize_rule or DEFAULT
    theirs = earlier.resize_rule or BICUBIC
    if opts.resize_rule not in (None, theirs):
        raise OptionError("--reproduce", f"{opts.reproduce} was resized by rule {theirs}, not {opts.resize_rule}")
    return theirs


def _place(where) -> str | None:
    """A path, URL or brace pattern as a journal binds it: a URL as shown, a local path
    resolved (the same job run again from another folder is the same job); None for no SRC."""
    if where in (None, "-"):
        return None
    return shown_url(where) if is_url(where) else str(local_path(where).resolve())


def _binding(src: str | None, out: str, key: MasterKey, opts: EncryptOptions, shard_size: int, rule: str | None) -> dict:
    """What a journal must name for ``--resume`` to continue it: this key, SRC (and each
    --split NAME=SRC, in order), OUT, and every option that changes the bytes (the streamed
    sources' --classes, --image-column and --label-column among them). The source's fingerprint
    (sources/fingerprint.py) is added as ``inputs`` once the source is open."""
    stream = opts.stream
    # --size's resize rule: bound only with a size, so a job without one binds what it did before
    options = {"method": opts.method, "params": opts.params, "scope": opts.key_scope, "storage": opts.storage, "size": opts.size,
               "shard_size": shard_size, "skip_bad": opts.skip_bad, "copies": opts.copies, "pad": opts.pad,
               "augment_seed": opts.augment_seed, "reproduce": _place(opts.reproduce), "classes": _place(stream.classes),
               "image_column": stream.image_column, "label_column": stream.label_column,
               **({"resize_rule": rule} if rule is not None else {})}  # fmt: skip
    splits = None if not opts.split_sources else [[name, _place(s)] for name, s in opts.split_sources.items()]
    return {"key_id": key.key_id, "src": _place(src), "splits": splits, "out": _place(out), "options": options}


def encrypt_dataset(
    src: str | None,
    out: str,
    key: MasterKey | str | os.PathLike | None = None,
    opts: EncryptOptions | None = None,
    overwrite: bool = False,
    progress: ProgressFactory = no_progress,
    **options,
) -> EncryptResult:
    """Encrypt the dataset at ``src`` into ``out`` (a folder or URL), as ``ppencrypt dataset``
    does; ``key`` a MasterKey or a key file's path; the options as :class:`EncryptOptions`'
    fields, or keywords (``engine="dask"``, ``shard_bytes=64 << 20``, ``resume=True``, ...);
    ``src`` None (or '-') with ``split_sources={"train": SRC, ...}``."""
    if opts is None:
        opts = EncryptOptions(**options)
    elif options:
        raise TypeError("pass the options either as opts or as keywords, not both")
    if isinstance(key, (str, os.PathLike)):
        key = load_key(key)
    if opts.storage not in STORAGES:
        raise CipherError(f"unknown format {opts.storage!r}")
    if opts.shard_size < 1:
        raise CipherError("--shard-size must be at least 1")
    if opts.shard_bytes < 1:
        raise CipherError("--shard-bytes must be at least 1")
    cipher, use, earlier = prepare(opts, key)
    rule = _resize_rule(opts, earlier)
    expected = None if earlier is None else earlier.cipher.sources
    dataset_id = secrets.token_hex(16) if earlier is None else earlier.dataset_id  # a reproduction is that dataset
    target = open_location(out)  # a folder, or a URL: each shard uploaded as it closes, manifest last
    if target.local:
        for given in [src, *(opts.split_sources or {}).values()]:
            if given not in (None, "-") and not is_url(given) and not is_pattern(given):
                _check_paths(Path(given), target.root)
    augment = opts.client_augment()
    preload(sized(opts.size, rule))
    with WorkerPool(opts.workers) as pool, make_engine(opts.engine, pool, opts.scheduler) as engine:
        source = open_source(src, sized(opts.size, rule), pool, opts.skip_bad, progress, stream=opts.stream, splits=opts.split_sources)
        cipher.check(source.shape, use.scope)
        if augment is not None:
            problem = client.check(augment.copies, augment.pad, source.shape)
            if problem or augment.split not in source.splits:
                raise CipherError(problem or f"{src}: --copies augments the {augment.split!r} split, and there is none")
            loader = source.splits[augment.split]
            if loader.count is None:  # the draws are made for the split's count: a stream's shards are walked for it first
                loader.count_images(pool)
        writer_cls = STORAGES[opts.storage].writer
        shard_size = min(opts.shard_size, writer_cls.samples_within(source.shape, opts.shard_bytes))
        bound = _binding(src, out, key, opts, shard_size, rule) if cipher.needs_key else None
        if bound is not None:
            bound["inputs"] = fingerprint(source)
        where = {name: (shown_url(str((opts.split_sources or {}).get(name, src))), source.classes_files.get(name, (None,))[0])
                 for name in source.splits}  # fmt: skip
        check = journal_check(key, bound, use, None if earlier is None else dataset_id, where) if opts.resume else None
        with open_output(target, overwrite, check) as o:
            kept, closed = {}, {}
            if o.earlier is not None:  # checked: this job's, by this key
                dataset_id, salt = o.earlier.dataset_id, o.earlier.salt
                use = KeyUse.new(use.scope, None if salt is None else bytes.fromhex(salt))
                kept, closed = keep_finished(o, o.earlier)
            if cipher.needs_key:
                o.signer = journal_signer(key)
                o.journal.binding, o.journal.dataset_id, o.journal.salt = bound, dataset_id, use.salt_hex
            o.save_journal()
            try:
                manifest, skipped = _encrypt(src, source, o, cipher, key, use, engine, opts, shard_size, augment, progress,
                                             dataset_id, expected, kept, closed, rule)  # fmt: skip
            except BaseException:
                engine.abort()  # every task stopped before the partial output is removed (open_output's exit)
                raise
            o.commit(manifest.to_json().encode("utf-8"))
    warnings = list(source.warnings)
    try:  # once the dataset is there: the id this client expects at OUT
        binding.remember(target, manifest)
    except (OSError, ManifestError) as e:  # the dataset is written all the same: say what is not remembered
        where = f"{e.filename}: " if isinstance(e, OSError) and e.filename else ""
        warnings.append(f"{where}could not remember dataset {manifest.dataset_id} for {out} "
                        f"({e.strerror if isinstance(e, OSError) else e}); pass --dataset-id {manifest.dataset_id} to commands that use it")
    return EncryptResult(manifest, skipped, warnings, sum(len(v) for v in kept.values()))


def _encrypt(src, source: Source, o: Output, cipher, key, use: KeyUse, engine, opts: EncryptOptions, shard_size: int, augment,
             progress, dataset_id: str, expected, kept: dict, closed: dict, rule: str | None) -> tuple[Manifest, list]:  # fmt: skip
    """Every split into ``o``, then the manifest (signed, not yet written) and the files skipped."""
    skipped = list(source.skipped)
    bad_earlier = 0
    splits: dict[str, SplitInfo] = {}
    sources: dict[str, str] = {}
    for name in source.splits:
        ring = use.ring(cipher, key, name)
        writer = split_writer(opts.storage, o.staging, name, source.shape, shard_size)
        streams = type(writer).resume is not SplitWriter.resume  # a writer that says when its files are final
        digest = SourceDigest(key, dataset_id, name, legacy=expected is not None) if cipher.needs_key else None
        run = SplitRun(name, writer, digest, np.zeros(len(source.classes), np.int64))
        if streams:
            writer.on_final = lambda rel, sha: run.files.append(o.publish(rel, sha))
        start = run.resume(kept.get(name, []))

        def journal(entry: ShardEntry, name=name, run=run) -> None:
            done = list(run.entries)  # as they are now: the driver goes on to the next shard

            def save() -> None:
                o.journal.splits[name] = done
                o.save_journal()

            o.checkpoint(save)  # once the shard is at OUT (a URL's uploads overlap the next shard)

        if name in closed:
            run.bad_before, start = closed[name], None  # every shard of it was kept
        if start is not None:
            engine.encrypt_split(SplitJob(src=src, source=source, run=run, cipher=cipher, ring=ring, storage=opts.storage,
                                          shard_size=shard_size, output=o, augment=augment, progress=progress,
                                          journal=journal if streams else None), start)  # fmt: skip
        shards = writer.close()
        o.settle()  # the split's uploads done: the journal is the driver's again
        if streams and shards and (not run.entries or run.entries[-1].shard.path != shards[-1].path):
            run.shard_closed({**START, "bad": run.bad_before + len(run.bad)})  # the last, short shard: the split is closed with it
        skipped.extend(run.bad)
        bad_earlier += run.bad_before
        if streams:
            o.journal.splits[name] = run.entries
            o.journal.closed[name] = run.bad_before + len(run.bad)
            o.save_journal()
        if run.count:
            splits[name] = SplitInfo(run.count, run.per_class.tolist(), shards)
            if digest is not None:
                legacy = digest.legacy_hexdigest()
                sources[name] = legacy if expected is not None and legacy == expected.get(name) else digest.hexdigest()
        else:
            shutil.rmtree(o.staging / name, ignore_errors=True)  # every file of the split was bad
    if expected is not None and sources != expected:
        # Before the manifest: the reused salt gave these images the masks of the earlier
        # dataset's, which XORed with its ciphertexts would reveal both (what was uploaded goes).
        differ = sorted(set(sources) ^ set(expected)) or sorted(k for k in sources if sources[k] != expected[k])
        raise SourceError(f"{src}: not the source --reproduce {opts.reproduce} was made from (split {differ[0]} differs); "
                          "reusing its salt would give these images its masks; nothing written")  # fmt: skip
    if not splits:
        raise SourceError(f"{src}: no image could be decoded ({len(skipped)} bad files skipped)")
    o.publish_rest()
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
        skipped=len(skipped) + bad_earlier,
        splits=splits,
        files=[o.published[rel] for rel in walk_order(o.published) if rel not in listed and rel not in OURS],
        augment=augment,
        dataset_id=dataset_id,
        inputs=inputs or None,
        resize_rule=rule,
    )
    if cipher.needs_key:
        manifest.mac = sign(manifest, key)  # last: it covers every field above
    return manifest, skipped
