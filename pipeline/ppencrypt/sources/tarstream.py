"""Reading a tar as it streams in, one member at a time, without trusting a byte of it.

Why not ``tarfile``: in stream mode it reads a pax or GNU long-name header's data whole, so a
hostile header announcing gigabytes is a memory bomb, and it cannot be told which members are
worth reading. Here every header is checked (its checksum), the data of a member is read only
when the caller wants it and it is no larger than the caller's limit, and anything else is
skipped by reading it in bounded pieces. A tar that ends early — no end-of-archive blocks, a
member cut short — is an error, never a quietly shorter shard.
"""

from __future__ import annotations

from typing import BinaryIO, Callable, Iterator

from ..errors import SourceError

BLOCK = 512
META_LIMIT = 1 << 20  # bytes of a pax or GNU long-name header's data
SKIP = 1 << 20  # bytes read at a time when skipping a member
REGULAR = (b"0", b"\0", b"7")
NAMES = {b"L": "path", b"K": "linkpath"}  # GNU long names


class TarStream:
    """``seekable``: skipped data is sought past, not read (a local file; a remote one is read
    on, since each seek would be a new request)."""

    def __init__(self, f: BinaryIO, shown: str, seekable: bool = False):
        self.f, self.shown, self.pos, self.seekable = f, shown, 0, seekable

    def _read(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            piece = self.f.read(n - got)
            if not piece:
                raise SourceError(f"{self.shown}: truncated tar (it ends inside a member, at byte {self.pos + got})")
            parts.append(piece)
            got += len(piece)
        self.pos += n
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def _skip(self, n: int) -> None:
        if self.seekable and n > 0:
            self.f.seek(n - 1, 1)
            self.pos += n - 1
            self._read(1)  # a member cut short is an error here too
            return
        while n > 0:
            step = min(n, SKIP)
            self._read(step)
            n -= step

    def _header(self) -> bytes | None:
        first = self.f.read(BLOCK)
        if not first:
            raise SourceError(f"{self.shown}: truncated tar (no end-of-archive marker)")
        self.pos += len(first)
        block = first if len(first) == BLOCK else first + self._read(BLOCK - len(first))
        if not any(block):
            return None
        try:
            stored = int(block[148:156].rstrip(b"\0 ") or b"-1", 8)
        except ValueError:
            stored = -1
        if stored != sum(block[:148]) + 8 * 32 + sum(block[156:]):
            raise SourceError(f"{self.shown}: not a tar archive, or a damaged one (bad header at byte {self.pos - BLOCK})")
        return block

    def members(self, wanted: Callable[[int, str], int]) -> Iterator[tuple[int, str, bytes | None]]:
        """(offset, name, data) of every regular member in order, ``offset`` where its first
        header starts; ``wanted(offset, name)`` is the most bytes worth reading for it (0: skip
        it, data None). A larger member is an error naming it."""
        pax: dict[str, str] = {}
        start = None
        while True:
            if start is None:
                start = self.pos  # a member's pax or long-name header starts it
            block = self._header()
            if block is None:
                return
            size = _size(block, self.shown, self.pos)
            kind = block[156:157]
            padded = size + (-size % BLOCK)
            if kind in (b"x", b"L", b"K"):
                if size > META_LIMIT:
                    raise SourceError(f"{self.shown}: a tar extended header of {size} bytes at byte {self.pos} (at most {META_LIMIT})")
                data = self._read(padded)[:size]
                if kind == b"x":
                    pax.update(_pax(data, self.shown))
                else:
                    pax[NAMES[kind]] = data.split(b"\0", 1)[0].decode("utf-8", "replace")
                continue
            if kind == b"g":  # global pax header: nothing a sample needs
                self._skip(padded)
                start = None
                continue
            name = pax.get("path") or _name(block)
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise SourceError(f"{self.shown}: bad size in the extended header of {name}") from None
                padded = size + (-size % BLOCK)
            pax, at, start = {}, start, None
            if kind not in REGULAR:  # folders, links: not samples
                self._skip(padded)
                continue
            limit = wanted(at, name)
            if limit == 0:
                self._skip(padded)
                yield at, name, None
                continue
            if size > limit:
                raise SourceError(f"{self.shown}: member {name} is {size} bytes, more than the {limit} a sample's file may have")
            data = self._read(padded)[:size]
            yield at, name, data


def _size(block: bytes, shown: str, pos: int) -> int:
    field = block[124:136]
    if field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.rstrip(b"\0 ").strip() or b"0", 8)
    except ValueError:
        raise SourceError(f"{shown}: bad member size in the tar header at byte {pos - BLOCK}") from None


def _name(block: bytes) -> str:
    name = block[:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
    return (prefix + b"/" + name if prefix else name).decode("utf-8", "replace")


def _pax(data: bytes, shown: str) -> dict[str, str]:
    """Records "LEN key=value\\n" of a pax extended header."""
    out, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise SourceError(f"{shown}: a damaged tar extended header") from None
        if length <= 0 or space < 0:
            raise SourceError(f"{shown}: a damaged tar extended header")
        key, _, value = data[space + 1 : pos + length].rstrip(b"\n").partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        pos += length
    return out
