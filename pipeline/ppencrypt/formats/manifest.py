"""manifest.json: the contract between ppencrypt and pptrain, versioned and checked on read.

It records what a server needs to train (shape, classes, counts, shards) and what the data
owner needs to reproduce the encryption (method, parameters, key id, scope, salt, derivation
labels) — never the key, never a source path. docs/formats.md documents every field.

The server may have written any byte of it, so reading validates before anything acts on it:
types, names that could become paths or terminal escapes, sizes that would be allocated, and
counts that must add up. Authenticity is another matter: version 2 carries an HMAC under a
subkey of the data owner's key (keys/mac.py checks it; this module only keeps the exact
bytes it covers), so this module imports no key code and the server may read it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__
from ..atomic import write_file
from ..errors import ManifestError
from ..resize import RULES as RESIZE_RULES
from ..resize import Size, sized
from .files import FileProblem, read_regular
from .jsonsafe import load_json

MANIFEST = "manifest.json"
FORMAT = "ppencrypt-dataset"
VERSION = 3
READS = (1, 2, 3)  # version 1: no salt, no MAC, v1 derivation labels, maybe no cipher facts; 3: kdf v3
FAMILIES = ("pixel", "block", "none")  # as ppencrypt.ciphers states them; the server must not import those
AUGMENT_OPS = ("crop", "flip")  # what a client-augmented copy applies (augment.py), in pptrain's names
KEY_SCOPES = ("dataset", "image")  # keys/derive.py's scopes (it imports them from here)
KDFS = {1: ("ppencrypt/v1",), 2: ("ppencrypt/v2",), 3: ("ppencrypt/v3",)}  # the key derivations each manifest version may name
MAX_SIDE = 1 << 14  # pixels: larger images are refused before anything is allocated for them
MAX_BYTES = 1 << 20  # of manifest.json: reading a bigger one would be the server's memory bomb
SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # never in a name we print or turn into a path
HEX = re.compile(r"[0-9a-f]*")


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
    # What the method is (pipeline/ppencrypt/ciphers/base.py), so that the server reads it here instead
    # of importing cipher code: 'pixel' | 'block' | 'none'; the adaptation network that fits;
    # the block side of a block-wise method; the kind of maps a pixel may undergo.
    family: str = "pixel"
    adapt: str = "pixel"
    block: int | None = None
    pixel_group: str | None = None
    kdf: str = "ppencrypt/v1"  # the key derivation (keys/derive.py): v2 in version 2, v3 in version 3
    salt: str | None = None  # hex, 128 bits, fresh per dataset: image scope only (public)
    # Version 3, keyed methods: per split, a keyed digest of its plain images (keys/mac.py), so
    # that --reproduce reuses a dataset's id and salt only on the same source
    sources: dict[str, str] | None = None

    @property
    def pixelwise(self) -> bool:
        """Shifts and flips of the ciphertext commute with the cipher (no blocks)."""
        return self.family != "block"


@dataclass
class ClientAugment:
    """``augment``: the train split holds ``copies`` augmented copies of each source image,
    made by the client before encryption (``ppencrypt dataset --copies``, pipeline/ppencrypt/augment.py).
    Absent (None) when the client did not augment."""

    copies: int
    pad: int  # the largest shift, pixels
    seed: int  # the draws of copy k come from numpy default_rng([seed, k])
    ops: list[str]  # ['crop', 'flip']
    fill: int  # the border value of the shifts
    split: str  # the split that holds the copies


@dataclass(kw_only=True)
class SourceInputs:
    """``source.inputs``: per split of a streamed source (webdataset shards, parquet files, an
    ImageFolder at a URL), how its sample order was defined: the split's source layout, how many
    input files it read, and the SHA-256 of their names relative to its source, in the order read,
    one a line — the order, without the names (docs/formats.md)."""

    layout: str
    files: int
    sha256: str


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


def canonical(doc: dict) -> bytes:
    """The bytes the MAC covers: the whole document but the ``mac`` field, as canonical JSON
    (sorted keys, no spaces), so that any change to any field — known to this version or
    not — changes them."""
    body = {k: v for k, v in doc.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


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
    version: int = VERSION
    mac: str | None = None  # hex HMAC-SHA256 of signed (keys/mac.py); None: plain, or version 1
    signed: bytes = field(default=b"", repr=False, compare=False)  # what the MAC covers, as read or written
    augment: ClientAugment | None = None  # written only when the client augmented (--copies)
    # Version 3: 128 random bits naming this dataset, under the MAC, so that a client can tell the
    # dataset it means from another one its key made (keys/binding.py)
    dataset_id: str | None = None
    inputs: dict[str, SourceInputs] | None = None  # written only for streamed sources
    # The rule --size was applied by (resize.py); written only with a size. None with a size: a
    # dataset written before rules were named, made by resize.BICUBIC.
    resize_rule: str | None = None

    @property
    def size(self) -> Size | None:
        """``resize`` with the rule that made it: what decoding a source image like this dataset's takes."""
        return sized(self.resize, self.resize_rule)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def document(self) -> dict:
        doc = {
            "format": FORMAT,
            "version": self.version,
            "tool": self.tool,
            "storage": self.storage,
            "cipher": asdict(self.cipher),
            "image": {"height": self.height, "width": self.width, "channels": self.channels, "dtype": "uint8", "resize": self.resize,
                      **({"resize_rule": self.resize_rule} if self.resize_rule is not None else {})},
            "classes": self.classes,
            "source": {"layout": self.layout, "skipped_bad_files": self.skipped,
                       **({"inputs": {k: asdict(v) for k, v in self.inputs.items()}} if self.inputs is not None else {})},
            **({"augment": asdict(self.augment)} if self.augment is not None else {}),
            "splits": {k: asdict(v) for k, v in self.splits.items()},
            "files": [asdict(f) for f in self.files],
        }
        if self.version >= 2:
            doc["mac"] = self.mac
        if self.version >= 3:
            doc["dataset_id"] = self.dataset_id
        return doc

    def signing_bytes(self) -> bytes:
        """The bytes a MAC for this manifest must cover (keys.mac.sign)."""
        return canonical(self.document())

    def to_json(self) -> str:
        return json.dumps(self.document(), indent=2, ensure_ascii=False) + "\n"

    def write(self, root: str | Path) -> None:
        write_file(Path(root) / MANIFEST, self.to_json().encode("utf-8"))

    @classmethod
    def from_json(cls, text: str, shown: str) -> Manifest:
        doc = load_json(text, shown, ManifestError)  # finite numbers, Unicode strings, shallow nesting
        r = _Reader(doc, shown)
        if r.get("format", str) != FORMAT:
            raise ManifestError(f"{shown}: not a ppencrypt dataset manifest")
        version = r.get("version", int)
        if version not in READS:
            newer = "newer than" if version > VERSION else "older than"
            raise ManifestError(f"{shown}: manifest version {version} is {newer} this tool's ({VERSION}); use a matching ppencrypt")
        storage = r.get("storage", str)  # a known one: checked by open_dataset, which picks its reader
        c = r.sub("cipher")
        img = r.sub("image")
        method, params = c.get("method", str), c.get("params", dict)
        if version >= 2 or "family" in c.doc:
            facts = {"family": c.get("family", str), "adapt": c.get("adapt", str), "block": c.get("block", (int, type(None))),
                     "pixel_group": c.get("pixel_group", (str, type(None)))}  # fmt: skip
        else:
            facts = legacy_facts(method, params, img.get("channels", int), shown)
        if version >= 2:
            facts.update(kdf=c.get("kdf", str), salt=c.get("salt", (str, type(None))))
        if version >= 3:
            facts.update(sources=c.get("sources", (dict, type(None))))
        cipher = CipherInfo(
            method, params, c.get("key_id", (str, type(None))), c.get("key_scope", (str, type(None))), c.get("derivations", list), **facts
        )  # fmt: skip
        src = r.sub("source")
        splits = {}
        for name, s in r.get("splits", dict).items():
            sr = _Reader(s, f"{shown}: split {_shown_name(name)}")
            shards = [ShardInfo(**sr.item(x).fields(ShardInfo)) for x in sr.get("shards", list)]
            splits[name] = SplitInfo(sr.get("count", int), sr.get("per_class", list), shards)
        files = [FileInfo(**_Reader(x, f"{shown}: files").fields(FileInfo)) for x in r.get("files", list)]
        augment = None
        if "augment" in doc:
            a = r.sub("augment")
            augment = ClientAugment(a.get("copies", int), a.get("pad", int), a.get("seed", int), a.get("ops", list),
                                    a.get("fill", int), a.get("split", str))  # fmt: skip
        inputs = None
        if "inputs" in src.doc:
            inputs = {}
            for name, x in src.get("inputs", dict).items():
                xr = _Reader(x, f"{shown}: source: inputs: {_shown_name(name)}")
                inputs[name] = SourceInputs(layout=xr.get("layout", str), files=xr.get("files", int), sha256=xr.get("sha256", str))
        m = cls(
            storage, cipher, img.get("height", int), img.get("width", int), img.get("channels", int),
            img.get("resize", (int, type(None))), r.get("classes", list), src.get("layout", str),
            src.get("skipped_bad_files", int), splits, files, r.get("tool", str), version,
            r.get("mac", (str, type(None))) if version >= 2 else None, canonical(doc), augment,
            r.get("dataset_id", str) if version >= 3 else None, inputs,
            img.get("resize_rule", str) if "resize_rule" in img.doc else None,
        )  # fmt: skip
        m._check(shown)
        return m

    def _check(self, shown: str) -> None:
        """Everything a reader will rely on, before it relies on it."""
        c = self.cipher
        if not (1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE) or self.channels not in (1, 3):
            raise ManifestError(f"{shown}: image shape {self.shape} is not one ppencrypt writes (sides 1..{MAX_SIDE}, 1 or 3 channels)")
        if self.resize is not None and self.resize < 1:
            raise ManifestError(f"{shown}: image: resize {self.resize} is not a size")
        if self.resize_rule is not None and (self.resize is None or self.resize_rule not in RESIZE_RULES):
            raise ManifestError(f"{shown}: image: resize_rule {_shown_name(self.resize_rule)} is not one of "
                                f"{', '.join(RESIZE_RULES)} for a resize")  # fmt: skip
        if c.family not in FAMILIES:
            raise ManifestError(f"{shown}: cipher: unknown family {_shown_name(c.family)} (expected {', '.join(FAMILIES)})")
        if (c.family == "block") != (c.block is not None) or (c.block is not None and c.block < 1):
            raise ManifestError(f"{shown}: cipher: a block side belongs to block-wise methods, and is at least 1")
        if c.salt is not None and (len(c.salt) != 32 or not HEX.fullmatch(c.salt)):
            raise ManifestError(f"{shown}: cipher: salt must be 32 lowercase hex digits")
        if c.kdf not in KDFS[self.version]:
            raise ManifestError(f"{shown}: cipher: key derivation {_shown_name(c.kdf)} is not version {self.version}'s")
        if c.key_id is None:
            if c.key_scope is not None or c.salt is not None or c.family != "none":
                raise ManifestError(f"{shown}: cipher: without a key id the method encrypts nothing (no scope, salt or family)")
        else:
            if len(c.key_id) != 32 or not HEX.fullmatch(c.key_id) or c.key_scope not in KEY_SCOPES:
                raise ManifestError(f"{shown}: cipher: a key id is 32 lowercase hex digits, with a key scope of {' or '.join(KEY_SCOPES)}")
            needs_salt = self.version >= 2 and c.key_scope == "image"
            if needs_salt != (c.salt is not None):
                raise ManifestError(f"{shown}: cipher: a salt belongs to image-scope keys of version 2 and later, and they all have one")

        if not all(isinstance(label, str) for label in c.derivations):
            raise ManifestError(f"{shown}: cipher: derivations must be labels (strings)")
        if self.version >= 3 and (not isinstance(self.dataset_id, str) or len(self.dataset_id) != 32 or not HEX.fullmatch(self.dataset_id)):
            raise ManifestError(f"{shown}: dataset_id must be 32 lowercase hex digits")
        if self.mac is not None and (len(self.mac) != 64 or not HEX.fullmatch(self.mac)):
            raise ManifestError(f"{shown}: mac must be 64 lowercase hex digits")
        problem = class_names_problem(self.classes)
        if problem:
            raise ManifestError(f"{shown}: {problem}")
        if self.skipped < 0:
            raise ManifestError(f"{shown}: source: skipped_bad_files is negative")
        if self.augment is not None:
            _check_augment(shown, self.augment, self)
        for name, s in self.splits.items():
            _check_split(shown, name, s, len(self.classes))
        # Whether a dataset should have them is the MAC's to say; --reproduce refuses one without.
        if c.sources is not None and (
            set(c.sources) != set(self.splits) or not all(isinstance(d, str) and len(d) == 64 and HEX.fullmatch(d) for d in c.sources.values())
        ):  # fmt: skip
            raise ManifestError(f"{shown}: cipher: sources must give every split 64 lowercase hex digits")
        for name, x in (self.inputs or {}).items():
            if name not in self.splits or x.files < 1 or len(x.sha256) != 64 or not HEX.fullmatch(x.sha256) or len(x.layout) > 64:
                raise ManifestError(f"{shown}: source: inputs of {_shown_name(name)} must name a split, a layout, "
                                    "a count of files and 64 lowercase hex digits")  # fmt: skip
        for f in self.all_files():
            _check_file(shown, f)

    def all_files(self) -> list[FileInfo]:
        return [sh for s in self.splits.values() for sh in s.shards] + list(self.files)


def _check_split(shown: str, name: str, s: SplitInfo, classes: int) -> None:
    if not SPLIT_NAME.fullmatch(name) or name in (".", ".."):
        raise ManifestError(f"{shown}: split name {_shown_name(name)} is not a plain name (letters, digits, '.', '_', '-')")
    if not s.shards:
        raise ManifestError(f"{shown}: split {name}: no shards (ppencrypt leaves an empty split out)")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in s.per_class):
        raise ManifestError(f"{shown}: split {name}: per_class must be counts")
    if sum(sh.count for sh in s.shards) != s.count or sum(s.per_class) != s.count:
        raise ManifestError(f"{shown}: split {name}: counts do not add up")
    if len(s.per_class) != classes:
        raise ManifestError(f"{shown}: split {name}: per_class has {len(s.per_class)} entries for {classes} classes")
    first = 0
    for sh in s.shards:
        if sh.count < 1 or sh.first != first:
            raise ManifestError(f"{shown}: split {name}: shard {sh.path!r} does not continue the split (first {sh.first}, count {sh.count})")
        first += sh.count


def _check_augment(shown: str, a: ClientAugment, m: Manifest) -> None:
    """The client's augmentation as ppencrypt dataset --copies writes it: pptrain divides the
    split's count by the copies and turns its own augmentation off on the strength of it."""
    if a.split not in m.splits:
        raise ManifestError(f"{shown}: augment: split {_shown_name(a.split)} is not one of the dataset's")
    count = m.splits[a.split].count
    if not 1 <= a.copies <= count or count % a.copies:
        raise ManifestError(f"{shown}: augment: copies {a.copies} does not divide split {a.split}'s {count} images")
    if not 0 <= a.pad < min(m.height, m.width):
        raise ManifestError(f"{shown}: augment: pad {a.pad} must be in 0..{min(m.height, m.width) - 1} for {m.width}x{m.height} images")
    if not 0 <= a.seed < 1 << 63 or not 0 <= a.fill <= 255:
        raise ManifestError(f"{shown}: augment: seed must be a non-negative 63-bit integer and fill a uint8 value")
    if not all(isinstance(op, str) for op in a.ops) or len(set(a.ops)) != len(a.ops) or not set(a.ops) <= set(AUGMENT_OPS):
        raise ManifestError(f"{shown}: augment: ops must be distinct names among {', '.join(AUGMENT_OPS)}")


def _check_file(shown: str, f: FileInfo) -> None:
    parts = f.path.split("/")
    if f.path.startswith("/") or "\\" in f.path or any(p in ("", ".", "..") for p in parts) or CONTROL.search(f.path) or len(f.path) > 512:
        raise ManifestError(f"{shown}: file path {f.path!r} leaves the dataset or is not a plain relative path")
    if len(f.sha256) != 64 or not HEX.fullmatch(f.sha256) or f.bytes < 0:
        raise ManifestError(f"{shown}: file {f.path}: sha256 must be 64 lowercase hex digits and bytes a size")


def class_names_problem(classes: list) -> str | None:
    """What is wrong with class names from the server, None when nothing: they must be distinct
    strings of 1 to 256 characters, none holding a control character (pptrain's run record
    checks its copy of them with this too)."""
    if not all(isinstance(n, str) and 0 < len(n) <= 256 for n in classes) or len(set(classes)) != len(classes):
        return "classes must be distinct names of 1 to 256 characters"
    for name in classes:
        if CONTROL.search(name):
            return f"class name {control_problem(name)}"
    return None


def control_problem(value: str) -> str | None:
    """A string from the server that holds a control character (a terminal escape, a NUL),
    named safely to print: '<the string, escaped> holds a control character'; None for any other."""
    return f"{_shown_name(value)} holds a control character" if CONTROL.search(value) else None


def _shown_name(name: str) -> str:
    """A name from the manifest, safe to print: quoted, control characters escaped."""
    return ascii(name) if CONTROL.search(name) or not name.isprintable() else repr(name)


class _Reader:
    """Typed access to one JSON object, with errors that say which field is wrong."""

    KINDS = {"path": str, "sha256": str, "bytes": int, "count": int, "first": int}

    def __init__(self, doc, where: str):
        if not isinstance(doc, dict):
            raise ManifestError(f"{where}: expected an object")
        self.doc, self.where = doc, where

    def get(self, key: str, kind):
        if key not in self.doc:
            raise ManifestError(f"{self.where}: missing field {key!r}")
        value = self.doc[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))):
            raise ManifestError(f"{self.where}: field {key!r} has the wrong type")
        if isinstance(value, str) and (CONTROL.search(value) or len(value) > 4096):
            raise ManifestError(f"{self.where}: field {key!r} holds a control character or is too long")
        return value

    def sub(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), f"{self.where}: {key}")

    def item(self, doc) -> _Reader:
        return _Reader(doc, self.where)

    def fields(self, cls) -> dict:
        return {k: self.get(k, self.KINDS[k]) for k in cls.__dataclass_fields__}


def read_small(path: Path, missing: str) -> str:
    """A metadata file the server wrote: a regular file (not a link to /dev/zero or a FIFO
    that blocks), at most MAX_BYTES, UTF-8."""
    try:
        data = read_regular(path, limit=MAX_BYTES)
    except FileNotFoundError:
        raise ManifestError(missing) from None
    except FileProblem as e:
        raise ManifestError(f"{path}: {e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: cannot read ({e})") from None


def is_dataset(root: Path) -> bool:
    """Whether ``root`` holds a ppencrypt dataset's manifest (any version): what --overwrite
    may replace. A folder that merely holds a file named manifest.json is not one."""
    try:
        return names_a_dataset(read_small(root / MANIFEST, ""))
    except ManifestError:
        return False


def names_a_dataset(text: str) -> bool:
    """Whether a manifest.json's text is a ppencrypt dataset's (any version)."""
    try:
        doc = load_json(text, MANIFEST, ManifestError)
    except ManifestError:
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT
