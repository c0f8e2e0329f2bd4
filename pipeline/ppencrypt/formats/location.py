"""Where a dataset lives: a local folder (LocalDir, here), or a URL that fsspec reaches
(remote.RemoteDir); locate.open_location picks one for a path or URL.

    loc = open_location("out/fm")                    # LocalDir
    loc = open_location("s3://bucket/datasets/fm")   # RemoteDir (s3fs), likewise gs:// and https://
    loc.read("train/000000.tar", size, sha256)       # the bytes the manifest records, or ShardError

Every reader and writer of the format layer goes through a Location, so none of them knows
where the bytes come from, and every file is checked the same way wherever it lies: against
the manifest's size before a byte is read, and against its SHA-256 before it is parsed.
``file://`` URLs are local folders (the local checks — no symbolic links, regular files — are
stricter than fsspec's local backend).

Writing keeps one promise for both: a reader never sees a manifest whose files are missing.
A local OUT is built in a hidden sibling and renamed into place (atomic.py); a URL receives
its files first and manifest.json last (output.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import unquote, urlsplit

from ..atomic import is_within
from ..errors import ManifestError, ShardError
from .files import FileProblem, hash_regular, inside, open_regular, read_regular
from .manifest import MANIFEST, read_small

SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")

# What a copy or an upload is made of: (relative path, a function that returns its bytes).
Files = Iterable[tuple[str, Callable[[], bytes]]]


def url_scheme(target: str | os.PathLike) -> str | None:
    """The scheme of a URL (``s3``, ``https``, ``file``, ...), None for a plain path."""
    m = SCHEME.match(target) if isinstance(target, str) else None
    return m.group(1).lower() if m else None


def is_url(target: str | os.PathLike) -> bool:
    """A URL of a remote store (``file://`` URLs are local folders)."""
    return url_scheme(target) not in (None, "file")


def shown_url(target: str | os.PathLike) -> str:
    """A path or URL as every message and record shows it: a URL without the user info before
    its host (``user:password@``) and without its query string and fragment (a token, a
    pre-signed signature), which may hold credentials; a plain path as it is. Requests still
    go to the URL as given (remote.RemoteDir): this is only what is shown, printed or written."""
    text = os.fspath(target)
    m = SCHEME.match(text) if isinstance(text, str) else None
    if not m:
        return str(text)
    rest = text[m.end() :]
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    # the host follows the last '@' before the path, whatever a password holds ('?', '#', ':')
    shown = authority.rsplit("@", 1)[-1] + path
    for mark in "?#":
        shown = shown.split(mark, 1)[0]
    return m.group(0) + shown


URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def without_credentials(text: str) -> str:
    """``text`` (a message, a backend's error) with every URL in it as :func:`shown_url` shows it."""
    return URL.sub(lambda m: shown_url(m.group(0)), text)


def dataset_name(target: str | os.PathLike) -> str:
    """The last component of a path or URL: ``runs/<name>`` is a run's default directory."""
    if is_url(target):
        shown = shown_url(target)
        return urlsplit(shown).path.rstrip("/").rsplit("/", 1)[-1] or urlsplit(shown).netloc
    return Path(local_path(target)).resolve().name


def local_path(target: str | os.PathLike) -> Path:
    """A plain path, or the path of a ``file://`` URL."""
    if url_scheme(target) == "file":
        parts = urlsplit(str(target))
        return Path(unquote(parts.netloc + parts.path) if parts.netloc not in ("", "localhost") else unquote(parts.path))
    return Path(target)


class Location(ABC):
    """A dataset's folder: local (LocalDir) or at a URL (remote.RemoteDir)."""

    local: bool
    root: Path | str  # the folder, or the URL without a trailing slash
    parallel: int = 0  # files a whole-split read fetches at once (threads)
    ahead_bytes: int | None = None  # bytes of files fetched ahead and not yet used, at most (None: any)

    @abstractmethod
    def shown(self, rel: str = "") -> str:
        """How messages name the file ``rel`` (the folder itself for "")."""

    @abstractmethod
    def manifest_text(self) -> str:
        """manifest.json, at most MAX_BYTES, UTF-8; ManifestError when there is none."""

    @abstractmethod
    def read(self, rel: str, size: int, sha256: str) -> bytes:
        """A file of the dataset, whole, exactly as the manifest records it (else ShardError)."""

    @abstractmethod
    def check(self, rel: str, size: int, sha256: str) -> None:
        """The file is as the manifest records it (verify), without keeping its bytes."""

    @abstractmethod
    def preflight(self, rel: str, size: int) -> None:
        """The file is there and of the recorded size, nothing read (before a split is allocated)."""

    @abstractmethod
    def listing(self) -> list[tuple[str, bool]] | None:
        """Every file under the folder as (relative path, is a regular file), sorted; None
        where the storage cannot list (plain HTTP)."""

    def holds(self, path: str | os.PathLike) -> bool:
        """Whether the local ``path`` lies inside this dataset (decrypted pixels must not)."""
        return False


class LocalDir(Location):
    local = True

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalDir({str(self.root)!r})"

    def shown(self, rel: str = "") -> str:
        return str(self.root / rel) if rel else str(self.root)

    def manifest_text(self) -> str:
        if not self.root.is_dir():
            raise ManifestError(f"{self.root}: no such dataset directory")
        return read_small(self.root / MANIFEST, f"{self.root}: not a ppencrypt dataset (no {MANIFEST})")

    @contextlib.contextmanager
    def _file(self, rel: str) -> Iterator[None]:
        """FileProblem and a missing file as ShardError naming the file."""
        try:
            yield
        except FileNotFoundError:
            raise ShardError(f"{self.shown(rel)}: missing") from None
        except FileProblem as e:
            raise ShardError(f"{self.shown(rel)}: {e}") from None

    def read(self, rel: str, size: int, sha256: str) -> bytes:
        with self._file(rel):
            return read_regular(inside(self.root, rel), size=size, sha256=sha256)

    def check(self, rel: str, size: int, sha256: str) -> None:
        with self._file(rel):
            digest = hash_regular(inside(self.root, rel), size)
        if digest != sha256:
            raise ShardError(f"{self.shown(rel)}: checksum mismatch (the file was altered or damaged)")

    def preflight(self, rel: str, size: int) -> None:
        with self._file(rel):
            fd, st = open_regular(inside(self.root, rel))
            os.close(fd)
        if st.st_size != size:
            raise ShardError(f"{self.shown(rel)}: {st.st_size} bytes, the manifest says {size}")

    def listing(self) -> list[tuple[str, bool]]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            # a linked folder is not walked into; it is listed, as what it is: not a regular file
            for name in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
                path = Path(dirpath) / name
                found.append((path.relative_to(self.root).as_posix(), stat.S_ISREG(os.lstat(path).st_mode)))
        return found

    def holds(self, path: str | os.PathLike) -> bool:
        return is_within(path, self.root)


def tree_files(root: Path) -> list[tuple[str, Callable[[], bytes]]]:
    """Every file under ``root`` (a folder we just wrote) but the manifest, sorted, for an upload."""
    return [(rel, (root / rel).read_bytes) for rel, _ in LocalDir(root).listing() if rel != MANIFEST]
