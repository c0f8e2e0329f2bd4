"""Master keys: generation, the key file, the permission check, the key id.

The key file is one line, ``ppencrypt-key-v1 <64 hex digits>``, mode 0600. Like OpenSSH we
refuse to use a key that group or others can read.

A key remembers where it came from (``origin``: the path as the user gave it), so a message
about the key names the file without every caller passing the path along beside the key.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KeyFileError, MissingKeyFileError
from .derive import hkdf_sha256

KEY_BYTES = 32
MAX_KEY_FILE = 256  # bytes: a key file is one short line
HEADER = "ppencrypt-key-v1"
KEY_ID_LABEL = b"ppencrypt/v1|key-id"


def key_id_of(secret: bytes) -> str:
    """A 128-bit fingerprint: HKDF output under its own label, one-way and unrelated to any
    subkey, so publishing it reveals nothing about the key."""
    return hkdf_sha256(secret, KEY_ID_LABEL, 16).hex()


@dataclass(frozen=True)
class MasterKey:
    secret: bytes = field(repr=False)
    # Where the key came from, for messages: its file as the user named it. Not part of the
    # key's identity (two loads of one key are equal), and kept out of repr like the secret.
    origin: str = field(default="the key", compare=False, repr=False)

    def __post_init__(self):
        if len(self.secret) != KEY_BYTES:
            raise ValueError("a master key is 32 bytes")

    @property
    def key_id(self) -> str:
        return key_id_of(self.secret)

    def __repr__(self) -> str:  # never print the secret, not even by accident in a log
        return f"MasterKey(id={self.key_id})"


def generate_key_file(path: str | os.PathLike) -> MasterKey:
    """Write a fresh key to ``path`` (mode 0600); refuse to overwrite anything."""
    origin, path = os.fspath(path), Path(path)
    if path.exists() or path.is_symlink():
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = MasterKey(secrets.token_bytes(KEY_BYTES), origin)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{HEADER} {key.secret.hex()}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and fails if someone created path meanwhile
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from None
    finally:
        os.unlink(tmp)
    return key


def load_key(path: str | os.PathLike) -> MasterKey:
    """The key in ``path``. The file is opened once, without following a symbolic link, and the
    open file is checked (fstat): a regular file, owned by this user, readable by nobody else.
    Checking the path and then opening it again would let someone swap the file in between."""
    origin, path = os.fspath(path), Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise MissingKeyFileError(origin) from None  # the advice fits the command: cli.py gives it
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise KeyFileError(f"{path}: is a symbolic link; refusing to follow it (point --key at the key file itself)") from None
        raise KeyFileError(f"{path}: cannot read key file ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise KeyFileError(f"{path}: owned by another user (uid {st.st_uid}); a key must be its user's own")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{path}: permissions {mode:04o} are too open: a key must be readable by its owner only; "
                f"fix with: chmod 600 {path}"
            )
        data = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a ppencrypt key file") from None
    parts = text.split()
    if len(data) > MAX_KEY_FILE or len(parts) != 2 or parts[0] != HEADER or len(parts[1]) != 2 * KEY_BYTES:
        raise KeyFileError(f"{path}: not a ppencrypt key file (expected '{HEADER} <64 hex digits>')")
    try:
        secret = bytes.fromhex(parts[1])
    except ValueError:
        raise KeyFileError(f"{path}: not a ppencrypt key file (the key is not hexadecimal)") from None
    return MasterKey(secret, origin)
