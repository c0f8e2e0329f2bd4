"""What a cipher draws from its key, and how key material becomes those draws.

A method states, for one image of a given shape, the draws it needs — a :class:`Draw` each:
``bits`` (n key bits), ``integers`` (n integers uniform in [0, k)), ``permutations`` (m uniform
permutations of n). The key ring turns them into arrays with one row per image, whatever the
key derivation:

* versions 1 and 2 read every draw from a ChaCha20 stream of its own (a subkey per purpose, a
  nonce per image): :func:`from_stream`, the rules of docs/cipher.md;
* version 3 reads every draw of an image from one fixed-size *record* of key material, and the
  records of many images from one ChaCha20 call (:mod:`.records`): :func:`from_records`, the
  same rules made fixed-size so that a whole batch is one array operation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("bits", "integers", "permutations")


@dataclass(frozen=True)
class Draw:
    purpose: str  # names the draw (and, before version 3, its subkey)
    kind: str  # bits | integers | permutations
    n: int  # bits, integers, or the length of each permutation
    k: int = 0  # integers: the range [0, k); permutations: how many

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown draw kind {self.kind!r}")
        if self.kind == "integers" and not 1 <= self.k <= 256:
            raise ValueError("integers are drawn in [0, k) for 1 <= k <= 256")

    @property
    def shape(self) -> tuple[int, ...]:
        """One image's draw: (n,) bits or integers, (m, n) permutations."""
        return (self.k, self.n) if self.kind == "permutations" else (self.n,)

    def record_bytes(self) -> int:
        """Version 3: the bytes of key material this draw takes in an image's record."""
        if self.kind == "bits":
            return (self.n + 7) // 8
        if self.kind == "integers":
            return self.n + spare_bytes(self.n, self.k)
        return 8 * self.k * self.n


def spare_bytes(n: int, k: int) -> int:
    """Version 3 ``integers``: the spare bytes behind the n primary ones,
    2·ceil(n·r / (256 − r)) + 24·ceil(sqrt(n)) + 256 with r = 256 mod k (0: nothing is ever
    rejected). By Hoeffding's inequality the rejected primaries outnumber the accepted spares
    with probability below 2^-128, for every n and k (docs/cipher.md has the two lines)."""
    r = 256 % k
    if r == 0 or n == 0:
        return 0
    return 2 * -(-n * r // (256 - r)) + 24 * (math.isqrt(n - 1) + 1) + 256


def from_stream(stream, d: Draw) -> np.ndarray:
    """One image's draw from a version 1/2 keystream (derive.Keystream)."""
    if d.kind == "bits":
        return stream.bits(d.n)
    if d.kind == "integers":
        return stream.integers(d.n, d.k)
    return stream.permutations(d.k, d.n)


def from_records(records: np.ndarray, draws: tuple[Draw, ...], reduce: bool = True) -> list[np.ndarray]:
    """Version 3: every draw of every image from its record (one row of ``records`` per image,
    the draws' bytes back to back in schedule order). ``reduce=False`` leaves ``integers`` as
    the accepted bytes, each congruent mod k to its value, for a caller that looks them up in a
    table anyway (ciphers/planes.py)."""
    out, at = [], 0
    for d in draws:
        size = d.record_bytes()
        part = records[:, at : at + size]
        at += size
        if d.kind == "bits":
            out.append(np.unpackbits(part, axis=1, count=d.n, bitorder="little"))
        elif d.kind == "integers":
            out.append(_integers(part, d.n, d.k, reduce))
        else:
            words = np.ascontiguousarray(part).view("<u8").reshape(len(records), d.k, d.n)
            out.append(np.argsort(words, axis=2, kind="stable"))
    return out


def _integers(part: np.ndarray, n: int, k: int, reduce: bool = True) -> np.ndarray:
    """Rejection sampling at a fixed size. The first n bytes are the primary draws; a byte
    b < limit (the largest multiple of k not above 256) gives b mod k. The j-th rejected primary
    byte of an image is replaced by the j-th accepted byte of its spare bytes. Every value is
    then uniform in [0, k) and independent of the others, as with a stream (docs/cipher.md)."""
    limit = 256 - 256 % k
    rows = len(part)
    primary = np.ascontiguousarray(part[:, :n])
    values = primary.copy()
    if limit < 256:
        rejected = np.flatnonzero(primary >= limit)  # flat: 8x faster than a 2-D nonzero
        if rejected.size:
            bad_r, bad_c = np.divmod(rejected, n)
            spare = part[:, n:]
            good = spare < limit
            accepted = np.ascontiguousarray(spare)[good]  # row by row
            first = np.zeros(rows + 1, np.int64)
            np.cumsum(good.sum(axis=1), out=first[1:])
            bad_per_row = np.bincount(bad_r, minlength=rows)
            if np.any(bad_per_row > first[1:] - first[:-1]):
                raise ValueError("key material ran out of spare bytes (probability below 2^-128)")
            bad_first = np.zeros(rows + 1, np.int64)
            np.cumsum(bad_per_row, out=bad_first[1:])
            rank = np.arange(bad_r.size) - bad_first[bad_r]  # j: the how-manieth rejection of its row
            values[bad_r, bad_c] = accepted[first[bad_r] + rank]
    if reduce and k < 256:  # b mod k as b - (b // k)·k: numpy divides uint8 by a constant 20x faster than it takes a remainder
        quotient = values // np.uint8(k)
        quotient *= np.uint8(k)
        values -= quotient
    return values
