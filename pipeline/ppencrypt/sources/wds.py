"""WebDataset shards as a source: ``*.tar`` files in a folder or under a URL prefix, or a
brace pattern (``s3://bucket/imagenet/train-{000000..001023}.tar``).

Members are grouped into samples as webdataset groups them: by key, the member's path up to
the first dot of its base name, consecutive members with one key making one sample. A sample's
image is its ``jpg``, ``jpeg``, ``png`` or ``webp`` member; its label the ``cls`` member (an
integer), else ``json`` (its ``label`` field), else ``txt`` (an integer or a class name).
Class names come from ``--classes FILE`` or a ``classes.txt`` beside the shards, else they are
the label numbers. Sample order: shards in sorted (or the pattern's) order, samples in tar
order. Member names stay in messages, never in the output.

A task is a piece of a shard, so that memory is bounded by a piece's images, not a shard's:

* a local shard: SAMPLES samples a task, like an ImageFolder's FILE_TASK files (small tasks
  keep the workers and the encrypting process busy together: 1,000 photos in 4 shards took
  1.28-1.4x an ImageFolder's time as 4 whole-shard tasks, 0.78x as 63-sample tasks). The
  loader finds where each piece starts by walking the shard's headers (sought past, never
  read: 33 us a member, 0.6 s a GB of 110 KB photos on a busy 2-core machine, 2 % of decoding
  them), as it hands out the tasks; a task seeks straight there.
* a shard at a URL, where that walk would read the shard: REMOTE_PIECE bytes a task, piece k
  holding the samples whose first header starts in bytes [k x P, (k + 1) x P) — a rule on
  the shard's bytes, so the pieces of any run are the same. The headers before a piece are read
  through (not kept), so a shard of n pieces is read (n + 1) / 2 times over: 1.5x for the
  common 130-250 MiB shards, none for smaller ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import BadImageError, SourceError
from .base import Chunk
from .fingerprint import place_listing
from .place import Place
from .streamed import Labels, Spec, chunk_of, decoded_or_bad, first_spec
from .tarstream import TarStream

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")  # in this order of preference
LABEL_EXTS = ("cls", "json", "txt")
MAX_IMAGE = 64 << 20  # bytes of an image member; a larger one is an error naming it
MAX_LABEL = 64 << 10  # bytes of a label member
SAMPLES = 64  # samples a task of a local shard
REMOTE_PIECE = 128 << 20  # bytes of a shard at a URL a task (about 1,200 photos of 110 KB: 180 MB decoded at 224 px)


def split_key(name: str) -> tuple[str, str]:
    """webdataset's rule: key = the path up to the first dot of the base name, ext = the rest."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1 :].lower())


def _wanted(name: str) -> int:
    ext = split_key(name)[1]
    return MAX_IMAGE if ext in IMAGE_EXTS else MAX_LABEL if ext in LABEL_EXTS else 0


def samples(place: Place, rel: str, lo: int = 0, hi: int | None = None, exact: bool = False):
    """(key, {ext: bytes}) of a shard's samples whose first header starts in bytes [lo, hi)
    (hi None: to the end), in tar order, streamed; ``exact``: a sample starts at ``lo``
    (sample_starts found it), so reading starts there."""
    shown = place.shown(rel)
    current = {"key": None, "inside": False}

    def wanted(offset: int, name: str) -> int:
        k = split_key(name)[0]
        if k != current["key"]:  # a sample starts here
            current["key"], current["inside"] = k, lo <= offset and (hi is None or offset < hi)
        return _wanted(name) if current["inside"] else 0

    with place.open(rel) as f:
        key, parts, inside = None, {}, False
        stream = TarStream(f, shown, seekable=not place.remote)
        if exact and lo:
            f.seek(lo)
            stream.pos = lo
        for offset, name, data in stream.members(wanted):
            k, ext = split_key(name)
            if k != key:
                if key is not None and inside:
                    yield key, parts
                if hi is not None and offset >= hi:
                    return  # the next piece's
                key, parts, inside = k, {}, lo <= offset
            if inside and data is not None:
                parts[ext] = data
        if key is not None and inside:
            yield key, parts


def sample_starts(place: Place, rel: str) -> list[int]:
    """Where each sample of a local shard starts (its first header), every header checked and
    the end-of-archive found, no member's data read."""
    starts, key = [], None
    with place.open(rel) as f:
        for offset, name, _ in TarStream(f, place.shown(rel), seekable=True).members(lambda offset, name: 0):
            k = split_key(name)[0]
            if k != key:
                starts.append(offset)
                key = k
    return starts


def _count_images(shard: tuple[Place, str]) -> int:
    """Samples of one shard that hold an image member: those that become images (or, undecodable,
    are skipped like an ImageFolder's bad file: --skip-bad)."""
    place, rel = shard
    count, key, has_image = 0, None, False
    with place.open(rel) as f:
        for _, name, _ in TarStream(f, place.shown(rel), seekable=not place.remote).members(lambda offset, name: 0):
            k, ext = split_key(name)
            if k != key:
                count += has_image
                key, has_image = k, False
            has_image = has_image or ext in IMAGE_EXTS
    return count + has_image


def image_of(parts: dict) -> bytes | None:
    return next((parts[e] for e in IMAGE_EXTS if e in parts), None)


def label_of(parts: dict, name: str, labels: Labels) -> int:
    if "cls" in parts:
        return labels(parts["cls"], name, number=True)
    if "json" in parts:
        try:
            doc = json.loads(parts["json"])
        except (ValueError, UnicodeDecodeError):
            raise SourceError(f"{name}: its json member is not JSON") from None
        if not isinstance(doc, dict) or "label" not in doc:
            raise SourceError(f"{name}: its json member has no 'label' field")
        return labels(doc["label"], name)
    if "txt" in parts:
        return labels(parts["txt"], name)
    raise SourceError(f"{name}: no label (a cls, json or txt member)")


@dataclass
class WdsTask:
    place: Place
    shard: str  # relative to place
    lo: int  # the piece: samples whose first header starts in bytes [lo, hi) (hi None: to the end)
    hi: int | None
    spec: Spec
    labels: Labels
    skip_bad: bool
    exact: bool = False  # a sample starts at lo (a local shard's piece)

    def describe(self) -> str:
        whole = self.lo == 0 and self.hi is None
        return self.place.shown(self.shard) + ("" if whole else f" bytes {self.lo}-{'end' if self.hi is None else self.hi - 1}")

    def run(self) -> Chunk:
        images, labels, bad = [], [], []
        shown = self.place.shown(self.shard)
        for key, parts in samples(self.place, self.shard, self.lo, self.hi, self.exact):
            name = f"{shown}:{key}"
            data = image_of(parts)
            if data is None:
                if not parts:
                    continue  # members no sample needs (a __key__-less extra), as webdataset drops them
                e = BadImageError(name, f"no image ({', '.join(IMAGE_EXTS)} member)")
                if not self.skip_bad:
                    raise e
                bad.append((e.name, e.reason))
                continue
            label = label_of(parts, name, self.labels)
            image = decoded_or_bad(data, name, self.spec, self.skip_bad, bad)
            if image is not None:
                images.append(image)
                labels.append(label)
        return chunk_of(images, labels, bad, self.spec.channels)


@dataclass
class WdsLoader:
    place: Place
    shards: list[str]
    sizes: list[int]  # bytes of each shard, as listed: how many pieces it is cut into
    spec: Spec
    labels: Labels
    skip_bad: bool
    parallel = True
    counted: int | None = None  # its images, once count_images has walked the shards (a tar does not say)

    @property
    def count(self) -> int | None:  # None: unknown until read
        return self.counted

    def count_images(self, pool) -> int:
        """The split's images, from the shards' member names (their data skipped, not decoded),
        a shard a task: what --copies must know before the first image is encrypted, for the
        draws of copy k are made for the split's count (augment.py)."""
        if self.counted is None:
            self.counted = sum(pool.map(_count_images, [(self.place, rel) for rel in self.shards], parallel=self.parallel))
        return self.counted

    @property
    def inputs(self) -> list[str]:
        return self.shards

    def listing(self):
        return place_listing(self.place, self.shards)

    def tasks(self):
        for rel, size in zip(self.shards, self.sizes):
            if not self.place.remote:
                starts = sample_starts(self.place, rel)[::SAMPLES]
                for k, lo in enumerate(starts):
                    hi = starts[k + 1] if k + 1 < len(starts) else None
                    yield WdsTask(self.place, rel, lo, hi, self.spec, self.labels, self.skip_bad, exact=True)
                continue
            pieces = max(1, -(-size // REMOTE_PIECE))
            for k in range(pieces):
                hi = (k + 1) * REMOTE_PIECE if k + 1 < pieces else None
                yield WdsTask(self.place, rel, k * REMOTE_PIECE, hi, self.spec, self.labels, self.skip_bad)


def probe(place: Place, shards: list[str], size: int | None, skip_bad: bool) -> Spec:
    """The spec from the first image that decodes (the first one, without --skip-bad)."""
    for rel in shards:
        for key, parts in samples(place, rel):
            data = image_of(parts)
            if data is not None:
                try:
                    return first_spec(data, f"{place.shown(rel)}:{key}", size)
                except BadImageError:
                    if not skip_bad:
                        raise
    raise SourceError(f"{place.shown()}: its shards hold no image ({', '.join(IMAGE_EXTS)} member)")
