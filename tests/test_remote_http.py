"""Datasets read over HTTP from a real server on 127.0.0.1 (tests/servers.py: Python's
http.server over the dataset's folder, misbehaving on request): pptrain trains from the URL,
a truncated download is tried again, a shard corrupted every time fails naming it, 4xx
answers fail at once in one line, and the client's commands read URLs too."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ppencrypt
from ppencrypt.formats import open_dataset, remote
from ppencrypt.errors import ShardError
from servers import http_server
from pptrain.cli import cli as pptrain
from trainer_fixtures import TRAIN, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF", 0.01)  # the count of tries is what matters here


@pytest.fixture
def served(shapes_pe):
    """(server, URL of the three-shapes dataset)."""
    with http_server(shapes_pe.parent) as server:
        yield server, f"{server.url}/{shapes_pe.name}"


def shard_paths(out, split="train") -> list[str]:
    return [f"/{out.name}/{s.path}" for s in open_dataset(out).manifest.splits[split].shards]


def test_pptrain_trains_an_epoch_from_a_url_downloading_each_shard_once(served, shapes_pe, tmp_path):
    server, url = served
    r = CliRunner().invoke(pptrain, [url, *TRAIN, "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1] and rows[0]["test_acc"] is not None
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["path"] == url and config["resolved"]["stream"] is False
    for path in shard_paths(shapes_pe) + shard_paths(shapes_pe, "test"):
        assert server.requests[path] == 1, path  # in memory: downloaded once


def test_streaming_with_a_cache_downloads_nothing_after_the_first_epoch(served, shapes_pe, tmp_path):
    server, url = served
    cache = tmp_path / "cache"
    args = [url, *TRAIN, "--epochs", "2", "--stream", "--workers", "0", "--cache-dir", str(cache), "--run-dir", str(tmp_path / "run")]
    r = CliRunner().invoke(pptrain, args)
    assert r.exit_code == 0, r.output
    shards = shard_paths(shapes_pe) + shard_paths(shapes_pe, "test")
    assert [server.requests[p] for p in shards] == [1] * len(shards)
    m = open_dataset(shapes_pe).manifest
    assert sorted(p.name for p in cache.iterdir()) == sorted(s.sha256 for s in m.all_files())  # named by hash only


def test_a_shard_served_truncated_once_is_downloaded_again(served, shapes_pe):
    server, url = served
    first = shard_paths(shapes_pe)[1]
    server.fail(first, "truncate")
    got = open_dataset(url).split("train").read()
    want = open_dataset(shapes_pe).split("train").read()
    assert np.array_equal(got.images, want.images) and np.array_equal(got.labels, want.labels)
    assert server.requests[first] == 2


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_a_shard_corrupted_every_time_fails_naming_it(served, shapes_pe, tmp_path, loader):
    server, url = served
    bad = shard_paths(shapes_pe)[2]
    server.fail(bad, "corrupt", sticky=True)
    extra = ["--stream", "--workers", "0", "--prefetch", "0"] if loader == "stream" else []
    r = CliRunner().invoke(pptrain, [url, *TRAIN, *extra, "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert lines == [f"Error: {server.url}{bad}: checksum mismatch (the file was altered or damaged) ({remote.TRIES} tries)"]
    assert server.requests[bad] == remote.TRIES


def test_4xx_answers_fail_at_once_and_5xx_are_tried_again(served, shapes_pe):
    server, url = served
    server.fail(f"/{shapes_pe.name}/manifest.json", "403")
    r = ppencrypt("inspect", url)
    assert r.exit_code == 1 and r.output.strip() == f"Error: {url}/manifest.json: access denied"
    assert server.requests[f"/{shapes_pe.name}/manifest.json"] == 1

    server.fail(f"/{shapes_pe.name}/manifest.json", "500", "503")
    assert ppencrypt("inspect", url).exit_code == 0
    assert server.requests[f"/{shapes_pe.name}/manifest.json"] == 4

    shard = shard_paths(shapes_pe)[0]
    server.fail(shard, "404")
    with pytest.raises(ShardError, match=rf"{shard}: missing$"):
        open_dataset(url).split("train").read()
    assert server.requests[shard] == 1

    r = ppencrypt("verify", f"{server.url}/nothing-here")
    assert r.exit_code == 1 and r.output.strip() == f"Error: {server.url}/nothing-here: not a ppencrypt dataset (no manifest.json)"


def test_a_shard_larger_than_recorded_is_never_parsed(shapes_pe, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shapes_pe, copy)
    shard = open_dataset(copy).manifest.splits["train"].shards[0]
    with open(copy / shard.path, "ab") as f:
        f.write(b"\0" * 512)
    with http_server(tmp_path) as server:
        with pytest.raises(ShardError, match=rf"{shard.bytes + 512} bytes, the manifest says {shard.bytes} \({remote.TRIES} tries\)"):
            open_dataset(f"{server.url}/copy").split("train").read()


def test_the_clients_commands_read_urls(served, shapes_pe, shapes_src, session_key, tmp_path):
    server, url = served
    r = ppencrypt("verify", url, "--key", session_key)
    assert r.exit_code == 0, r.output
    assert f"{url}: OK (5 files, 133 samples" in r.stdout and "authenticated with the key" in r.stdout
    assert "cannot list a folder" in r.stderr  # extra files cannot be looked for over HTTP: said so
    assert f"dataset   {url}\n" in ppencrypt("inspect", url).stdout
    r = ppencrypt("preview", url, "-o", tmp_path / "grid.png", "--key", session_key, "-n", 4)
    assert r.exit_code == 0 and (tmp_path / "grid.png").is_file(), r.output
    r = ppencrypt("decrypt", url, tmp_path / "plain", "--key", session_key, "--quiet")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "plain").rglob("*.png"))) == 133
    r = ppencrypt("audit", url, "--plain", shapes_src, "-n", 4, "-o", tmp_path / "report")
    assert r.exit_code == 0, r.output
    r = ppencrypt("pull", url, tmp_path / "pulled", "--quiet")
    assert r.exit_code == 0, r.output
    assert ppencrypt("verify", tmp_path / "pulled").exit_code == 0


def test_http_is_read_only(served, shapes_pe, shapes_src, session_key):
    server, _ = served
    r = ppencrypt("dataset", shapes_src, f"{server.url}/new", "--key", session_key, "--quiet", "--workers", 1)
    assert r.exit_code == 1 and r.output.startswith(f"Error: {server.url}/new: http:// is read-only")
    r = ppencrypt("push", f"file://{shapes_pe}", f"{server.url}/new")  # file:// URLs are local folders
    assert r.exit_code == 1 and r.output.startswith(f"Error: {server.url}/new: http:// is read-only")
    assert not server.requests


def test_a_manifest_path_never_becomes_a_url_trick(shapes_pe, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shapes_pe, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    doc["splits"]["train"]["shards"][0]["path"] = "train/000000.tar?versionId=1"
    (copy / "manifest.json").write_text(json.dumps(doc))
    with http_server(tmp_path) as server:
        with pytest.raises(ShardError, match=r"not a name ppencrypt writes"):
            open_dataset(f"{server.url}/copy").split("train").read()
        assert server.requests["/copy/train/000000.tar"] == 0  # never asked for, with or without the query
