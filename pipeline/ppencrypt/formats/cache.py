"""A bounded local cache of a remote dataset's files, so later epochs do not download again.

A file is stored under its SHA-256 from the (checked) manifest, ``<cache>/<64 hex digits>``,
never under a name the server chose, and only after it matched that hash on arrival. A hit is
read back as a local dataset file is (files.read_regular: a regular file of the recorded size
and hash), so a damaged or replaced cache file is a miss, deleted and downloaded again — the
cache can make a run faster, never make it read other bytes.

The cache is shared by every process of a run (DataLoader workers, torchrun ranks) and by
later runs: files appear by rename, whole; eviction drops the least recently used files
(modification time, refreshed on each hit) until the new one fits under the limit; a file
evicted under a reader's feet is a miss. Files not named by a hash are never touched, so a
cache folder pointed at by mistake loses nothing else.

A download is written into the cache as it arrives (``incoming``), under a temporary name
``.<hash>.<pid>.<random>.tmp``, and renamed to its hash once it checked. Temporary files count
toward the limit — those of other processes too — and room for the whole file is made before
its first byte is written, so the limit holds across processes; one a killed process left
(its pid gone, or untouched for STALE seconds) is deleted by the next eviction.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import BinaryIO, Iterator

from ..atomic import pid_alive
from ..errors import StorageError
from .files import FileProblem, read_regular

HASH_NAME = re.compile(r"[0-9a-f]{64}")
# ours, and atomic.write_file's (the cache's writes before downloads went straight to disk)
TMP_NAME = re.compile(r"\.[0-9a-f]{64}\.(?:(\d+)\.)?[0-9a-f]{16}\.tmp")
STALE = 3600  # seconds untouched after which a temporary file is a dead writer's, whatever its pid


class ShardCache:
    def __init__(self, root: str | os.PathLike, limit: int):
        self.root, self.limit = Path(root), limit  # limit: bytes

    def __repr__(self) -> str:
        return f"ShardCache({str(self.root)!r}, {self.limit})"

    def _path(self, sha256: str) -> Path:
        if not HASH_NAME.fullmatch(sha256):  # checked manifests hold nothing else; never a path from elsewhere
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.root / sha256

    def get(self, sha256: str, size: int) -> bytes | None:
        """The file's bytes when the cache holds them intact, else None."""
        path = self._path(sha256)
        try:
            data = read_regular(path, size=size, sha256=sha256)
        except FileNotFoundError:
            return None
        except FileProblem:
            with contextlib.suppress(OSError):
                path.unlink()  # damaged or replaced: download again
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Keep ``data`` (already checked against ``sha256``) unless it alone exceeds the limit."""
        if len(data) > self.limit:
            return
        with self.incoming(sha256, len(data)) as f:
            f.write(data)

    @contextlib.contextmanager
    def incoming(self, sha256: str, size: int) -> Iterator[BinaryIO]:
        """A file to write the ``size`` bytes of ``sha256`` into as they arrive (room made for
        them first); kept under its hash when the block ends without an error, else deleted."""
        path = self._path(sha256)
        tmp = self.root / f".{sha256}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._make_room(size)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise StorageError(f"{self.root}: cannot write the cache ({e.strerror or e})") from None
        try:
            with os.fdopen(fd, "w+b") as f:
                yield f  # what the block raises (a failed download) passes through as it is
                try:
                    f.flush()  # no fsync: a torn file fails its hash on the next read
                    os.replace(tmp, path)
                except OSError as e:
                    raise StorageError(f"{self.root}: cannot write the cache ({e.strerror or e})") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every cached file, least recently used first."""
        return sorted(e for e in self._scan() if HASH_NAME.fullmatch(e[2].name))

    def _scan(self) -> list[tuple[float, int, Path]]:
        """(modification time, bytes, path) of every file of the cache's, temporary ones too."""
        found = []
        with os.scandir(self.root) as it:
            for entry in it:
                if HASH_NAME.fullmatch(entry.name) or TMP_NAME.fullmatch(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        found.append((st.st_mtime, st.st_size, Path(entry.path)))
        return found

    def _make_room(self, incoming: int) -> None:
        found, total = [], 0
        for mtime, size, path in self._scan():
            if TMP_NAME.fullmatch(path.name) and _dead(path.name, mtime):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # a killed writer's: it would count for ever
                continue
            total += size
            if HASH_NAME.fullmatch(path.name):
                found.append((mtime, size, path))
        for _, size, path in sorted(found):  # another writer's temporary file is never evicted
            if total + incoming <= self.limit:
                break
            with contextlib.suppress(FileNotFoundError):  # another process evicted it first
                path.unlink()
            total -= size


def _dead(name: str, mtime: float) -> bool:
    """Whether a temporary file's writer is gone: its pid is no process's, or it has not
    written for STALE seconds (a live download writes at its minimum rate, download.py)."""
    pid = TMP_NAME.fullmatch(name)[1]
    return (pid is not None and int(pid) != os.getpid() and not pid_alive(int(pid))) or time.time() - mtime > STALE
