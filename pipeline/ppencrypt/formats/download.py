"""One file downloaded from a server that may be hostile, with memory and time bounded
whatever it sends (formats/remote.py's transfers; issue 22, items 2 and 6).

Memory: a body is read a PIECE at a time, each piece hashed and handed to a sink (a file on
disk, a small bounded buffer, or nothing at all for a check) before the next is read, and no
more than ``cap`` + 1 bytes are ever read, whatever the server announces or sends: a body
longer than asked for is refused after one byte too many, never buffered. The backends'
own reads buffer a whole body (s3fs and gcsfs read a ranged GET's answer whole, however
large), so each backend here only opens the GET — one request for the whole file, no Range —
and the body is read through its stream (OPENERS).

Time: a per-file deadline and a minimum average rate (``Limits``; PPENCRYPT_DEADLINE,
PPENCRYPT_MIN_RATE), so that a server sending a byte every 20 s cannot keep a reader waiting
for hours; each wait for the server (the answer's headers, each piece) is bounded by what
is left of both, the first GRACE seconds free of the rate.

Redirects are never followed: a 3xx answer is refused (the server would choose where the
client sends its next request — another host, an internal address — with the URL's
credentials). gcsfs and plain HTTP get ``allow_redirects=False``; so does every request of
s3fs, through aiobotocore's HTTP session (``s3_options``: aiobotocore passes nothing, and
aiohttp follows up to 10 by default), whose 3xx answer remote.classify refuses.

Reads happen in the calling thread (a piece at a time through the backend's event loop), so
that hashing and writing the pieces of parallel downloads run in parallel threads, not on
the one loop thread every fsspec filesystem shares.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ..errors import StorageError

PIECE = 1 << 20  # bytes gathered from the socket before they are hashed and written
GRACE = 30.0  # seconds from the request during which the rate is not yet judged
DEADLINE = 1800.0  # seconds one file may take, by default
MIN_RATE = 64 << 10  # bytes per second a file must average after GRACE, by default
ENV_DEADLINE, ENV_MIN_RATE = "PPENCRYPT_DEADLINE", "PPENCRYPT_MIN_RATE"
ERROR_BODY = 64 << 10  # bytes of an error answer read for its message
REDIRECTED = "redirected elsewhere (HTTP {status}); ppencrypt follows no redirects: give the final URL"


class Damaged(Exception):
    """What arrived is not what the manifest records: a transfer worth another try."""


class Refused(Exception):
    """An answer no retry mends and no other request may follow (a redirect, a server too
    slow for the limits): reported at once, naming the file."""


class Oversized(Exception):
    """A file of unrecorded size (the manifest) announced larger than it may be."""

    def __init__(self, announced: int):
        super().__init__(announced)
        self.announced = announced


@dataclass(frozen=True, kw_only=True)
class Limits:
    deadline: float = DEADLINE  # seconds per file
    min_rate: float = MIN_RATE  # bytes per second, averaged from the request (0: none)
    grace: float = GRACE

    @classmethod
    def from_env(cls, environ=os.environ) -> Limits:
        """The limits PPENCRYPT_DEADLINE (seconds) and PPENCRYPT_MIN_RATE (bytes per second)
        set, the defaults otherwise."""
        return cls(deadline=_number(environ, ENV_DEADLINE, DEADLINE, positive=True),
                   min_rate=_number(environ, ENV_MIN_RATE, MIN_RATE, positive=False), grace=GRACE)  # fmt: skip

    def latest(self, start: float, got: int) -> float:
        """When, counted from ``start``, more than ``got`` bytes must have arrived: the moment
        their average rate falls under the minimum (not before GRACE), or the deadline."""
        rate = got / self.min_rate if self.min_rate else math.inf
        return start + min(self.deadline, max(self.grace, rate))

    def slow(self, got: int, elapsed: float) -> str:
        if elapsed >= self.deadline:
            return f"took longer than {self.deadline:g} s ({got} bytes; {ENV_DEADLINE} sets the limit)"
        return (f"too slow: {got} bytes in {elapsed:.0f} s, under the minimum of {self.min_rate:g} bytes/s "
                f"({ENV_MIN_RATE} sets it)")  # fmt: skip


def _number(environ, name: str, default: float, positive: bool) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise StorageError(f"{name}={text[:40]!r}: not a {'positive' if positive else 'non-negative'} number")
    return value


@dataclass(frozen=True, kw_only=True)
class Body:
    """An answer's body as a backend opened it: its announced length (None if unknown), a
    read of up to n bytes (b"" at the end) and a close."""

    length: int | None
    read: Callable[[int], Awaitable[bytes]]
    close: Callable[[], Any]


# -- the backends: open one GET for a whole file ---------------------------------------------


async def _http(fs, url: str) -> Body:
    session = await fs.set_session()
    # identity: a Content-Length that is the file's size, and no decompression of the server's choosing
    headers = {**fs.kwargs.get("headers", {}), "Accept-Encoding": "identity"}
    r = await session.get(fs.encode_url(url), **{**fs.kwargs, "headers": headers, "allow_redirects": False})
    return await _checked(r, lambda: fs._raise_not_found_for_status(r, url))


async def _gcs(fs, url: str) -> Body:
    from gcsfs.retry import validate_response

    await fs._set_session()
    path = fs.url(url)
    r = await fs.session.get(path, params=fs._get_params({}), headers=fs._get_headers(None), allow_redirects=False)
    if r.status >= 400:  # gcsfs's own error types (a 404 as FileNotFoundError), from a bounded read
        try:
            validate_response(r.status, await r.content.read(ERROR_BODY), path)
        finally:
            r.close()
    return await _checked(r, lambda: None)


async def _checked(r, raise_for_status: Callable[[], None]) -> Body:
    """An aiohttp answer as a Body, unless it is a redirect or an error."""
    if r.status < 300:
        return Body(length=r.content_length, read=r.content.read, close=r.close)
    try:
        await r.content.read(ERROR_BODY)  # a short answer read to its end keeps the connection (no reset)
        if r.status < 400:
            raise Refused(REDIRECTED.format(status=r.status))
        raise_for_status()
        raise Refused(f"unexpected answer (HTTP {r.status})")
    finally:
        r.release()


async def _s3(fs, url: str) -> Body:
    bucket, key, version = fs.split_path(url)
    extra = {"VersionId": version} if version else {}
    answer = await fs._call_s3("get_object", Bucket=bucket, Key=key, **extra, **fs.req_kw)
    body = answer["Body"]
    return Body(length=answer.get("ContentLength"), read=body.read, close=body.close)


def s3_options() -> dict:
    """s3fs's options for an endpoint that may be hostile: aiobotocore's aiohttp session, every
    request of it made with ``allow_redirects=False``."""
    from aiobotocore.httpsession import AIOHTTPSession

    class NoRedirects(AIOHTTPSession):
        async def _get_session(self, proxy_url):
            return _NoRedirects(await super()._get_session(proxy_url))

    return {"config_kwargs": {"http_session_cls": NoRedirects}}


class _NoRedirects:
    """An aiohttp ClientSession whose requests follow no redirect."""

    def __init__(self, session):
        self._session = session

    def request(self, *args, **kwargs):
        return self._session.request(*args, **kwargs, allow_redirects=False)

    def __getattr__(self, name):
        return getattr(self._session, name)


OPENERS: dict[str, Callable[[Any, str], Awaitable[Body]]] = {
    "http": _http, "https": _http, "s3": _s3, "s3a": _s3, "gs": _gcs, "gcs": _gcs,
}  # fmt: skip


# -- reading a body --------------------------------------------------------------------------


def receive(fs, protocol: str, url: str, *, expect: int | None, cap: int, limits: Limits,
            sink: Callable[[bytes], Any] | None = None, hasher=None) -> int:  # fmt: skip
    """Download ``url`` (``expect``: its recorded size, None when unknown) a piece at a time
    into ``hasher`` and ``sink``, reading at most ``cap`` + 1 bytes; the count read. Raises
    Damaged (another announced size), Oversized, Refused, or the backend's errors."""
    from fsspec.asyn import sync

    loop = fs.loop
    start = loop.time()
    body = sync(loop, _within, OPENERS[protocol](fs, url), limits.latest(start, 0), limits, start, 0)
    try:
        if expect is not None and body.length is not None and body.length != expect:
            raise Damaged(f"{body.length} bytes, the manifest says {expect}")
        if expect is None and body.length is not None and body.length > cap:
            raise Oversized(body.length)
        got = 0
        while got <= cap:
            want = min(PIECE, cap + 1 - got)
            parts = sync(loop, _gather, body.read, want, limits, start, got)
            for part in parts:  # as the stream handed them out: no copy to join them
                if hasher is not None:
                    hasher.update(part)
                if sink is not None:
                    sink(part)
            piece = sum(map(len, parts))
            got += piece
            if piece < want:
                break  # the end of the body
        return got
    finally:
        sync(loop, _close, body)


async def _within(what: Awaitable, by: float, limits: Limits, start: float, got: int):
    """``what``, unless it is not done by ``by`` (the loop's clock)."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(what, max(0.0, by - loop.time()))
    except asyncio.TimeoutError:
        if loop.time() < by:
            raise  # the backend's own (a socket's read timeout, say): a transfer worth another try
        raise Refused(limits.slow(got, loop.time() - start)) from None


async def _gather(read: Callable[[int], Awaitable[bytes]], n: int, limits: Limits, start: float, before: int) -> list[bytes]:
    """``n`` bytes in parts, fewer only at the end of the body (a stream hands out what it has). Each
    wait ends when the average since ``start`` (``before`` bytes before this piece) would fall
    under the minimum rate, or at the deadline: the rate is judged as the bytes come, not per
    piece."""
    parts, got = [], 0
    while got < n:
        part = await _within(read(n - got), limits.latest(start, before + got), limits, start, before + got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return parts


async def _close(body: Body) -> None:
    done = body.close()
    if inspect.isawaitable(done):
        await done
