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
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from ..atomic import write_file
from ..errors import StorageError
from .files import FileProblem, read_regular

HASH_NAME = re.compile(r"[0-9a-f]{64}")


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
        path = self._path(sha256)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._make_room(len(data))
            write_file(path, data, fsync=False)  # a torn file fails its hash on the next read
        except OSError as e:
            raise StorageError(f"{self.root}: cannot write the cache ({e.strerror or e})") from None

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every cached file, least recently used first."""
        found = []
        with os.scandir(self.root) as it:
            for entry in it:
                if HASH_NAME.fullmatch(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        found.append((st.st_mtime, st.st_size, Path(entry.path)))
        return sorted(found)

    def _make_room(self, incoming: int) -> None:
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total + incoming <= self.limit:
                break
            with contextlib.suppress(FileNotFoundError):  # another process evicted it first
                path.unlink()
            total -= size
