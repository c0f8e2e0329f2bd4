"""Writing a dataset to OUT as it is made: each file goes to OUT as soon as it is final, a
journal (journal.py) records what went, and manifest.json goes last, the commit point.

    with open_output(out, overwrite, resume) as o:    # o.staging: the local folder writers write in
        o.publish("train/000000.tar")                  # final: hashed (and, for a URL, uploaded, then
        ...                                            #   deleted locally: a few shards staged at most)
        o.commit(manifest_bytes)

A local OUT is built in its hidden partial folder as before (atomic.py), which is the staging
folder itself; a URL gets a marker, then the journal, then each file (its name journaled
before its upload starts), then the manifest; the marker and journal are removed last. A
URL's files upload on one background thread while the driver encrypts the next shard
(lane.py): ``checkpoint`` journals a shard once its files are up, and waits for the shard
before, so a shard uploading and the next being written are all that is staged.

Replacing an earlier output at a URL deletes only what ppencrypt wrote there: the files the
old manifest lists, or those the journal of an interrupted job names — never other objects
under the prefix (a planted marker no longer wipes it, issue 22). Without ``resume`` an error
or an interrupt removes what this job wrote; with it, an interrupt keeps it for the next
``--resume``, and so does a kill (nothing runs then).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterator

from ..atomic import atomic_dir, stale, terminate_as_exit, write_file
from ..errors import ManifestError, OutputError, PipelineError, ShardError
from .checksum import sha256_file
from .files import FileProblem, inside, read_regular
from .journal import JOURNAL, MAX_BYTES, Journal
from .lane import Lane
from .location import Files, LocalDir, Location, tree_files
from .manifest import MANIFEST, FileInfo, Manifest, is_dataset, names_a_dataset
from .remote import MARKER, MARKER_TEXT, RemoteDir

OURS = (MARKER, JOURNAL)


def walk_order(paths) -> list[str]:
    """Relative paths in the order a sorted os.walk lists them (a folder's files before its
    subfolders): the order the manifest's ``files`` have always had."""
    return sorted(paths, key=lambda rel: [(1, p) for p in rel.split("/")[:-1]] + [(0, rel.rsplit("/", 1)[-1])])


class Output(ABC):
    staging: Path  # where writers write; a file there is final once published
    earlier: Journal | None = None  # with resume: the journal an interrupted job left (unverified)

    def __init__(self, shown: str):
        self.shown = shown
        self.journal = Journal()
        self.signer: Callable[[Journal], str] | None = None  # journal -> MAC (keys.journal_mac), when keyed
        self.published: dict[str, FileInfo] = {}

    def save_journal(self) -> None:
        self.journal.mac = self.signer(self.journal) if self.signer is not None else None
        self._store(JOURNAL, self.journal.to_bytes())

    def publish(self, rel: str, sha256: str | None = None) -> FileInfo:
        """The file ``rel`` under staging is final: its record (``sha256`` when the writer
        knows it already); a URL's is uploaded and removed locally."""
        path = self.staging / rel
        info = self._publish(rel, path, sha256)
        self.published[rel] = info
        return info

    def checkpoint(self, fn: Callable[[], None]) -> None:
        """``fn`` (a journal save) once every file published before it is at OUT."""
        fn()

    def settle(self) -> None:
        """Every file published so far is at OUT (a URL's uploads run in the background)."""

    def publish_rest(self) -> None:
        """Every file still only in staging (metadata written last, a storage without
        streaming), in walk order."""
        for rel, _ in tree_files(self.staging):
            if rel not in self.published and rel not in OURS:
                self.publish(rel)

    @abstractmethod
    def _publish(self, rel: str, path: Path, sha256: str | None) -> FileInfo: ...

    @abstractmethod
    def _store(self, rel: str, data: bytes) -> None: ...

    @abstractmethod
    def holds(self, f: FileInfo) -> bool:
        """Whether OUT holds ``f`` exactly (its size and SHA-256): a shard a resume may keep."""

    @abstractmethod
    def discard(self, keep: set[str]) -> None:
        """Remove what the interrupted job wrote but ``keep`` (with resume)."""

    @abstractmethod
    def commit(self, manifest: bytes) -> None:
        """manifest.json, the commit point; then the journal goes."""


# -- a local folder -----------------------------------------------------------------------------


def _journal_of(root: Path) -> Journal | None:
    try:
        return Journal.from_bytes(read_regular(root / JOURNAL, limit=MAX_BYTES), str(root / JOURNAL))
    except (FileNotFoundError, FileProblem, OutputError):
        return None


class LocalOutput(Output):
    def __init__(self, root: Path, staging: Path):
        super().__init__(str(root))
        self.staging = staging
        self.earlier = _journal_of(staging)

    def _publish(self, rel, path, sha256):
        return FileInfo(rel, sha256 or sha256_file(path), path.stat().st_size)

    def _store(self, rel, data):
        write_file(self.staging / rel, data, fsync=False)

    def holds(self, f):
        try:
            LocalDir(self.staging).check(f.path, f.bytes, f.sha256)
        except ShardError:
            return False
        return True

    def discard(self, keep):
        for rel, _ in LocalDir(self.staging).listing():
            if rel not in keep and rel not in OURS:
                (self.staging / rel).unlink()

    def commit(self, manifest):
        (self.staging / JOURNAL).unlink(missing_ok=True)
        write_file(self.staging / MANIFEST, manifest)


Check = Callable[[Journal, str], None]  # --resume: raises unless the journal is this job's (dataset.py)


@contextlib.contextmanager
def _local(loc: LocalDir, overwrite: bool, check: Check | None) -> Iterator[LocalOutput]:
    adopt = None
    if check is not None:
        found = next(((p, j) for p in stale(Path(loc.root)) if (j := _journal_of(p)) is not None), None)
        if found is not None:
            check(found[1], str(found[0] / JOURNAL))  # refused: the partial stays as it is
        adopt = (lambda p: found is not None and p == found[0])
    with atomic_dir(loc.root, overwrite, is_dataset, "a ppencrypt dataset", adopt) as tmp:
        yield LocalOutput(loc.root, tmp)


# -- a URL --------------------------------------------------------------------------------------


def _is_marker(data: bytes) -> bool:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == "ppencrypt-upload"


class RemoteOutput(Output):
    def __init__(self, loc: RemoteDir, staging: Path):
        super().__init__(loc.url)
        self.loc, self.staging = loc, staging
        self.old: set[str] = set()  # what an interrupted job wrote (its journal's names), still there
        self.lane = Lane()  # uploads and journal saves, in order, while the driver encrypts on

    def _get(self, rel: str, cap: int) -> bytes:
        try:
            return self.loc.read_small(rel, cap)
        except ManifestError as e:  # larger than a file of its kind: not ours
            raise OutputError(str(e)) from None

    def prepare(self, overwrite: bool, check: Check | None) -> None:
        """Check what the prefix holds, then take it: the marker, the old files removed (but,
        with ``check`` (--resume), those of the interrupted job whose journal it accepts)."""
        keys = {rel for rel, _ in self.loc.listing() or []}
        ours: set[str] = set()
        if MANIFEST in keys:
            if not overwrite:
                raise OutputError(f"{self.loc.url}: already holds a dataset (pass --overwrite to replace it)")
            text = self.loc.manifest_text()
            if not names_a_dataset(text):
                raise OutputError(f"{self.loc.url}: holds a {MANIFEST} that is not a ppencrypt dataset's; refusing to replace it")
            try:
                ours = {f.path for f in Manifest.from_json(text, self.loc.shown(MANIFEST)).all_files()}
            except ManifestError as e:
                raise OutputError(f"{e}; refusing to replace it (remove it yourself)") from None
        elif MARKER in keys:
            if not _is_marker(self._get(MARKER, 4096)):
                raise OutputError(f"{self.loc.shown(MARKER)}: not a marker ppencrypt wrote; refusing to write to {self.loc.url}")
            if JOURNAL in keys:
                self.earlier = Journal.from_bytes(self._get(JOURNAL, MAX_BYTES), self.loc.shown(JOURNAL))
                ours = set(self.earlier.written)
                if check is not None:
                    check(self.earlier, self.loc.shown(JOURNAL))  # refused: the prefix stays as it is
            others = sorted(keys - ours - set(OURS))
            if others:
                raise OutputError(f"{self.loc.url}: holds an interrupted upload's marker and files it did not write ({others[0]}, "
                                  f"{len(others)} in all); refusing to delete them (remove them yourself, or choose another prefix)")  # fmt: skip
        elif keys:
            raise OutputError(f"{self.loc.url}: holds other files and no ppencrypt dataset; refusing to write there (choose an empty prefix)")
        self.loc._put(MARKER, MARKER_TEXT)
        if MANIFEST in keys:
            self.loc._remove([MANIFEST])  # the old dataset ends here, before any of its files go
        if check is not None and self.earlier is not None:
            self.old = ours & keys
            return
        self.earlier = None
        self.loc._remove(sorted((ours & keys) - set(OURS)))
        self.loc._remove(sorted({JOURNAL} & keys))

    def _publish(self, rel, path, sha256):
        info = FileInfo(rel, sha256 or sha256_file(path), path.stat().st_size)

        def upload() -> None:
            self._name(rel)
            self.loc.put_file(rel, path)  # from disk, in parts: memory independent of the shard's size
            path.unlink()

        self.lane.submit(upload)  # while the next shard is encrypted (lane.py)
        return info

    def checkpoint(self, fn):
        self.lane.checkpoint(fn)

    def settle(self):
        self.lane.settle()

    def name(self, rels: list[str]) -> None:
        """Journal ``rels`` before another machine uploads them (--engine dask)."""
        def named() -> None:
            new = [rel for rel in rels if rel not in self.journal.written]
            if new:
                self.journal.written.extend(new)
                self.save_journal()

        self.lane.wait(self.lane.submit(named))

    def _name(self, rel: str) -> None:
        if rel not in self.journal.written:  # named before the upload starts: a removal finds it
            self.journal.written.append(rel)
            self.save_journal()

    def put(self, rel: str, data: bytes, sha256: str | None = None) -> FileInfo:
        self._name(rel)
        self.loc._put(rel, data)
        return FileInfo(rel, sha256 or hashlib.sha256(data).hexdigest(), len(data))

    def _store(self, rel, data):
        self.loc._put(rel, data)

    def holds(self, f):
        if f.path not in self.old:
            return False
        try:
            self.loc.check(f.path, f.bytes, f.sha256)
        except (ShardError, PipelineError):
            return False
        return True

    def discard(self, keep):
        self.loc._remove(sorted(self.old - keep - set(OURS)))
        self.journal.written = sorted(keep & self.old)  # this job's now: an error removes them too
        self.old = set()

    def commit(self, manifest):
        self.lane.settle()
        self.loc._put(MANIFEST, manifest)  # the commit point
        self.loc._remove([JOURNAL, MARKER], quietly=True)

    def abandon(self) -> None:
        """After an error: what this job wrote, then the journal and marker."""
        self.lane.stop()
        self.loc._remove(sorted(set(self.journal.written) - set(OURS)), quietly=True)
        self.loc._remove([JOURNAL, MARKER], quietly=True)


@contextlib.contextmanager
def _remote(loc: RemoteDir, overwrite: bool, check: Check | None) -> Iterator[RemoteOutput]:
    loc._writable()
    with terminate_as_exit(), tempfile.TemporaryDirectory(prefix="ppencrypt-upload-") as staging:
        o = RemoteOutput(loc, Path(staging))
        o.prepare(overwrite, check)  # before the work, not after it
        try:
            yield o
        except (KeyboardInterrupt, SystemExit):
            o.lane.stop()  # the upload under way ends before its file is removed, and before the journal is kept
            if check is None:
                o.abandon()
            raise
        except BaseException:
            o.abandon()
            raise
        finally:
            o.lane.stop()
            shutil.rmtree(staging, ignore_errors=True)


def open_output(loc: Location, overwrite: bool, check: Check | None = None) -> contextlib.AbstractContextManager[Output]:
    """Where a job writes OUT: a local folder or a URL. ``check`` (--resume) is given the
    journal an interrupted job left, if any, and raises unless it is this job's; the output's
    ``earlier`` is then that journal, its files still there, until ``discard``."""
    if isinstance(loc, RemoteDir):
        return _remote(loc, overwrite, check)
    return _local(loc, overwrite, check)


def publish_files(loc: Location, files: Files, manifest: bytes, overwrite: bool) -> None:
    """Write ``files`` and then ``manifest`` at ``loc`` (a copy: push, pull)."""
    with open_output(loc, overwrite) as o:
        for rel, get in files:
            if isinstance(o, RemoteOutput):
                o.published[rel] = o.put(rel, get())
            else:
                path = inside(o.staging, rel)  # rel: a checked manifest path, so this stays in staging
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(get())
        o.commit(manifest)
