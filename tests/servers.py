"""Real servers on 127.0.0.1 for the remote-storage tests and bench/remote_stream.py: a plain
HTTP server over a folder (Python's http.server) that can misbehave on purpose, an
S3-compatible server (moto's, the werkzeug app of ``moto.server.ThreadedMotoServer``) that
counts what it sends, and a Google Cloud Storage emulator (gcp-storage-emulator's JSON API)
that counts the object downloads. All listen on a free port of 127.0.0.1 only, serve from a
thread and stop when asked; every request has a time limit.

Not a test module: tests/test_remote_*.py and the bench import it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import http.server
import json
import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

REQUEST_TIMEOUT = 10  # seconds a connection may idle before the server drops it
TRICKLE, TRICKLE_BYTES = 0.2, 100  # the "trickle" fault: a byte every TRICKLE seconds, at most TRICKLE_BYTES


class FaultyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder, but first consults the server's ``faults``: path -> list of what to
    do on its next GETs ("truncate": half the body after announcing all of it, "corrupt": one
    byte flipped, "500", "403", "redirect": a 302 to the server's ``elsewhere`` URL + path,
    "trickle": all of it announced, then a byte every TRICKLE seconds, TRICKLE_BYTES at most),
    the last entry repeating when ``sticky``. ``generated``: path -> a size, served as that
    many zero bytes made as they are sent (a file claimed GiB-sized, without the disk)."""

    timeout = REQUEST_TIMEOUT
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: pytest shows what matters
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.requests[path] += 1
        fault = self.server.next_fault(path)
        if fault in ("403", "404", "500", "503"):
            body = f"error {fault}".encode()
            self.send_response(int(fault))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if fault == "redirect":
            self.send_response(302)
            self.send_header("Location", self.server.elsewhere + path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path in self.server.generated:
            return self._zeros(self.server.generated[path])
        file = Path(self.translate_path(path))
        if fault is None or not file.is_file():
            return super().do_GET()
        data = bytearray(file.read_bytes())
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(bytes(data[: len(data) // 2]))
            self.close_connection = True
            return
        if fault == "trickle":
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client hung up: what the test wants
                for i in range(min(TRICKLE_BYTES, len(data))):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(TRICKLE)
            return
        data[len(data) // 2] ^= 0xFF  # corrupt
        self.wfile.write(bytes(data))

    def _zeros(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = bytes(1 << 20)
        with contextlib.suppress(OSError):  # the client stopped reading
            for start in range(0, size, len(block)):
                self.wfile.write(block[: size - start])


class FaultyHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path):
        super().__init__(("127.0.0.1", 0), functools.partial(FaultyHandler, directory=str(folder)))
        self.requests: collections.Counter = collections.Counter()
        self.faults: dict[str, list[str]] = {}
        self.sticky: set[str] = set()
        self.generated: dict[str, int] = {}
        self.elsewhere = "http://127.0.0.1:9"  # where "redirect" sends the client
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fail(self, path: str, *faults: str, sticky: bool = False) -> None:
        with self.lock:
            self.faults[path] = list(faults)
            (self.sticky.add if sticky else self.sticky.discard)(path)

    def next_fault(self, path: str) -> str | None:
        with self.lock:
            queue = self.faults.get(path)
            if not queue:
                return None
            return queue[0] if path in self.sticky and len(queue) == 1 else queue.pop(0)


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[FaultyHTTPServer]:
    server = FaultyHTTPServer(folder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Counting:
    """WSGI middleware: what the S3 server sent for each GET, in requests and bytes; a GET of
    COUNTS answers the totals as JSON (for a server in another process: the bench)."""

    COUNTS = "/_ppencrypt_test_counts"

    def __init__(self, app):
        self.app = app
        self.gets: collections.Counter = collections.Counter()
        self.sent: collections.Counter = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == self.COUNTS:
            with self.lock:
                body = json.dumps({"gets": sum(self.gets.values()), "bytes": sum(self.sent.values())}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        body = self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "GET":
            return body
        path = environ.get("PATH_INFO", "")
        with self.lock:
            self.gets[path] += 1
        return self._count(body, path)

    def _count(self, body, path):
        try:
            for piece in body:
                with self.lock:
                    self.sent[path] += len(piece)
                yield piece
        finally:
            if hasattr(body, "close"):
                body.close()

    def reset(self) -> None:
        with self.lock:
            self.gets.clear()
            self.sent.clear()


class Hostile:
    """WSGI middleware of a hostile S3-compatible endpoint. A GET of a path in ``bodies``
    (path -> (size, announced)) is answered 200 with that many zero bytes, whatever Range it
    asked for, with a Content-Length when ``announced`` (else until the connection closes);
    a request for a path in ``redirects`` (path -> URL) is answered 302 to that URL.
    Everything else goes to the S3 server behind it. ``sent`` counts the zero bytes."""

    def __init__(self, app):
        self.app, self.bodies, self.redirects, self.sent = app, {}, {}, collections.Counter()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in self.redirects:
            start_response("302 Found", [("Location", self.redirects[path]), ("Content-Length", "0")])
            return [b""]
        if environ.get("REQUEST_METHOD") != "GET" or path not in self.bodies:
            return self.app(environ, start_response)
        size, announced = self.bodies[path]
        start_response("200 OK", [("Content-Type", "application/octet-stream")] + ([("Content-Length", str(size))] if announced else []))
        return self._zeros(path, size)

    def _zeros(self, path: str, size: int):
        block = bytes(1 << 20)
        for start in range(0, size, len(block)):
            piece = block[: size - start]
            self.sent[path] += len(piece)
            yield piece

    def clear(self) -> None:
        self.bodies.clear()
        self.redirects.clear()
        self.sent.clear()


class Served:
    """A server of ours answering from a thread on 127.0.0.1 at ``endpoint``, until ``stop``."""

    def serve(self, server) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class S3Server(Served):
    """moto's S3 on 127.0.0.1 behind :class:`Counting`, and :class:`Hostile` (which answers
    as a hostile endpoint for the paths it is given, none by default); ``env`` points s3fs
    (botocore) at it the way a user points at any S3-compatible endpoint, with moto's dummy
    credentials."""

    def __init__(self):
        from moto.server import DomainDispatcherApplication, create_backend_app
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.counting = Counting(DomainDispatcherApplication(create_backend_app))
        self.hostile = Hostile(self.counting)
        server = make_server("127.0.0.1", 0, self.hostile, threaded=True, request_handler=MotoRequestHandler)
        server.timeout = REQUEST_TIMEOUT
        self.serve(server)

    def env(self, config_dir: Path) -> dict[str, str]:
        return s3_env(self.endpoint, config_dir)


def s3_env(endpoint: str, config_dir: Path) -> dict[str, str]:
    """Variables for s3fs: the endpoint, dummy keys, and no ~/.aws of the developer's."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(config_dir / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def make_bucket(name: str) -> None:
    """A bucket on the server the environment points at (s3fs, as a user would)."""
    import fsspec

    fsspec.filesystem("s3", skip_instance_cache=True).mkdir(name)



class GCSServer(Served):
    """gcp-storage-emulator's GCS JSON API, in memory, on 127.0.0.1: its request handler behind
    a threading server of ours (a free port, a time limit per request, one request at a time
    inside the emulator, whose store is not thread-safe). ``downloads`` counts the GETs of
    each object's bytes, by "bucket/name"; ``env`` points gcsfs at it the way a user points it
    at any emulator or endpoint."""

    MEDIA = re.compile(r"(?:/download)?/storage/v1/b/([^/]+)/o/(.+)")

    def __init__(self):
        from gcp_storage_emulator.server import RequestHandler
        from gcp_storage_emulator.storage import Storage

        logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)  # 404s are logged as errors
        self.storage = Storage(use_memory_fs=True)
        self.downloads: collections.Counter = collections.Counter()
        lock = threading.Lock()
        emulator = self

        class Handler(RequestHandler):
            timeout = REQUEST_TIMEOUT

            def serve(self, method) -> None:
                with lock:
                    method()

            def do_GET(self):
                url = urlsplit(self.path)
                media = emulator.MEDIA.fullmatch(url.path)
                if media and parse_qs(url.query).get("alt") == ["media"]:
                    with lock:
                        emulator.downloads[f"{media[1]}/{unquote(media[2])}"] += 1
                self.serve(super().do_GET)

            def do_POST(self):
                self.serve(super().do_POST)

            def do_PUT(self):
                self.serve(super().do_PUT)

            def do_DELETE(self):
                self.serve(super().do_DELETE)

            def do_PATCH(self):
                self.serve(super().do_PATCH)

        threaded = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, self.storage))
        threaded.daemon_threads = True
        self.serve(threaded)

    def make_bucket(self, name: str) -> None:
        from gcp_storage_emulator.handlers.buckets import create_bucket

        create_bucket(name, self.storage)

    def env(self, config_dir: Path) -> dict[str, str]:
        return gcs_env(self.endpoint, config_dir)


def gcs_env(endpoint: str, config_dir: Path) -> dict[str, str]:
    """Variables for gcsfs: the emulator, anonymous access (fsspec's FSSPEC_<protocol>_<option>,
    read when fsspec is imported), the plain JSON-API filesystem (gcsfs's default one asks a
    gRPC endpoint for the bucket's layout first: an emulator has none, and each try waits 60 s),
    and no fsspec configuration of the developer's."""
    return {
        "STORAGE_EMULATOR_HOST": endpoint,
        "FSSPEC_GCS_TOKEN": "anon",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "FSSPEC_CONFIG_DIR": str(config_dir),
        "NO_PROXY": "127.0.0.1,localhost",
    }


if __name__ == "__main__":  # python tests/servers.py: an S3 server in its own process (the bench)
    s3 = S3Server()
    print(s3.endpoint, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    s3.stop()
