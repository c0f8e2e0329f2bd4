"""Credentials in a dataset's URL (docs/security.md, "Credentials in URLs"):
``http://user:password@host/…?token=…`` had its password and token printed in every message
that named the URL and written into pptrain's config.json (``settings.data``, ``dataset.path``).
The credentials are still sent — a real server on 127.0.0.1 refuses every request without
them — but nothing shown or recorded holds them (formats.location.shown_url)."""

from __future__ import annotations

import base64
import contextlib
import functools
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from conftest import ppencrypt
from ppencrypt.formats import open_dataset, remote, shown_url, without_credentials
from pptrain.cli import cli as pptrain
from servers import FaultyHandler, FaultyHTTPServer, http_server
from test_hostile import one_line_error
from trainer_fixtures import TRAIN, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

PASSWORD, TOKEN = "pa55word-not-to-print", "t0ken-not-to-print"
SECRETS = (PASSWORD, TOKEN, PASSWORD.encode(), TOKEN.encode())
AUTHORIZATION = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()


class Guarded(FaultyHandler):
    """The folder, to requests that carry the credentials only: basic auth, and the token when
    the server's ``token`` says so."""

    def do_GET(self) -> None:
        token = parse_qs(urlsplit(self.path).query).get("token")
        if self.headers.get("Authorization") != AUTHORIZATION or (self.server.token and token != [TOKEN]):
            with self.server.lock:
                self.server.refused += 1
            body = b"credentials, please"
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@contextlib.contextmanager
def guarded_server(folder: Path, token: bool) -> Iterator[FaultyHTTPServer]:
    with http_server(folder) as server:  # no request has arrived yet: each takes the class as it is then
        server.RequestHandlerClass = functools.partial(Guarded, directory=str(folder))
        server.refused, server.token = 0, token
        yield server


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF", 0.01)


@pytest.fixture(params=["password", "password+token"])
def served(shapes_pe, request):
    """(server, the dataset's URL with credentials, the same URL as it may be shown)."""
    token = request.param == "password+token"
    with guarded_server(shapes_pe.parent, token) as server:
        port = server.server_address[1]
        yield (server, f"http://user:{PASSWORD}@127.0.0.1:{port}/{shapes_pe.name}" + (f"?token={TOKEN}" if token else ""),
               f"http://127.0.0.1:{port}/{shapes_pe.name}")  # fmt: skip


def assert_no_secret(*texts) -> None:
    for text in texts:
        assert not any(s in text for s in SECRETS if type(s) is type(text)), text


def test_shown_url_strips_user_info_query_and_fragment():
    assert shown_url(f"https://user:{PASSWORD}@host:8443/a/b?token={TOKEN}&x=1#frag") == "https://host:8443/a/b"
    assert shown_url("https://u:p?w#d@host/a") == "https://host/a"  # a password holding '?' or '#'
    assert shown_url(f"http://host?sig={TOKEN}") == "http://host"
    assert shown_url("s3://bucket/prefix") == "s3://bucket/prefix" and shown_url("runs/a?b") == "runs/a?b"  # paths as they are
    line = without_credentials(f"ClientResponseError: 401, url='http://user:{PASSWORD}@127.0.0.1:9/d/x.tar?token={TOKEN}' (try 1)")
    assert line == "ClientResponseError: 401, url='http://127.0.0.1:9/d/x.tar (try 1)"


def test_the_credentials_are_used_and_never_shown_by_verify_and_inspect(served, shapes_pe):
    server, url, shown = served
    for r in (ppencrypt("verify", url), ppencrypt("inspect", url)):
        assert r.exit_code == 0, r.output
        assert shown in r.stdout
        assert_no_secret(r.stdout, r.stderr)
    assert server.refused == 0 and server.requests[f"/{shapes_pe.name}/manifest.json"] == 2
    line = one_line_error(ppencrypt("verify", shown))  # without them the server refuses: they were sent
    assert line == f"Error: {shown}/manifest.json: access denied" and server.refused == 1


@pytest.mark.parametrize("fault", ["500", "404", "corrupt"])
def test_errors_never_show_the_credentials(served, shapes_pe, tmp_path, fault):
    server, url, shown = served
    shard = open_dataset(shapes_pe).manifest.splits["train"].shards[0].path
    server.fail(f"/{shapes_pe.name}/{shard}", fault, sticky=True)
    for r in (ppencrypt("verify", url, "-q"), ppencrypt("preview", url, "-o", tmp_path / "p.png"),
              CliRunner().invoke(pptrain, [url, *TRAIN, "--run-dir", str(tmp_path / "run")])):  # fmt: skip
        line = one_line_error(r)
        assert line.startswith(f"Error: {shown}/{shard}: "), line
        assert_no_secret(r.stdout, r.stderr)
    server.fail(f"/{shapes_pe.name}/manifest.json", "404", sticky=True)
    r = ppencrypt("inspect", url)
    assert one_line_error(r) == f"Error: {shown}: not a ppencrypt dataset (no manifest.json)"


def test_a_refused_connection_never_shows_the_credentials():
    """The backend's own message (aiohttp's) is quoted in the error: scrubbed too."""
    url = f"http://user:{PASSWORD}@127.0.0.1:9/data?token={TOKEN}"  # port 9 (discard): nothing listens
    r = ppencrypt("inspect", url)
    assert one_line_error(r).startswith("Error: http://127.0.0.1:9/data")
    assert_no_secret(r.stdout, r.stderr)


def test_pptrain_uses_the_credentials_and_records_none(served, tmp_path):
    server, url, shown = served
    run_dir = tmp_path / "run"
    r = CliRunner().invoke(pptrain, [url, *TRAIN, "--run-dir", str(run_dir)])
    assert r.exit_code == 0, r.output
    assert_no_secret(r.stdout, r.stderr)
    assert server.refused == 0
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"config.json", "checkpoint.pt", "metrics.jsonl", "curves.png"}
    for p in files:
        assert_no_secret(p.read_bytes())
    config = (run_dir / "config.json").read_text()
    assert f'"data": "{shown}"' in config and f'"path": "{shown}"' in config
    r = CliRunner().invoke(pptrain, ["eval", str(run_dir), url])  # the run's dataset again, by its URL with credentials
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{shown} (test, ") and server.refused == 0
    assert_no_secret(r.stdout, r.stderr)
