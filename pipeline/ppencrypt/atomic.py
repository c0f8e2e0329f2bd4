"""Outputs appear whole or not at all, and nobody else's file is written or deleted.

A job builds OUT in a hidden sibling ``.OUT.partial-<pid>-<random>`` and renames it into place
at the end. An error, Ctrl-C or SIGTERM removes the partial; a SIGKILL cannot be caught, so
the next run removes partials whose process is gone. ``--overwrite`` swaps the old OUT out
only after the new one is complete, and only when OUT is one of ours (``is_ours``).

A single file (a query PNG, a preview, a manifest, a checkpoint) is written to a temporary
sibling created with O_EXCL | O_NOFOLLOW under an unpredictable name and renamed over the
target: a symbolic link planted at the temporary name cannot redirect the write, and one
planted at the target is replaced, not followed. A file that grows line by line (pptrain's
trace) is opened by ``open_append``: no link followed, a regular file of one name, or refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import OutputError


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(out: Path, tag: str = "partial") -> list[Path]:
    """The hidden siblings of ``out`` of kind ``tag`` whose process is gone, newest first."""
    found = []
    for p in out.parent.glob(f".{out.name}.{tag}-*"):
        try:
            pid = int(p.name[len(f".{out.name}.{tag}-") :].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            found.append(p)
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def remove_stale_partials(out: Path) -> None:
    for tag in ("partial", "old"):
        for p in stale(out, tag):
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so that cleanup code runs, as it does for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` is ``root`` or lies below it (after resolving links)."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p == r or r in p.parents


def check_target(out: Path, overwrite: bool, is_ours: Callable[[Path], bool], what: str) -> None:
    """``is_ours`` tells whether a directory is one of our outputs (``what`` says which kind):
    ``--overwrite`` replaces only such a directory (or an empty one), never, say, a home folder
    or a browser extension that happens to hold a manifest.json."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"{out}: exists and is not a directory; refusing to replace it")
    if not out.exists():
        return
    if not overwrite:
        raise OutputError(f"{out}: already exists (pass --overwrite to replace it)")
    if any(out.iterdir()) and not is_ours(out):
        raise OutputError(f"{out}: exists and is not {what}; refusing to replace it")


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool, is_ours: Callable[[Path], bool], what: str,
               adopt: Callable[[Path], bool] | None = None) -> Iterator[Path]:  # fmt: skip
    """``adopt`` (``--resume``): the newest partial left by a process that is gone, if
    ``adopt`` accepts it, becomes this job's partial instead of a new empty one; and an
    interrupt (Ctrl-C, SIGTERM) then keeps the partial for the next ``--resume``."""
    out = Path(out)
    check_target(out, overwrite, is_ours, what)
    with terminate_as_exit():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            kept = next((p for p in stale(out) if adopt(p)), None) if adopt is not None else None
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
            if kept is not None:  # under this process's id, so that no other run takes it for stale
                os.rmdir(tmp)
                os.rename(kept, tmp)
            remove_stale_partials(out)
        except OSError as e:
            raise OutputError(f"{out}: cannot create output ({e.strerror})") from None
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give OUT the usual mode
            if out.exists():
                check_target(out, overwrite, is_ours, what)
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
                os.rename(out, old / "x")
                try:
                    os.rename(tmp, out)
                except OSError:
                    os.rename(old / "x", out)  # put the old output back
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, out)
        except (KeyboardInterrupt, SystemExit):
            if adopt is None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: int = 0o644, fsync: bool = True) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace ``path`` when the block ends without an
    error (fsynced first, unless a torn file is harmless); on an error the temporary file is
    removed and ``path`` untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode & ~_umask())
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_file(path: str | os.PathLike, data: bytes, mode: int = 0o644, fsync: bool = True) -> None:
    with atomic_writer(path, mode, fsync) as f:
        f.write(data)


def open_append(path: str | os.PathLike) -> BinaryIO:
    """A file to add lines to in a folder someone else may have written (pptrain's trace in a run
    directory from the server): opened once, created if missing, never through a symbolic link
    (O_NOFOLLOW) and without blocking on a FIFO (O_NONBLOCK), then checked on the open file:
    a regular file with no other name, for a hard link planted there would carry the lines into
    the file it names as surely as a symbolic link."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644 & ~_umask())
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutputError(f"{path}: is a symbolic link; refusing to follow it") from None
        if e.errno == errno.ENXIO:  # a FIFO nobody reads: the non-blocking open for writing fails at once
            raise OutputError(f"{path}: is not a regular file") from None
        raise OutputError(f"{path}: cannot open ({e.strerror})") from None
    st = os.fstat(fd)
    problem = "is not a regular file" if not stat.S_ISREG(st.st_mode) else "has another name (a hard link)" if st.st_nlink != 1 else ""
    if problem:
        os.close(fd)
        raise OutputError(f"{path}: {problem}; refusing to write through it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")
