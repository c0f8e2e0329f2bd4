"""An output's journal: what a job has written to OUT so far, kept at OUT beside the upload
marker (``.ppencrypt-journal.json``) until manifest.json commits the dataset.

It serves two readers:

* the next write to OUT, which removes an interrupted output: only the files the journal
  says were written (``written``: each name is recorded *before* its upload starts), never
  anything else under the prefix;
* ``ppencrypt dataset --resume`` (dataset.py), which keeps the shards the journal lists as
  finished, each checked against its size and SHA-256, and continues after the last one with
  the same dataset id and salt. The journal is server-side data, so a resumed job first checks
  its MAC (a subkey of the master key, keys/mac.py ``journal_mac``) and that it binds the same
  key id, SRC, OUT and options: a journal the key did not write, or one of another job, is
  refused, so that no one can make the client skip work or reuse a salt on other data.

No key material: ids, the salt (public, as in the manifest), names, sizes, hashes, counts,
where the input continues after each shard, and each shard's keyed source digest (d_k of
keys.SourceDigest).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..errors import OutputError
from .jsonsafe import load_json
from .manifest import FileInfo, ShardInfo, canonical

JOURNAL = ".ppencrypt-journal.json"
FORMAT = "ppencrypt-journal"
VERSION = 1
MAX_BYTES = 64 << 20  # ~150,000 shards; bigger is the server's memory bomb


@dataclass(kw_only=True)
class ShardEntry:
    """One finished shard: its record, every file that became final with it (the shard, a
    zarr label chunk), its samples per class, the keyed digest of its plain images, and where
    the input continues after it (``at``: copy, task, offset into the task, draw position, bad
    files before that task)."""

    shard: ShardInfo
    files: list[FileInfo]
    per_class: list[int]
    digest: str | None
    at: dict[str, int]


@dataclass(kw_only=True)
class Journal:
    binding: dict = field(default_factory=dict)  # key id, SRC, OUT, options: what a resume must match
    dataset_id: str | None = None
    salt: str | None = None
    splits: dict[str, list[ShardEntry]] = field(default_factory=dict)  # finished shards, per split in order
    closed: dict[str, int] = field(default_factory=dict)  # splits whose every shard is finished: their bad files
    written: list[str] = field(default_factory=list)  # every file put at OUT (or about to be)
    mac: str | None = None

    def document(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "binding": self.binding,
            "dataset_id": self.dataset_id,
            "salt": self.salt,
            "splits": {k: [asdict(e) for e in v] for k, v in self.splits.items()},
            "closed": self.closed,
            "written": self.written,
            "mac": self.mac,
        }

    def signing_bytes(self) -> bytes:
        return canonical(self.document())

    def to_bytes(self) -> bytes:
        return json.dumps(self.document(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, shown: str) -> Journal:
        """The journal as read. Only ``written`` is checked here (a list of names: what a
        removal may delete); the rest is trusted only after its MAC checks (dataset.py)."""
        if len(data) > MAX_BYTES:
            raise OutputError(f"{shown}: more than the {MAX_BYTES} bytes a journal may have")
        try:
            doc = load_json(data.decode("utf-8"), shown, OutputError)
        except UnicodeDecodeError:
            raise OutputError(f"{shown}: not UTF-8") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise OutputError(f"{shown}: not a ppencrypt journal (version {VERSION})")
        written = doc.get("written")
        if not isinstance(written, list) or not all(isinstance(w, str) for w in written):
            raise OutputError(f"{shown}: field 'written' is not a list of names")
        try:
            splits = {
                name: [ShardEntry(shard=ShardInfo(**e["shard"]), files=[FileInfo(**f) for f in e["files"]], per_class=e["per_class"],
                                  digest=e["digest"], at=e["at"]) for e in entries]  # fmt: skip
                for name, entries in doc["splits"].items()
            }
            return cls(binding=doc["binding"], dataset_id=doc["dataset_id"], salt=doc["salt"], splits=splits,
                       closed=doc["closed"], written=written, mac=doc["mac"])  # fmt: skip
        except (KeyError, TypeError, AttributeError):
            raise OutputError(f"{shown}: not a ppencrypt journal (a field is missing or of the wrong type)") from None
