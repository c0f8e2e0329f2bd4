"""Uploads overlap encryption (issue 23, formats/lane.py): the driver goes on to shard N+1
while shard N uploads, waits for shard N before it finishes N+1 (at most one extra staged
shard), and a shard is journaled only after its upload — never after a failed one. Real
threads and real S3 (moto's server); nothing stands in for the upload."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid

import fsspec
import pytest
from conftest import encrypt, ppencrypt, tile_real, write_imagefolder
from servers import S3Server, make_bucket

from ppencrypt.errors import StorageError
from ppencrypt.formats.lane import Lane


def test_the_driver_runs_one_shard_ahead_of_the_uploads():
    lane, log, gate = Lane(), [], threading.Event()
    lane.submit(lambda: (gate.wait(10), log.append("upload 0")))
    lane.checkpoint(lambda: log.append("journal 0"))
    log.append("encrypting 1")  # the checkpoint returned while shard 0 still uploads
    second = threading.Thread(target=lambda: (lane.submit(lambda: log.append("upload 1")),
                                              lane.checkpoint(lambda: log.append("journal 1")), log.append("encrypting 2")))  # fmt: skip
    second.start()
    time.sleep(0.3)
    assert log == ["encrypting 1"]  # shard 1 is closed, and the driver waits: shard 0 is not up yet
    gate.set()
    second.join(10)
    lane.settle()
    assert log.index("encrypting 2") > log.index("journal 0")
    assert [e for e in log if not e.startswith("encrypting")] == ["upload 0", "journal 0", "upload 1", "journal 1"]


def test_a_failed_upload_is_never_journaled_and_reaches_the_driver():
    lane, journaled = Lane(), []

    def upload() -> None:
        raise StorageError("s3://bucket/train/000000.tar: refused")

    lane.submit(upload)
    lane.checkpoint(lambda: journaled.append(0))
    lane.submit(lambda: journaled.append("upload 1"))
    with pytest.raises(StorageError, match="000000.tar"):
        lane.settle()
    assert journaled == []


def test_stop_waits_for_the_running_upload_and_drops_the_rest():
    lane, log, started = Lane(), [], threading.Event()
    lane.submit(lambda: (started.set(), time.sleep(0.3), log.append("upload 0")))
    lane.checkpoint(lambda: log.append("journal 0"))
    started.wait(10)
    lane.stop()
    assert log == ["upload 0"]  # finished before stop returned (its staged file goes next), nothing after it ran


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server()
    yield server
    server.stop()


def test_a_local_job_to_s3_stages_at_most_two_shards_and_writes_the_same_bytes(s3, tmp_path, monkeypatch, cifar10, key_file):
    """The local engine to S3 with uploads overlapping: the staging folder never holds more than
    the shard uploading and the one being written; the objects are a local OUT's files."""
    for name, value in s3.env(tmp_path).items():
        monkeypatch.setenv(name, value)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the upload stages its shards
    images, labels = tile_real(*cifar10, 600)
    src = write_imagefolder(tmp_path / "src", images, labels)
    bucket = f"ppencrypt-{uuid.uuid4().hex[:12]}"
    make_bucket(bucket)
    staged, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):  # a folder removed while it is walked
                staged.append(sum(1 for _ in scratch.rglob("*.tar")))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        encrypt(src, f"s3://{bucket}/out", key_file, shard_size=50)
    finally:
        done.set()
        watcher.join()
    assert max(staged) <= 2
    encrypt(src, tmp_path / "local", key_file, "--reproduce", f"s3://{bucket}/out", shard_size=50)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    local = {p.relative_to(tmp_path / "local").as_posix(): p.read_bytes() for p in (tmp_path / "local").rglob("*") if p.is_file()}
    assert sorted(f.removeprefix(f"{bucket}/out/") for f in fs.find(f"{bucket}/out")) == sorted(local)
    assert all(fs.cat_file(f"{bucket}/out/{rel}") == data for rel, data in local.items())
    assert ppencrypt("verify", f"s3://{bucket}/out", "--key", key_file).exit_code == 0
