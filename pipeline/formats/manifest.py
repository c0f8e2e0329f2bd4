"""manifest.json: the contract between ppencrypt and pptrain, versioned and checked on read.

It records what a server needs to train (shape, classes, counts, shards) and what the data
owner needs to reproduce the encryption (method, parameters, key id, scope, derivation
labels) — never the key, never a source path. docs/formats.md documents every field.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import ManifestError

MANIFEST = "manifest.json"
FORMAT = "ppencrypt-dataset"
VERSION = 1
FAMILIES = ("pixel", "block", "none")  # as pipeline.ciphers.FAMILIES, which the server must not import


@dataclass
class FileInfo:
    path: str  # relative to the dataset root, '/'-separated
    sha256: str
    bytes: int


@dataclass
class ShardInfo(FileInfo):
    count: int = 0  # samples in this shard
    first: int = 0  # index of its first sample in the split


@dataclass
class SplitInfo:
    count: int
    per_class: list[int]
    shards: list[ShardInfo]


@dataclass
class CipherInfo:
    method: str
    params: dict
    key_id: str | None  # None for 'plain'
    key_scope: str | None  # 'dataset' | 'image'; None for 'plain'
    derivations: list[str]  # HKDF labels used (docs/cipher.md); they reveal nothing
    # What the method is (pipeline/ciphers/base.py), so that the server reads it here instead
    # of importing cipher code: 'pixel' | 'block' | 'none'; the adaptation network that fits;
    # the block side of a block-wise method; the kind of maps a pixel may undergo.
    family: str = "pixel"
    adapt: str = "pixel"
    block: int | None = None
    pixel_group: str | None = None

    @property
    def pixelwise(self) -> bool:
        """Shifts and flips of the ciphertext commute with the cipher (no blocks)."""
        return self.family != "block"


@dataclass
class ClientAugment:
    """``augment``: the train split holds ``copies`` augmented copies of each source image,
    made by the client before encryption (``ppencrypt dataset --copies``, pipeline/copies.py).
    Absent (None) when the client did not augment."""

    copies: int
    pad: int  # the largest shift, pixels
    seed: int  # the draws of copy k come from numpy default_rng([seed, k])
    ops: list[str]  # ['crop', 'flip']
    fill: int  # the border value of the shifts
    split: str  # the split that holds the copies


# Manifests written before the cipher section stated its facts name one of these methods,
# whose facts are fixed: (family, adaptation network).
LEGACY_FACTS = {"pe": ("pixel", "pixel"), "np": ("pixel", "pixel"), "plain": ("none", "pixel"),
                "le": ("block", "tanaka"), "ele": ("block", "tanaka"), "etc": ("block", "tanaka")}  # fmt: skip


def legacy_facts(method: str, params: dict, channels: int, shown: str) -> dict:
    if method not in LEGACY_FACTS:
        raise ManifestError(f"{shown}: cipher: missing field 'family'")
    family, adapt = LEGACY_FACTS[method]
    group = {"pe": "signed-permutations" if channels == 3 else "negations", "np": "negations", "plain": "identity"}.get(method)
    block = params.get("block_size") if family == "block" else None
    if block is not None and (not isinstance(block, int) or isinstance(block, bool)):
        raise ManifestError(f"{shown}: cipher: params: field 'block_size' has the wrong type")
    return {"family": family, "adapt": adapt, "block": block, "pixel_group": group}


@dataclass
class Manifest:
    storage: str
    cipher: CipherInfo
    height: int
    width: int
    channels: int
    resize: int | None  # the --size option, or None
    classes: list[str]
    layout: str  # the source layout: imagefolder | cifar10 | cifar100 | idx
    skipped: int  # bad source files skipped with --skip-bad (their names are not recorded)
    splits: dict[str, SplitInfo]
    files: list[FileInfo] = field(default_factory=list)  # every other file, for verify
    tool: str = f"ppencrypt {__version__}"
    augment: ClientAugment | None = None  # written only when the client augmented (--copies)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "tool": self.tool,
            "storage": self.storage,
            "cipher": asdict(self.cipher),
            "image": {"height": self.height, "width": self.width, "channels": self.channels, "dtype": "uint8", "resize": self.resize},
            "classes": self.classes,
            "source": {"layout": self.layout, "skipped_bad_files": self.skipped},
            **({"augment": asdict(self.augment)} if self.augment is not None else {}),
            "splits": {k: asdict(v) for k, v in self.splits.items()},
            "files": [asdict(f) for f in self.files],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    def write(self, root: str | os.PathLike) -> None:
        path = Path(root) / MANIFEST
        tmp = path.with_name(MANIFEST + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, text: str, shown: str) -> Manifest:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{shown}: not valid JSON ({e.msg} at line {e.lineno})") from None
        r = _Reader(doc, shown)
        if r.get("format", str) != FORMAT:
            raise ManifestError(f"{shown}: not a ppencrypt dataset manifest")
        version = r.get("version", int)
        if version != VERSION:
            newer = "newer than" if version > VERSION else "older than"
            raise ManifestError(f"{shown}: manifest version {version} is {newer} this tool's ({VERSION}); use a matching ppencrypt")
        storage = r.get("storage", str)  # a known one: checked by open_dataset, which picks its reader
        c = r.sub("cipher")
        img = r.sub("image")
        method, params = c.get("method", str), c.get("params", dict)
        if "family" in c.doc:
            facts = {"family": c.get("family", str), "adapt": c.get("adapt", str), "block": c.get("block", (int, type(None))),
                     "pixel_group": c.get("pixel_group", (str, type(None)))}  # fmt: skip
        else:
            facts = legacy_facts(method, params, img.get("channels", int), shown)
        cipher = CipherInfo(
            method, params, c.get("key_id", (str, type(None))), c.get("key_scope", (str, type(None))), c.get("derivations", list), **facts
        )  # fmt: skip
        src = r.sub("source")
        splits = {}
        for name, s in r.get("splits", dict).items():
            sr = _Reader(s, f"{shown}: split {name}")
            shards = [ShardInfo(**_Reader(x, f"{shown}: split {name}").fields(ShardInfo)) for x in sr.get("shards", list)]
            splits[name] = SplitInfo(sr.get("count", int), sr.get("per_class", list), shards)
        files = [FileInfo(**_Reader(x, f"{shown}: files").fields(FileInfo)) for x in r.get("files", list)]
        augment = None
        if "augment" in doc:
            a = r.sub("augment")
            augment = ClientAugment(a.get("copies", int), a.get("pad", int), a.get("seed", int), [str(x) for x in a.get("ops", list)],
                                    a.get("fill", int), a.get("split", str))  # fmt: skip
        m = cls(
            storage, cipher, img.get("height", int), img.get("width", int), img.get("channels", int),
            img.get("resize", (int, type(None))), [str(x) for x in r.get("classes", list)],
            src.get("layout", str), src.get("skipped_bad_files", int), splits, files, r.get("tool", str), augment,
        )  # fmt: skip
        m._check(shown)
        return m

    def _check(self, shown: str) -> None:
        if min(self.height, self.width, self.channels) < 1:
            raise ManifestError(f"{shown}: image shape {self.shape} is empty")
        if self.cipher.family not in FAMILIES:
            raise ManifestError(f"{shown}: cipher: unknown family {self.cipher.family!r} (expected {', '.join(FAMILIES)})")
        if (self.cipher.family == "block") != (self.cipher.block is not None) or (self.cipher.block is not None and self.cipher.block < 1):
            raise ManifestError(f"{shown}: cipher: a block side belongs to block-wise methods, and is at least 1")
        if self.augment is not None and (self.augment.copies < 1 or self.augment.pad < 0):
            raise ManifestError(f"{shown}: augment: copies must be at least 1 and pad at least 0")
        for name, s in self.splits.items():
            if sum(sh.count for sh in s.shards) != s.count or sum(s.per_class) != s.count:
                raise ManifestError(f"{shown}: split {name}: counts do not add up")
            if len(s.per_class) != len(self.classes):
                raise ManifestError(f"{shown}: split {name}: per_class has {len(s.per_class)} entries for {len(self.classes)} classes")
        for f in self.all_files():
            if f.path.startswith("/") or ".." in f.path.split("/"):
                raise ManifestError(f"{shown}: file path {f.path!r} leaves the dataset")

    def all_files(self) -> list[FileInfo]:
        return [sh for s in self.splits.values() for sh in s.shards] + list(self.files)


class _Reader:
    """Typed access to one JSON object, with errors that say which field is wrong."""

    def __init__(self, doc, where: str):
        if not isinstance(doc, dict):
            raise ManifestError(f"{where}: expected an object")
        self.doc, self.where = doc, where

    def get(self, key: str, kind):
        if key not in self.doc:
            raise ManifestError(f"{self.where}: missing field {key!r}")
        value = self.doc[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ManifestError(f"{self.where}: field {key!r} has the wrong type")
        return value

    def sub(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), f"{self.where}: {key}")

    def fields(self, cls) -> dict:
        kinds = {"path": str, "sha256": str, "bytes": int, "count": int, "first": int}
        return {k: self.get(k, kinds[k]) for k in cls.__dataclass_fields__}


def read_manifest(root: str | os.PathLike) -> Manifest:
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise ManifestError(f"{root}: no such dataset directory")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{root}: not a ppencrypt dataset (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read ({e})") from None
    return Manifest.from_json(text, str(path))
