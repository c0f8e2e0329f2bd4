"""Datasets in S3: an S3-compatible server on 127.0.0.1 (moto's, tests/servers.py), driven
through s3fs exactly as a user points it at AWS — AWS_ENDPOINT_URL and the AWS_* keys in the
environment, nothing in our options. A dataset is written there and verified, trained on in
memory and streamed (also by two torchrun ranks, on disjoint shards); an interrupted upload
leaves no readable dataset, and --overwrite replaces only a dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import fsspec
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import encrypt, new_bucket, ppencrypt, tree_bytes
from ppencrypt.errors import ManifestError
from ppencrypt.formats import open_dataset, remote
from ppencrypt.formats.remote import MARKER, RemoteDir, classify
from ppencrypt.formats.copy import copy_dataset
from pptrain.cli import cli as pptrain
from pptrain.distributed import Dist
from pptrain.stream import StreamLoader
from trainer_fixtures import TRAIN, loader_args, shard_sizes, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF", 0.01)


@pytest.fixture(scope="module")
def readers_started(shapes_pe):
    """The streaming readers' fork server started before any bucket's environment is set, as in
    a process that streamed a local dataset first: the readers must still get the credentials."""
    import torch

    list(StreamLoader(open_dataset(shapes_pe), "train", 8, Dist(), torch.device("cpu"), 0, True, workers=1, buffer=40).epoch(0))


@pytest.fixture
def bucket(s3_server, monkeypatch, tmp_path) -> str:
    """s3://<a new bucket>, with the environment pointing s3fs at the server."""
    url = new_bucket(s3_server, monkeypatch, tmp_path)
    s3_server.counting.reset()
    return url


@pytest.fixture
def pushed(bucket, shapes_pe) -> str:
    url = f"{bucket}/shapes"
    r = ppencrypt("push", shapes_pe, url, "--quiet")
    assert r.exit_code == 0, r.output
    return url


def keys(url: str) -> list[str]:
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    base = url.removeprefix("s3://") + "/"
    return sorted(k.removeprefix(base) for k in fs.find(url))


@pytest.mark.parametrize("storage", ["wds", "zarr"])
def test_a_dataset_written_to_s3_verifies_and_is_the_local_one(bucket, fmnist_dir, key_file, tmp_path, storage):
    url = f"{bucket}/datasets/fm"
    encrypt(fmnist_dir, tmp_path / "local", key_file, "--format", storage)
    encrypt(fmnist_dir, url, key_file, "--format", storage, "--reproduce", tmp_path / "local")  # the same salt, checked
    listed = {f.path for f in open_dataset(tmp_path / "local").manifest.all_files()}
    assert keys(url) == sorted(listed | {"manifest.json"})  # no marker, nothing else
    r = ppencrypt("verify", url, "--key", key_file)
    assert r.exit_code == 0 and "authenticated with the key" in r.stdout and not r.stderr, r.output
    assert ppencrypt("pull", url, tmp_path / "pulled", "--quiet").exit_code == 0
    assert tree_bytes(tmp_path / "pulled") == tree_bytes(tmp_path / "local")  # byte for byte
    a, b = open_dataset(url).split("train").read(), open_dataset(tmp_path / "local").split("train").read()
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_pptrain_reads_s3(readers_started, pushed, shapes_pe, s3_server, tmp_path, loader):
    r = CliRunner().invoke(pptrain, [pushed, *TRAIN, *loader_args(loader, tmp_path), "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["stream"] is (loader == "stream")
    shards = shard_sizes(shapes_pe)
    sent = {path: s3_server.counting.sent[f"/{pushed.removeprefix('s3://')}/{path}"] for path in shards}
    assert sent == shards  # each shard downloaded once, whole


def test_an_interrupted_upload_leaves_no_readable_dataset(pushed, shapes_pe, monkeypatch):
    put, remove = RemoteDir._put, RemoteDir._remove
    calls = []

    def interrupted(self, rel, data):
        calls.append(rel)
        if len(calls) == 4:  # the marker, two shards, then Ctrl-C
            raise KeyboardInterrupt
        put(self, rel, data)

    monkeypatch.setattr(RemoteDir, "_put", interrupted)
    with pytest.raises(KeyboardInterrupt):
        copy_dataset(shapes_pe, pushed, overwrite=True)
    assert keys(pushed) == []  # the old dataset went first, then what was uploaded, then the marker
    with pytest.raises(ManifestError, match="not a ppencrypt dataset"):
        open_dataset(pushed)

    # killed: nothing cleans up, so the marker and some shards stay, but never a manifest
    calls.clear()
    monkeypatch.setattr(RemoteDir, "_remove", lambda self, rels, quietly=False: None)
    with pytest.raises(KeyboardInterrupt):
        copy_dataset(shapes_pe, pushed)
    assert MARKER in keys(pushed) and "manifest.json" not in keys(pushed)
    r = ppencrypt("verify", pushed)
    assert r.exit_code == 1 and "not a ppencrypt dataset" in r.output
    monkeypatch.setattr(RemoteDir, "_put", put)
    monkeypatch.setattr(RemoteDir, "_remove", remove)
    r = ppencrypt("push", shapes_pe, pushed, "--quiet")  # a rerun replaces the interrupted upload
    assert r.exit_code == 0, r.output
    assert ppencrypt("verify", pushed).exit_code == 0 and MARKER not in keys(pushed)


def test_overwrite_replaces_only_a_dataset(pushed, shapes_pe, bucket):
    r = ppencrypt("push", shapes_pe, pushed)
    assert r.exit_code == 1 and r.output.strip() == f"Error: {pushed}: already holds a dataset (pass --overwrite to replace it)"
    assert ppencrypt("push", shapes_pe, pushed, "--overwrite", "--quiet").exit_code == 0
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.pipe_file(f"{bucket}/home/notes.txt", b"mine")
    for extra in ([], ["--overwrite"]):
        r = ppencrypt("push", shapes_pe, f"{bucket}/home", *extra)
        assert r.exit_code == 1 and "holds other files and no ppencrypt dataset" in r.output
    assert keys(f"{bucket}/home") == ["notes.txt"]


def test_a_planted_upload_marker_wipes_nothing(shapes_pe, bucket):
    """Issue 22, 5: ``proj/`` holds someone's results and a planted ``.ppencrypt-upload``
    (ours, byte for byte, or anything else): a push there used to take the prefix for an
    interrupted upload of ours and delete everything under it. Only files our own journal (or
    an old manifest) names are ours to delete, so it is refused and nothing goes."""
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.pipe_file(f"{bucket}/proj/results/important.csv", b"epoch,acc\n1,0.93\n")
    for marker in (remote.MARKER_TEXT, b"anything"):
        fs.pipe_file(f"{bucket}/proj/{MARKER}", marker)
        r = ppencrypt("push", shapes_pe, f"{bucket}/proj")
        assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
        assert "refusing" in r.output and "results/important.csv" in r.output or "not a marker" in r.output
        assert fs.cat_file(f"{bucket}/proj/results/important.csv") == b"epoch,acc\n1,0.93\n"
    # a journal planted with it names only what an interrupted job wrote: other files still stay
    fs.pipe_file(f"{bucket}/proj/{MARKER}", remote.MARKER_TEXT)
    fs.pipe_file(f"{bucket}/proj/.ppencrypt-journal.json", json.dumps(
        {"format": "ppencrypt-journal", "version": 1, "written": ["train/000000.tar"], "splits": {}, "closed": {},
         "binding": {}, "dataset_id": None, "salt": None, "mac": None}).encode())  # fmt: skip
    assert ppencrypt("push", shapes_pe, f"{bucket}/proj").exit_code == 1
    assert "results/important.csv" in keys(f"{bucket}/proj")


def test_clear_one_line_errors(bucket, tmp_path, monkeypatch):
    r = ppencrypt("verify", "s3://no-such-bucket-ppencrypt/ds")
    assert r.exit_code == 1 and r.output.strip() == "Error: s3://no-such-bucket-ppencrypt/ds: no such bucket"
    r = CliRunner().invoke(pptrain, [f"{bucket}/empty", *TRAIN, "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 1 and r.output.strip() == f"Error: {bucket}/empty: not a ppencrypt dataset (no manifest.json)"
    from botocore.exceptions import ClientError

    denied = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")
    slow = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
    assert classify(denied).kind == "denied" and classify(slow) is None  # 4xx at once, 5xx again
    assert classify(ConnectionResetError()) is None
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    r = ppencrypt("inspect", f"{bucket}/x")
    assert r.exit_code == 1 and r.output.strip() == f"Error: {bucket}/x/manifest.json: no credentials found (s3fs uses the AWS_* variables or ~/.aws)"


def test_a_pulled_shard_that_was_altered_fails_and_leaves_nothing(pushed, shapes_pe, tmp_path):
    shard = open_dataset(shapes_pe).manifest.splits["train"].shards[1]
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    data = bytearray(fs.cat_file(f"{pushed}/{shard.path}"))
    data[1000] ^= 1
    fs.pipe_file(f"{pushed}/{shard.path}", bytes(data))
    r = ppencrypt("pull", pushed, tmp_path / "pulled")
    assert r.exit_code == 1 and r.output.strip().endswith(f"{pushed}/{shard.path}: checksum mismatch (the file was altered or damaged) (4 tries)")
    assert not (tmp_path / "pulled").exists() and not list(tmp_path.glob(".pulled*"))


def test_two_torchrun_ranks_stream_disjoint_shards_from_s3(pushed, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pptrain", pushed,
           *TRAIN, "--run-dir", str(run_dir), "--stream", "--workers", "1", "--trace"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    traces = [json.loads((run_dir / f"trace-rank{r}.jsonl").read_text().splitlines()[0])["batches"] for r in (0, 1)]
    seen = [{i for batch in t for i in batch} for t in traces]
    assert len(traces[0]) == len(traces[1]) == 114 // 16 and not seen[0] & seen[1]
    shard_of = [{i // 32 for i in s} for s in seen]  # 32 samples per shard: each rank streams its own shards
    assert not shard_of[0] & shard_of[1]
