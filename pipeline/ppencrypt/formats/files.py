"""Opening the files of a dataset the server may have written.

Every file a reader touches is named by the manifest, relative to the dataset root, and must be
what the manifest says: a regular file (not a symbolic link to /dev/zero, a FIFO that blocks,
or a file outside the dataset through a linked folder) of exactly the recorded size, whose
SHA-256 is the recorded one. The size is checked with fstat on the open file before a byte is
read, so nothing is allocated for what is not there; the hash is checked before the bytes are
parsed, so a shard that was altered is refused whole instead of half-decoded.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

CHUNK = 1 << 20  # bytes read at a time when hashing


class FileProblem(Exception):
    """A file that is not what the manifest says; the message names what is wrong, not the path."""


def inside(root: Path, rel: str) -> Path:
    """``root / rel``, refusing a path whose folders lead out of ``root`` through links."""
    path = root / rel
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(path.parent)
    if real_parent != real_root and not real_parent.startswith(real_root + os.sep):
        raise FileProblem("its folder leads outside the dataset (a symbolic link)")
    return path


def open_regular(path: Path) -> tuple[int, os.stat_result]:
    """An fd for ``path`` opened without following a final symbolic link, and its fstat; the
    open does not block on a FIFO (O_NONBLOCK), which is then refused as not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno == errno.ELOOP:  # the last component is a symbolic link
            raise FileProblem("is a symbolic link; refusing to follow it") from None
        if isinstance(e, FileNotFoundError):
            raise
        raise FileProblem(f"cannot open ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileProblem("is not a regular file")
    return fd, st


def read_regular(path: Path, limit: int | None = None, size: int | None = None, sha256: str | None = None) -> bytes:
    """The whole file: refused when larger than ``limit``, of another ``size`` than recorded,
    or (when given) of another ``sha256``. FileNotFoundError passes through."""
    fd, st = open_regular(path)
    try:
        if size is not None and st.st_size != size:
            raise FileProblem(f"{st.st_size} bytes, the manifest says {size}")
        if limit is not None and st.st_size > limit:
            raise FileProblem(f"{st.st_size} bytes, more than the {limit} a file of this kind may have")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(st.st_size + 1)
    finally:
        os.close(fd)
    if len(data) != st.st_size:
        raise FileProblem("changed while it was read")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise FileProblem("checksum mismatch (the file was altered or damaged)")
    return data


def hash_regular(path: Path, size: int) -> str:
    """SHA-256 of a regular file of the recorded ``size``, read in chunks (verify, zarr shards)."""
    fd, st = open_regular(path)
    h = hashlib.sha256()
    try:
        if st.st_size != size:
            raise FileProblem(f"{st.st_size} bytes, the manifest says {size}")
        read = 0
        with os.fdopen(fd, "rb", closefd=False) as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
                read += len(block)
                if read > size:
                    break
    finally:
        os.close(fd)
    if read != size:
        raise FileProblem("changed while it was read")
    return h.hexdigest()


def read_text(path: Path, limit: int, error: type[Exception], missing: str | None = None, detail: bool = False) -> str:
    """The UTF-8 text of a file the server may have written (a run directory's, an experiment's
    results), read as a dataset's files are: no link followed, a regular file (a FIFO is not
    waited on), at most ``limit`` bytes. Else ``error`` in one line naming the file: ``missing``
    when there is none (by default ``<path>: no such file``), what is wrong with it, or that it
    cannot be read (the exception's type, and with ``detail`` its message)."""
    try:
        return read_regular(path, limit=limit).decode("utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file" if missing is None else missing) from None
    except FileProblem as e:
        raise error(f"{path}: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read ({type(e).__name__}{f': {e}' if detail else ''})") from None
