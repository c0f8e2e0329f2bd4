"""Where a streamed source's files lie: a local folder or a URL prefix that fsspec reaches
(s3://, gs://, http(s)://), listed and opened the same way, so that the wds, parquet and
URL-ImageFolder sources never know which.

    place = Place.at("s3://bucket/imagenet")     # or a local folder, or file:///...
    place.files()                                 # {relative path: size}, every file below
    with place.open("train-000000.tar") as f: ... # a binary stream, read as it arrives

A Place pickles without its client (each worker process connects anew, as formats/remote.py's
RemoteDir does), so a task can carry it. Credentials are the backends' business; messages name
``shown`` (location.shown_url), never the URL's user info or query string.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import PipelineError, SourceError, StorageError
from ..formats.location import is_url, local_path, shown_url, url_scheme
from ..formats import remote
from ..formats.remote import EXTRAS, READ_ONLY, classify

CHUNK = 8 << 20  # bytes a remote read asks for at a time: a tar streams in 8 MiB ranged GETs
BRACES = re.compile(r"\{[^{}]*(?:\.\.|,)[^{}]*\}")  # {000..099} or {a,b}: a brace pattern, not a literal brace


# fsspec info fields that change when an object is rewritten, most specific first: GCS's
# generation, S3's and HTTP's ETag, GCS's md5, then modification times
VERSION_FIELDS = ("generation", "ETag", "etag", "md5Hash", "crc32c", "Content-MD5", "Digest", "mtime", "LastModified",
                  "last_modified", "updated", "Last-Modified")  # fmt: skip


def version(info: dict) -> str:
    """A file's version from its fsspec info: the first of VERSION_FIELDS it has ('' for none)."""
    return next((str(info[k]) for k in VERSION_FIELDS if info.get(k) not in (None, "")), "")


def is_pattern(src: str) -> bool:
    return bool(BRACES.search(src))


def expand(pattern: str) -> list[str]:
    """A brace pattern's names in the pattern's own order (braceexpand, as webdataset expands)."""
    from braceexpand import UnbalancedBracesError, braceexpand

    try:
        return list(braceexpand(pattern))
    except UnbalancedBracesError as e:
        raise SourceError(f"{shown_url(pattern)}: not a brace pattern ({e})") from None


@dataclass
class Place:
    root: str  # a local folder, or a URL without its trailing slash
    _fs: object = field(default=None, repr=False, compare=False)
    _pid: int = field(default=0, repr=False, compare=False)
    # a remote file's version as its listing (or info) gave it: fingerprint.py binds a resume to it
    _stamps: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def at(cls, src: str) -> Place:
        if is_url(src):
            return cls(src.rstrip("/"))
        return cls(str(local_path(src)))

    @property
    def remote(self) -> bool:
        return is_url(self.root)

    def __getstate__(self) -> dict:  # a worker process makes its own client
        return {"root": self.root}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"])

    def shown(self, rel: str = "") -> str:
        base = shown_url(self.root)
        return f"{base}/{rel}" if rel else base

    def child(self, rel: str) -> Place:
        return Place(f"{self.root}/{rel}" if self.remote else os.path.join(self.root, rel))

    @property
    def fs(self):
        if self._fs is None or self._pid != os.getpid():  # a forked worker must not share the parent's client
            self._fs, self._pid = _connect(url_scheme(self.root) or "", self.shown()), os.getpid()
        return self._fs

    def _storage_error(self, rel: str, e: Exception) -> SourceError:
        why = classify(e)
        return SourceError(f"{self.shown(rel)}: {why or ' '.join(str(e).split())[:200]}")

    def files(self) -> dict[str, int]:
        """Every file below, by '/'-separated relative path, with its size; hidden ones left out."""
        if not self.remote:
            root = Path(self.root)
            if not root.is_dir():
                raise SourceError(f"{self.root}: no such directory")
            found = {}
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(filenames):
                    path = Path(dirpath) / f
                    if not f.startswith(".") and path.is_file():
                        found[path.relative_to(root).as_posix()] = path.stat().st_size
            return found
        if url_scheme(self.root) in READ_ONLY:
            raise SourceError(f"{self.shown()}: an http(s):// source cannot be listed; give its shards as a brace pattern "
                              "(https://host/train-{000..099}.tar)")  # fmt: skip
        try:
            found = self.fs.find(self.root, detail=True)
        except Exception as e:  # the backends raise many types; classify names the 4xx ones
            raise self._storage_error("", e) from None
        base = self.fs._strip_protocol(self.root).rstrip("/") + "/"
        out = {}
        for p, info in sorted(found.items()):
            rel = p[len(base) :] if p.startswith(base) else None
            if rel and not p.endswith("/") and info.get("type", "file") == "file" and not any(s.startswith(".") for s in rel.split("/")):
                out[rel] = int(info.get("size") or 0)
                self._stamps[rel] = (out[rel], version(info))
        return out

    def size(self, rel: str) -> int | None:
        """The size of one file, None when it is not there."""
        if not self.remote:
            path = Path(self.root, rel)
            return path.stat().st_size if path.is_file() else None
        try:
            info = self.fs.info(self._url(rel))
            self._stamps[rel] = (int(info.get("size") or 0), version(info))
            return self._stamps[rel][0]
        except FileNotFoundError:
            return None
        except Exception as e:
            if url_scheme(self.root) in READ_ONLY and classify(e) is not None:
                return None
            raise self._storage_error(rel, e) from None

    def stamp(self, rel: str) -> tuple[int, str]:
        """(size, version) of one file, without reading it: a remote file's as listed (its
        ETag, generation or modification time: the first the backend gives, VERSION_FIELDS),
        a local file's size and mtime in nanoseconds."""
        if not self.remote:
            try:
                st = os.stat(os.path.join(self.root, rel))
            except OSError as e:
                raise SourceError(f"{self.shown(rel)}: cannot read ({e.strerror})") from None
            return st.st_size, str(st.st_mtime_ns)
        if rel not in self._stamps:
            self.size(rel)
        return self._stamps.get(rel, (0, ""))

    def _url(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def open(self, rel: str) -> BinaryIO:
        """``rel`` open for reading, streamed (no whole-file download)."""
        if not self.remote:
            try:
                return open(os.path.join(self.root, rel), "rb")
            except OSError as e:
                raise SourceError(f"{self.shown(rel)}: cannot read ({e.strerror})") from None
        seekable = url_scheme(self.root) not in READ_ONLY  # an HTTP stream is read from its start again
        return Guarded(lambda: self._open_remote(rel), lambda e: self._storage_error(rel, e), seekable)

    def _open_remote(self, rel: str):
        try:
            if url_scheme(self.root) in READ_ONLY:
                return self.fs.open(self._url(rel), "rb", block_size=0, headers={"Accept-Encoding": "identity"})
            return self.fs.open(self._url(rel), "rb", block_size=CHUNK, cache_type="readahead")
        except Exception as e:
            raise self._storage_error(rel, e) from None

    def read_small(self, rel: str, limit: int) -> bytes:
        """A small file (classes.txt), at most ``limit`` bytes, else SourceError."""
        with self.open(rel) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise SourceError(f"{self.shown(rel)}: more than {limit} bytes")
        return data


class Guarded:
    """A remote file read through transfer errors: a transient one (a connection cut, a payload
    cut short, a 5xx: remote.classify says which) reopens the file where the read had got to
    (sought, or read through where the server cannot seek) and tries again, TRIES reads in all;
    then, or at once for a 4xx, a SourceError naming the file: one line, exit 1."""

    def __init__(self, opener, error, seekable: bool):
        self._opener, self._error, self._seekable = opener, error, seekable
        self._f, self._pos = opener(), 0

    def _again(self, fn):
        for attempt in range(remote.TRIES):
            try:
                if attempt:
                    time.sleep(remote.BACKOFF * 2 ** (attempt - 1))
                    self._reopen()
                return fn(self._f)
            except PipelineError:
                raise
            except Exception as e:  # aiohttp, botocore, gcsfs: many types
                if classify(e) is not None or attempt + 1 == remote.TRIES:
                    raise self._error(e) from None

    def _reopen(self) -> None:
        self.close()
        self._f = self._opener()
        if self._pos and self._seekable:
            self._f.seek(self._pos)
            return
        left = self._pos
        while left:
            piece = self._f.read(min(left, CHUNK))
            if not piece:
                raise EOFError("shorter than before")
            left -= len(piece)

    def read(self, n: int = -1) -> bytes:
        data = self._again(lambda f: f.read(n))
        self._pos += len(data)
        return data

    def readinto(self, b) -> int:
        got = self._again(lambda f: f.readinto(b))
        self._pos += got or 0
        return got

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._again(lambda f: f.seek(offset, whence))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __getattr__(self, name):  # tell, seekable, size, closed, ...
        return getattr(self._f, name)

    def __enter__(self) -> Guarded:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._f.close()
        except Exception:  # closing a stream cut short: nothing more to say than the error already raised
            pass


def _connect(protocol: str, shown: str):
    import fsspec

    try:
        return fsspec.filesystem(protocol, skip_instance_cache=True)
    except ImportError:
        extra = EXTRAS.get(protocol, protocol)
        raise StorageError(f"{shown}: {protocol}:// URLs need the '{extra}' extra: pip install 'ppencrypt[{extra}]'") from None
    except ValueError:
        raise StorageError(f"{shown}: unknown URL scheme {protocol!r}") from None
