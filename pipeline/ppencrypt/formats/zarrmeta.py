"""The zarr metadata ppencrypt writes, and nothing else: checked before zarr decodes a chunk.

zarr applies whatever codecs an array's metadata names, and numcodecs has codecs that run code
(``pickle`` unpickles; a version 2 ``.zarray`` may list it among its filters). A dataset folder
comes back from the server, so before zarr opens a split we read each ``zarr.json`` ourselves
and accept only the exact structure our writer produces: zarr format 3 (a v2 ``.zarray`` is
never consulted), the group and array nodes of the layout, uint8 images and int64 labels of the
manifest's shape, the regular chunk grid of its shards, and the codecs ``sharding_indexed``,
``bytes``, ``zstd`` and ``crc32c`` only.
"""

from __future__ import annotations

from ..errors import ShardError
from .jsonsafe import load_json

CODECS = ("sharding_indexed", "bytes", "zstd", "crc32c")  # what zarrstore.py writes


class Meta:
    """One zarr.json document, with errors that name its file."""

    def __init__(self, text: str, shown: str):
        self.shown = shown
        doc = load_json(text, shown, ShardError)
        if not isinstance(doc, dict):
            raise ShardError(f"{shown}: not a zarr metadata object")
        self.doc = doc

    def fail(self, what: str) -> ShardError:
        return ShardError(f"{self.shown}: {what}; not the zarr metadata ppencrypt writes")

    def node(self, kind: str) -> None:
        if self.doc.get("zarr_format") != 3:
            raise self.fail("not zarr format 3")
        if self.doc.get("node_type") != kind:
            raise self.fail(f"not a zarr {kind}")
        if self.doc.get("storage_transformers", []) != [] or self.doc.get("consolidated_metadata") is not None:
            raise self.fail("storage transformers or consolidated metadata")
        if not isinstance(self.doc.get("attributes", {}), dict):
            raise self.fail("attributes are not an object")


def check_group(text: str, shown: str) -> None:
    Meta(text, shown).node("group")


def check_array(text: str, shown: str, dtype: str, shape: list[int]) -> int:
    """An array of ``dtype`` and ``shape`` in chunks of S samples along the first axis (the
    whole extent of the others), with only our codecs. Returns S, the samples per shard."""
    m = Meta(text, shown)
    try:
        return _check_array(m, dtype, shape)
    except (AttributeError, TypeError, KeyError, IndexError):  # a value of another JSON type somewhere
        raise m.fail("malformed") from None


def _check_array(m: Meta, dtype: str, shape: list[int]) -> int:
    m.node("array")
    d = m.doc
    names = _codec_names(d.get("codecs"), m)
    refused = [n for n in names if n not in CODECS]
    if refused:
        raise m.fail(f"codec {refused[0]!r} is refused (ppencrypt decodes only {', '.join(CODECS)})")
    if d.get("data_type") != dtype or d.get("shape") != shape:
        raise m.fail(f"a {d.get('data_type')!r} array of shape {d.get('shape')}, the manifest needs {dtype} {shape}")
    grid = d.get("chunk_grid")
    chunk = grid.get("configuration", {}).get("chunk_shape") if isinstance(grid, dict) and isinstance(grid.get("configuration"), dict) else None
    shard = chunk[0] if isinstance(chunk, list) and chunk else None
    if not (isinstance(shard, int) and not isinstance(shard, bool) and shard >= 1) or grid != {
            "name": "regular", "configuration": {"chunk_shape": [shard, *shape[1:]]}}:  # fmt: skip
        raise m.fail(f"chunk grid {grid!r} does not cut the array into shards along the samples")
    if d.get("chunk_key_encoding") != {"name": "default", "configuration": {"separator": "/"}}:
        raise m.fail("another chunk key encoding")
    if not isinstance(d.get("fill_value"), int) or isinstance(d.get("fill_value"), bool):
        raise m.fail("a fill value that is not an integer")
    codecs = d["codecs"]
    if codecs[0].get("name") != "sharding_indexed":
        _check_plain_codecs(codecs, m)
        return shard
    if len(codecs) != 1:
        raise m.fail("codecs after the sharding codec")
    conf = codecs[0].get("configuration")
    if not isinstance(conf, dict):
        raise m.fail("a sharding codec without configuration")
    inner = conf.get("chunk_shape")
    if not (isinstance(inner, list) and len(inner) == len(shape) and inner[1:] == shape[1:] and isinstance(inner[0], int)
            and not isinstance(inner[0], bool) and 1 <= inner[0] <= shard and shard % inner[0] == 0):  # fmt: skip
        raise m.fail(f"inner chunks {inner!r} do not tile the shards of {shard}")
    _check_plain_codecs(conf.get("codecs"), m)
    index = conf.get("index_codecs")
    if not isinstance(index, list) or [c.get("name") for c in index if isinstance(c, dict)] != ["bytes", "crc32c"]:
        raise m.fail("another shard index encoding")
    if conf.get("index_location", "end") not in ("start", "end"):
        raise m.fail("another shard index location")
    return shard


def _codec_names(codecs, m: Meta) -> list[str]:
    """Every codec name, nested ones (inside sharding) included."""
    if not isinstance(codecs, list) or not codecs:
        raise m.fail("no codec list")
    names = []
    for c in codecs:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise m.fail("a codec that is not an object with a name")
        names.append(c["name"])
        conf = c.get("configuration")
        if isinstance(conf, dict):
            for key in ("codecs", "index_codecs"):
                if key in conf:
                    names += _codec_names(conf[key], m)
    return names


def _check_plain_codecs(codecs, m: Meta) -> None:
    """``bytes`` (little endian), then optionally ``zstd`` with an integer level."""
    if not isinstance(codecs, list) or not codecs or codecs[0].get("name") != "bytes":
        raise m.fail("chunks that do not start with the bytes codec")
    conf = codecs[0].get("configuration", {})
    if not isinstance(conf, dict) or conf.get("endian", "little") != "little":
        raise m.fail("big-endian chunks")
    rest = codecs[1:]
    if rest and (len(rest) != 1 or rest[0].get("name") != "zstd"):
        raise m.fail("compressors other than one zstd")
