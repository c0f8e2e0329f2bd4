"""Datasets at URLs: s3:// (s3fs), gs:// (gcsfs), http:// and https:// (read only), through
fsspec, the optional extras ``ppencrypt[s3]``, ``[gcs]``, ``[http]``.

The server may have written every byte behind the URL, so a remote file is held to the same
rules as a local one (files.py): its size is known before it is downloaded — the manifest's
``bytes``, checked against the size the storage announces (an S3/GCS object's size, HTTP's
Content-Length), and no more than that many bytes are ever read — and its SHA-256 is computed
as it arrives and checked before a byte is parsed. A name from the manifest becomes a key
under the URL, never a local path; only plain names (letters, digits, ``._-``) are used.

Memory and time are bounded whatever the server sends (download.py): one GET per file, read
a piece at a time into a temporary file (or the cache; a small file into a buffer) while it is
hashed, its bytes read back only once they matched; a per-file deadline and a minimum rate; no
redirects. Files fetched ahead hold at most AHEAD_BYTES (or one file) in memory together.

Failures: a truncated or corrupted transfer, a 5xx, 408 or 429 answer, a reset connection or a
timeout is tried again (TRIES in all, waiting BACKOFF seconds, doubled each time), then reported
in one line naming the file; another 4xx answer (missing file or bucket, access denied), a
redirect, or a server under the minimum rate or past the deadline is reported at once — a 404
after a look at the bucket, since gcsfs says "not found" for a missing object and a missing
bucket alike. The backends retry some errors underneath (botocore, s3fs,
gcsfs); these are on top.

Credentials are the backends' business — AWS_* variables and ~/.aws for s3fs (and
AWS_ENDPOINT_URL for an S3-compatible server), Google's application default credentials for
gcsfs (STORAGE_EMULATOR_HOST for an emulator, FSSPEC_GCS_TOKEN=anon for none), fsspec's
configuration files — never an option of ours, never in a message. Credentials a user puts
in the URL itself (``https://user:password@host/ds?token=…``) are sent with every request (the
query string after each file's path) and never shown: messages name ``location.shown_url``.

Writing (``ppencrypt dataset SRC URL``, ``push``) is output.py's: the files are uploaded to
their final keys and manifest.json last, the commit point, between a marker object
``.ppencrypt-upload`` and a journal of what was written (journal.py). This module provides the
uploads and removals it uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from ..errors import ManifestError, OutputError, PipelineError, ShardError, StorageError
from .download import REDIRECTED, Damaged, Limits, Oversized, Refused, receive, s3_options
from .location import Location, shown_url, url_scheme, without_credentials
from .manifest import MANIFEST, MAX_BYTES

EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}
READ_ONLY = ("http", "https")
CREDENTIALS = {  # where each backend looks, for the message that says access was denied
    "s3": "s3fs uses the AWS_* variables or ~/.aws",
    "s3a": "s3fs uses the AWS_* variables or ~/.aws",
    "gs": "gcsfs uses Google's application default credentials",
    "gcs": "gcsfs uses Google's application default credentials",
}
TRIES = 4  # attempts per file before a transient failure is reported
BACKOFF = 0.25  # seconds before the second attempt, doubled before each further one
PARALLEL = 4  # files a whole-split read downloads at once
AHEAD_BYTES = 256 << 20  # bytes of files fetched ahead and not yet used, at most (one file, if larger)
# A download no larger than this is received in memory, a larger one on disk. Bounded either
# way: read_ahead counts a file's bytes from the moment its download starts (AHEAD_BYTES)
SPOOL_IN_MEMORY = 64 << 20
# put_file's part size and parts in flight per backend: the memory an upload holds. s3fs reads
# a file below two parts whole and otherwise sends up to 10 parts of 50 MiB at once by default.
UPLOAD_PART = 16 << 20
UPLOAD_OPTIONS = {"s3": {"chunksize": UPLOAD_PART, "max_concurrency": 2}, "gcs": {"chunksize": UPLOAD_PART}}
MARKER = ".ppencrypt-upload"  # an upload in progress, or interrupted
MARKER_TEXT = json.dumps({"format": "ppencrypt-upload", "note": "an upload to this prefix is in progress or was interrupted; "
                          "`ppencrypt dataset` or `ppencrypt push` to this prefix replaces it"}).encode()  # fmt: skip
NAME = re.compile(r"[A-Za-z0-9_.-]+")
T = TypeVar("T")


@dataclass(frozen=True)
class Unavailable:
    """A 4xx answer: trying again would not help. ``kind``: missing, denied, bucket, refused."""

    kind: str
    what: str

    def __str__(self) -> str:
        return self.what


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    """An exception and its causes (backends wrap aiohttp's and botocore's errors)."""
    for _ in range(8):
        if e is None:
            return
        yield e
        e = e.__cause__ or e.__context__


def _status(e: BaseException) -> int | None:
    for x in _chain(e):
        if isinstance(getattr(x, "status", None), int):  # aiohttp.ClientResponseError
            return x.status
        if type(x).__name__ == "HttpError" and isinstance(getattr(x, "code", None), int):  # gcsfs.retry.HttpError
            return x.code
        response = getattr(x, "response", None)  # botocore.exceptions.ClientError
        if isinstance(response, dict) and isinstance(response.get("ResponseMetadata", {}).get("HTTPStatusCode"), int):
            return response["ResponseMetadata"]["HTTPStatusCode"]
    return None


def _code(e: BaseException) -> str | None:
    for x in _chain(e):
        response = getattr(x, "response", None)
        if isinstance(response, dict) and isinstance(response.get("Error"), dict):
            return response["Error"].get("Code")
    return None


def _forbidden(e: BaseException) -> bool:
    """gcsfs's 403: a plain OSError("Forbidden: <path>\\n<message>"), no status attached."""
    return any(type(x) is OSError and str(x).startswith("Forbidden: ") for x in _chain(e))


def classify(e: Exception) -> Unavailable | None:
    """An error of a backend as a 4xx that no retry mends, or None: worth another try."""
    status = _status(e)
    if isinstance(e, PermissionError) or status in (401, 403) or _forbidden(e):
        return Unavailable("denied", "access denied")
    if any(type(x).__name__ == "NoCredentialsError" for x in _chain(e)):  # botocore's
        return Unavailable("denied", "no credentials found")
    if status is not None and (status >= 500 or status in (408, 429)):  # a timeout, too many requests: later
        return None
    if status is not None and 300 <= status < 400:  # botocore's answer to a redirect it was not let follow
        return Unavailable("refused", REDIRECTED.format(status=status))
    if _code(e) == "NoSuchBucket":
        return Unavailable("bucket", "no such bucket")
    if isinstance(e, FileNotFoundError) and status is None and isinstance(e.__cause__, Exception):
        return classify(e.__cause__)  # fsspec's HTTP backend says "not found" for a refused connection too
    if isinstance(e, FileNotFoundError) or status == 404:
        return Unavailable("missing", "missing")
    if status is not None and 400 <= status < 500:
        return Unavailable("refused", f"refused by the server (HTTP {status})")
    return None


def _brief(e: Exception) -> str:
    """A transient failure in a few words, on one line."""
    status = _status(e)
    if isinstance(e, Damaged):
        return str(e)
    if status is not None:
        return f"server error (HTTP {status})"
    text = without_credentials(" ".join(str(e).split()))  # a backend's message may quote the URL it asked
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


class RemoteDir(Location):
    local = False
    parallel = PARALLEL
    ahead_bytes = AHEAD_BYTES

    def __init__(self, url: str, cache=None):
        self.protocol = url_scheme(url) or ""
        # Requests go to the URL as given, user info and an HTTP query string included (a token
        # the user chose to put there, sent with every file); messages and records name it
        # without them (shown_url).
        base, query = url.split("#", 1)[0].partition("?")[::2] if self.protocol in READ_ONLY else (url, "")
        self._base, self._query = base.rstrip("/"), f"?{query}" if query else ""
        self.url = self.root = shown_url(self._base)
        self.cache = cache  # cache.ShardCache or None
        self.limits = Limits.from_env()  # per file: a deadline, a minimum rate (download.py)
        self._fs, self._pid, self._sizes = None, None, None
        self._locks: dict[str, threading.Lock] = {}  # per file, while it is fetched into the cache
        self._locks_lock, self._locks_pid = threading.Lock(), os.getpid()

    def __repr__(self) -> str:
        return f"RemoteDir({self.url!r})"

    def __getstate__(self) -> dict:  # to DataLoader workers: each process makes its own client
        return {k: v for k, v in self.__dict__.items() if k not in ("_fs", "_pid", "_sizes", "_locks", "_locks_lock", "_locks_pid")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _fs=None, _pid=None, _sizes=None, _locks={}, _locks_lock=threading.Lock(), _locks_pid=os.getpid())

    @property
    def fs(self):
        if self._fs is None or self._pid != os.getpid():  # a forked worker must not share the parent's client
            self._fs, self._pid = self._connect(), os.getpid()
        return self._fs

    def _connect(self):
        import fsspec

        options: dict = {"skip_instance_cache": True}  # a fresh client sees the environment as it is now
        if self.protocol in READ_ONLY:
            import aiohttp

            # download.py bounds each file's time; these bound each wait of the socket. No
            # decompression: ppencrypt asks for identity, so a compressed answer is the
            # server's choice, hashed as it came (and refused), never inflated
            options["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60),
                                        "auto_decompress": False}  # fmt: skip
        if self.protocol in ("s3", "s3a"):
            options.update(s3_options())  # no redirects (download.py)
        try:
            return fsspec.filesystem(self.protocol, **options)
        except ImportError:
            extra = EXTRAS.get(self.protocol, self.protocol)
            raise StorageError(f"{self.url}: {self.protocol}:// URLs need the '{extra}' extra: pip install 'ppencrypt[{extra}]'") from None
        except ValueError:
            raise StorageError(f"{self.url}: unknown URL scheme {self.protocol!r} (ppencrypt reads folders, s3://, gs://, http(s)://)") from None

    def shown(self, rel: str = "") -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def _url(self, rel: str) -> str:
        parts = rel.split("/")
        if not all(NAME.fullmatch(p) and p not in (".", "..") for p in parts):
            raise ShardError(f"{self.shown(rel)}: not a name ppencrypt writes (letters, digits, '._-'); refused for a URL")
        return f"{self._base}/{rel}{self._query}"

    # -- reading ---------------------------------------------------------------------------

    def _attempts(self, rel: str, action: Callable[[], T], missing: PipelineError | None = None) -> T:
        """``action`` tried up to TRIES times while it fails transiently; a 4xx at once (a
        missing file as ``missing``, when given)."""
        last = ""
        for attempt in range(TRIES):
            if attempt:
                time.sleep(BACKOFF * 2 ** (attempt - 1))
            try:
                return action()
            except PipelineError:
                raise
            except Exception as e:  # the backends raise many types; classify sorts them
                unavailable = classify(e)
                if unavailable is not None and unavailable.kind == "missing" and self._no_bucket():
                    unavailable = Unavailable("bucket", "no such bucket")
                if unavailable is not None:
                    raise (missing if missing is not None and unavailable.kind == "missing" else self._refusal(rel, unavailable)) from None
                last = _brief(e)
        raise ShardError(f"{self.shown(rel)}: {last} ({TRIES} tries)")

    def _no_bucket(self) -> bool:
        """After a 404: whether the bucket itself is missing (gcsfs says only "not found", for an
        object, a listing or a bucket alike). Anything but a 404 for the bucket says no."""
        if self.protocol in READ_ONLY:
            return False
        bucket = self.fs._strip_protocol(self._base).split("/", 1)[0]
        try:
            self.fs.info(bucket)
        except FileNotFoundError:
            return True
        except Exception:  # not allowed to look at the bucket, say: the file is what is missing
            return False
        return False

    def _refusal(self, rel: str, u: Unavailable) -> PipelineError:
        if u.kind == "missing":
            return ShardError(f"{self.shown(rel)}: missing")
        if u.kind == "bucket":
            return StorageError(f"{self.url}: no such bucket")
        hint = f" ({CREDENTIALS[self.protocol]})" if u.kind == "denied" and self.protocol in CREDENTIALS else ""
        return StorageError(f"{self.shown(rel)}: {u}{hint}")

    def _receive(self, rel: str, expect: int | None, cap: int, sink=None, hasher=None) -> int:
        """One GET of the file, at most ``cap`` + 1 bytes of it into ``hasher`` and ``sink``
        (download.py: memory, time and redirects bounded); the count of bytes read."""
        try:
            return receive(self.fs, self.protocol, self._url(rel), expect=expect, cap=cap, limits=self.limits, sink=sink, hasher=hasher)
        except Refused as e:
            raise ShardError(f"{self.shown(rel)}: {e}") from None
        except Oversized as e:
            raise ManifestError(f"{self.shown(rel)}: {e.announced} bytes, more than the {cap} a file of this kind may have") from None

    def _verified(self, rel: str, size: int, sha256: str, sink=None) -> None:
        """One try at the file, its bytes into ``sink`` as they arrive; Damaged unless they
        are the recorded ones."""
        h = hashlib.sha256()
        got = self._receive(rel, size, size, sink, h)
        if got != size:
            raise Damaged(f"{got} bytes arrived, the manifest says {size}" if got < size else "more bytes than the manifest says")
        if h.hexdigest() != sha256:
            raise Damaged("checksum mismatch (the file was altered or damaged)")

    def read_small(self, rel: str, cap: int, missing: PipelineError | None = None) -> bytes:
        """A small file of no recorded size or hash (the manifest, the upload marker, the
        journal): one GET of at most ``cap`` + 1 bytes, in memory; more is a ManifestError."""

        def whole() -> bytes:
            buffer = bytearray()  # bounded: at most cap + 1 bytes are read
            self._receive(rel, None, cap, buffer.extend)
            return bytes(buffer)

        data = self._attempts(rel, whole, missing)
        if len(data) > cap:
            raise ManifestError(f"{self.shown(rel)}: more than the {cap} bytes a file of this kind may have")
        return data

    def manifest_text(self) -> str:
        data = self.read_small(MANIFEST, MAX_BYTES, ManifestError(f"{self.url}: not a ppencrypt dataset (no {MANIFEST})"))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ManifestError(f"{self.shown(MANIFEST)}: cannot read ({e})") from None

    def read(self, rel: str, size: int, sha256: str) -> bytes:
        if self.cache is None or size > self.cache.limit:
            return self._attempts(rel, lambda: self._spooled(rel, size, sha256))
        with self._fetching(sha256):  # a file read ahead twice (a short pass) is downloaded once
            data = self.cache.get(sha256, size)
            if data is None and size <= SPOOL_IN_MEMORY:  # received in memory, then kept (no read back)
                data = self._attempts(rel, lambda: self._spooled(rel, size, sha256))
                self.cache.put(sha256, data)
            elif data is None:
                data = self._attempts(rel, lambda: self._cached(rel, size, sha256))
        return data

    def _spooled(self, rel: str, size: int, sha256: str) -> bytes:
        """The file downloaded to an unnamed temporary file (in memory when small), its bytes
        read back once they checked: what a server sends never piles up in memory."""
        if size <= SPOOL_IN_MEMORY:
            buffer = bytearray(size + 1)  # the recorded size, and the one byte that would be too many
            self._verified(rel, size, sha256, _filling(memoryview(buffer)))
            return bytes(memoryview(buffer)[:size])
        try:
            spool = tempfile.TemporaryFile(prefix="ppencrypt-download-")
        except OSError as e:
            raise StorageError(f"{tempfile.gettempdir()}: cannot make a temporary file for a download ({e.strerror or e})") from None
        with spool:
            self._verified(rel, size, sha256, _writes(spool, tempfile.gettempdir()))
            spool.seek(0)
            return spool.read(size)

    def _cached(self, rel: str, size: int, sha256: str) -> bytes:
        """The file downloaded straight into the cache, kept there once it checked."""
        with self.cache.incoming(sha256, size) as f:
            self._verified(rel, size, sha256, _writes(f, self.cache.root))
            f.seek(0)
            return f.read(size)

    def _fetching(self, sha256: str) -> threading.Lock:
        if self._locks_pid != os.getpid():  # a forked worker starts with no lock held
            self._locks, self._locks_lock, self._locks_pid = {}, threading.Lock(), os.getpid()
        with self._locks_lock:
            return self._locks.setdefault(sha256, threading.Lock())

    def check(self, rel: str, size: int, sha256: str) -> None:
        self._attempts(rel, lambda: self._verified(rel, size, sha256))  # from the storage, never the cache; hashed, not kept

    def _listed_sizes(self) -> dict[str, int]:
        if self._sizes is None:
            found = self._attempts("", lambda: self.fs.find(self._base, detail=True))
            base = self.fs._strip_protocol(self._base).rstrip("/") + "/"
            self._sizes = {p[len(base) :]: int(info.get("size") or 0) for p, info in found.items()
                           if p.startswith(base) and not p.endswith("/")}  # fmt: skip
        return self._sizes

    def listing(self) -> list[tuple[str, bool]] | None:
        if self.protocol in READ_ONLY:
            return None  # HTTP has no listing (an index page is the server's say, not a list)
        self._sizes = None
        return [(rel, True) for rel in sorted(self._listed_sizes())]

    def preflight(self, rel: str, size: int) -> None:
        if self.protocol in READ_ONLY:
            return  # no listing: each file's size is checked as it is downloaded
        sizes = self._listed_sizes()
        if rel not in sizes:
            raise ShardError(f"{self.shown(rel)}: missing")
        if sizes[rel] != size:
            raise ShardError(f"{self.shown(rel)}: {sizes[rel]} bytes, the manifest says {size}")

    # -- writing ---------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.protocol in READ_ONLY:
            raise OutputError(f"{self.url}: {self.protocol}:// is read-only here; write to s3:// or gs://, or serve a local dataset folder")

    def _put(self, rel: str, data: bytes) -> None:
        url = self._url(rel)
        self._attempts(rel, lambda: self.fs.pipe_file(url, data))

    def put_file(self, rel: str, path: Path) -> None:
        """The local file ``path`` uploaded as ``rel`` in parts read from disk as they go: a
        256 MiB shard never sits in memory whole (pipe_file of its bytes peaked a worker at
        1.7 GiB, bench/scale_write.py)."""
        url = self._url(rel)
        options = UPLOAD_OPTIONS.get(EXTRAS.get(self.protocol, ""), {})
        self._attempts(rel, lambda: self.fs.put_file(str(path), url, **options))

    def _remove(self, rels: list[str], quietly: bool = False) -> None:
        if not rels:
            return
        urls = [self._url(rel) for rel in rels]
        try:
            self._attempts("", lambda: self.fs.rm(urls))
        except PipelineError:
            if not quietly:
                raise


def _writes(f, where) -> Callable[[bytes], None]:
    """``f.write``, a full disk reported as the folder's, not as a transfer to try again."""

    def write(piece: bytes) -> None:
        try:
            f.write(piece)
        except OSError as e:
            raise StorageError(f"{where}: cannot write a download ({e.strerror or e})") from None

    return write


def _filling(view: memoryview) -> Callable[[bytes], None]:
    """A sink that fills ``view`` from its start (download.receive never hands it more than
    the size it was given + 1 byte)."""
    at = 0

    def fill(piece: bytes) -> None:
        nonlocal at
        view[at : at + len(piece)] = piece
        at += len(piece)

    return fill
