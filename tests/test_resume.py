"""Output streamed to OUT shard by shard, --shard-bytes, and --resume (issue 23): a job killed
with SIGKILL leaves no manifest; rerun with --resume it keeps every shard it had finished and
checked, writes only the rest, and ends byte for byte where an uninterrupted run ends. The
journal it trusts is authenticated by the key and bound to the job: another key's, another
job's, or an altered one is refused with nothing changed."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
from conftest import encrypt, leftovers, ppencrypt, ppencrypt_process, tile_real, tree_bytes, write_fmnist_idx, write_idx

from ppencrypt.formats import open_dataset, remote
from ppencrypt.formats.journal import JOURNAL
from ppencrypt.formats.output import RemoteOutput
from ppencrypt.formats.tar import BLOCK, RECORD
from servers import S3Server, make_bucket

SHARD = 500


def big_fmnist(root: Path, fmnist, n: int) -> Path:
    """Fashion-MNIST-shaped IDX with ``n`` training images tiled from the real ones."""
    root = write_fmnist_idx(root, *fmnist)
    images, labels = tile_real(*fmnist, n)
    for p in root.glob("train-*"):
        p.unlink()
    write_idx(root / "train-images-idx3-ubyte", images[..., 0])
    write_idx(root / "train-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="module")
def big_idx(tmp_path_factory, fmnist):
    return big_fmnist(tmp_path_factory.mktemp("big") / "fashion-mnist", fmnist, 60_000)


def finished(journal: bytes) -> int:
    return sum(len(v) for v in json.loads(journal)["splits"].values())


def kill_after(p, journal_bytes, shards: int, sig=signal.SIGKILL) -> int:
    """``sig`` to ``p`` once its journal lists ``shards`` finished shards; how many it listed then."""
    deadline = time.monotonic() + 120
    while True:
        assert p.poll() is None, f"finished before it could be killed: {p.communicate()}"
        assert time.monotonic() < deadline
        data = journal_bytes()
        if data is not None:
            try:
                if finished(data) >= shards:
                    break
            except ValueError:  # caught between its write and its rename
                pass
        time.sleep(0.005)
    p.send_signal(sig)
    p.wait(timeout=60)
    left = journal_bytes()
    return 0 if left is None else finished(left)  # None: the job removed its journal (Ctrl-C without --resume)


def local_journal(out: Path, pid: int):
    def read():
        found = list(out.parent.glob(f".{out.name}.partial-{pid}-*/{JOURNAL}"))
        return found[0].read_bytes() if found else None

    return read


def summary(r) -> tuple[int, int]:
    """(kept, of all) from the summary line of a resumed run."""
    line = r.stdout.strip().splitlines()[-1]
    kept, _, rest = line.rpartition("resumed: ")[2].partition(" of ")
    return int(kept), int(rest.split()[0])


def s3_journal(fs, url):
    """A function that reads the journal at ``url`` now (None before it exists)."""

    def journal():
        try:
            return fs.cat_file(f"{url}/{JOURNAL}")
        except FileNotFoundError:
            return None

    return journal

def test_a_killed_job_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, big_idx, key_file):
    out = tmp_path / "out"
    args = ("--key", key_file, "--shard-size", SHARD, "--workers", 2)
    p = ppencrypt_process("dataset", big_idx, out, *args, "--quiet")
    listed = kill_after(p, local_journal(out, p.pid), 4)
    assert not out.exists() and len(leftovers(out)) == 1  # no manifest anywhere, the partial stays
    r = ppencrypt("dataset", big_idx, out, *args, "--resume")
    assert r.exit_code == 0, r.output
    kept, total = summary(r)
    assert kept >= listed and total == 60_000 // SHARD + 1  # the train shards, then the test split's one
    assert kept < total  # it was killed mid-job: the rest was encrypted now
    assert leftovers(out) == ["out"] and not (out / JOURNAL).exists()
    # An uninterrupted run with the same salt and id (--reproduce checks the source, then reuses them)
    encrypt(big_idx, tmp_path / "whole", key_file, "--reproduce", out, "--workers", 1, shard_size=SHARD)
    assert tree_bytes(tmp_path / "whole") == tree_bytes(out)
    assert ppencrypt("verify", out, "--key", key_file).exit_code == 0


def test_resume_refuses_another_jobs_or_an_altered_journal(tmp_path, big_idx, key_file):
    out = tmp_path / "out"
    p = ppencrypt_process("dataset", big_idx, out, "--key", key_file, "--shard-size", SHARD, "--quiet")
    kill_after(p, local_journal(out, p.pid), 2)
    partial = leftovers(out)[0]
    before = tree_bytes(tmp_path / partial)
    other_key = tmp_path / "other.key"
    assert ppencrypt("keygen", other_key).exit_code == 0
    for args, why in [
        (("--key", key_file, "--shard-size", SHARD + 1), "other options (shard_size: 500, now 501)"),
        (("--key", key_file, "--shard-size", SHARD, "--skip-bad"), "other options (skip_bad: False, now True)"),
        (("--key", other_key, "--shard-size", SHARD), "not a journal this key wrote"),
    ]:
        r = ppencrypt("dataset", big_idx, out, *args, "--resume", "--quiet")
        assert r.exit_code == 1 and why in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert tree_bytes(tmp_path / partial) == before  # nothing changed
    # the server edits the journal: a shard skipped, or the salt of its choosing
    journal = tmp_path / partial / JOURNAL
    doc = json.loads(journal.read_bytes())
    doc["salt"] = "00" * 16
    journal.write_text(json.dumps(doc))
    r = ppencrypt("dataset", big_idx, out, "--key", key_file, "--shard-size", SHARD, "--resume", "--quiet")
    assert r.exit_code == 1 and "MAC mismatch" in r.output, r.output
    assert not out.exists()


def test_a_damaged_finished_shard_is_written_again(tmp_path, big_idx, key_file):
    out = tmp_path / "out"
    args = ("--key", key_file, "--shard-size", SHARD, "--format", "zarr")
    p = ppencrypt_process("dataset", big_idx, out, *args, "--quiet")
    kill_after(p, local_journal(out, p.pid), 4)
    partial = tmp_path / leftovers(out)[0]
    shard = partial / "train/images/c/2/0/0/0"  # the third shard, damaged on disk
    shard.write_bytes(b"x" + shard.read_bytes()[1:])
    r = ppencrypt("dataset", big_idx, out, *args, "--resume")
    assert r.exit_code == 0, r.output
    assert summary(r)[0] == 2  # kept up to the damaged one, which was written again with all after it
    encrypt(big_idx, tmp_path / "whole", key_file, "--reproduce", out, "--format", "zarr", shard_size=SHARD)
    assert tree_bytes(tmp_path / "whole") == tree_bytes(out)


@pytest.mark.parametrize("storage", ["wds", "zarr"])
def test_shard_bytes_closes_a_shard_before_it_grows_past_it(tmp_path, fmnist_dir, key_file, storage):
    if storage == "wds":  # exactly three samples: two .cls blocks, the .npy header block, 128 + 784 bytes of .npy in two
        limit = 2 * BLOCK + RECORD + 3 * (5 * BLOCK)  # and the end-of-archive blocks and the record's padding
    else:  # three samples' pixels and labels uncompressed, with a margin for zstd's frames and the shard index
        limit = 4096 + 3 * (784 + 8 + 64)
    encrypt(fmnist_dir, tmp_path / "out", key_file, "--format", storage, "--shard-bytes", limit, shard_size=100)
    shards = open_dataset(tmp_path / "out").manifest.splits["train"].shards
    counts = [s.count for s in shards]
    assert len(counts) > 2 and counts[:-1] == [3] * (len(counts) - 1) and 0 < counts[-1] <= 3
    assert all(s.bytes <= limit for s in shards)
    r = ppencrypt("dataset", fmnist_dir, tmp_path / "x", "--key", key_file, "--shard-bytes", "12KB")
    assert r.exit_code == 2 and "not a size in bytes" in r.output


# --- at a URL: the moto S3 server -------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server, monkeypatch, tmp_path) -> str:
    monkeypatch.setattr(remote, "BACKOFF", 0.01)
    for name, value in s3_server.env(tmp_path).items():
        monkeypatch.setenv(name, value)
    name = f"ppencrypt-{uuid.uuid4().hex[:12]}"
    make_bucket(name)
    return f"s3://{name}"


def keys(url: str) -> list[str]:
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    base = url.removeprefix("s3://") + "/"
    return sorted(k.removeprefix(base) for k in fs.find(url))


def test_shards_go_to_s3_as_they_close_with_two_staged_at_most(bucket, fmnist_dir, key_file, monkeypatch):
    """Uploads overlap encryption (formats/lane.py): when a shard closes, the one before it may
    still be uploading, never the one before that."""
    staged = []
    publish = RemoteOutput._publish

    def counting(self, rel, path, sha256):
        staged.append(len([p for p in self.staging.rglob("*") if p.is_file()]))
        return publish(self, rel, path, sha256)

    monkeypatch.setattr(RemoteOutput, "_publish", counting)
    url = f"{bucket}/fm"
    encrypt(fmnist_dir, url, key_file)
    m = open_dataset(url).manifest
    assert len(staged) == sum(len(s.shards) for s in m.splits.values()) > 3
    assert max(staged) <= 2  # the shard closing and the one uploading, nothing else
    assert keys(url) == sorted([f.path for f in m.all_files()] + ["manifest.json"])


def test_a_shard_is_uploaded_from_disk_in_parts(bucket, fmnist, tmp_path, key_file, monkeypatch):
    """A shard larger than two upload parts goes up as a multipart upload read from the staged
    file (bench/scale_write.py: pipe_file of its bytes held each 256 MiB shard whole, twice,
    and peaked a Dask worker at 1.7 GiB); the object is the shard, byte for byte."""
    monkeypatch.setitem(remote.UPLOAD_OPTIONS, "s3", {"chunksize": 5 << 20, "max_concurrency": 2})  # S3's smallest part
    src = big_fmnist(tmp_path / "fm", fmnist, 14_000)  # one train shard of 14,000 x 28 x 28: ~12 MiB
    url = f"{bucket}/fm"
    encrypt(src, url, key_file, shard_size=20_000)
    m = open_dataset(url).manifest
    shard = m.splits["train"].shards[0]
    assert shard.bytes > 2 * (5 << 20)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    etag = fs.info(f"{url}/{shard.path}")["ETag"].strip('"')
    assert etag.endswith(f"-{-(-shard.bytes // (5 << 20))}")  # a multipart upload's ETag: the count of its parts
    assert ppencrypt("verify", url, "--key", key_file).exit_code == 0


@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_ctrl_c_with_an_upload_in_flight(bucket, fmnist, tmp_path, key_file, resume):
    """Ctrl-C while shards go up in the background (formats/lane.py): the job ends promptly with
    one line; without --resume the prefix is left empty (the upload under way finished before
    its removal, so nothing turns up after it); with --resume every shard the journal lists is
    at OUT whole, and --resume finishes to the bytes of an uninterrupted run."""
    src = big_fmnist(tmp_path / "fm", fmnist, 12_000)
    url = f"{bucket}/fm"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    journal = s3_journal(fs, url)

    args = ("--key", key_file, "--shard-size", SHARD, "--workers", 1)
    p = ppencrypt_process("dataset", src, url, *args, "--quiet", *(["--resume"] if resume else []))
    t = time.monotonic()
    kill_after(p, journal, 3, signal.SIGINT)
    assert time.monotonic() - t < 60
    err = p.stderr.read()
    assert p.returncode == 1 and "Traceback" not in err, err
    time.sleep(1)  # an upload that outlived the job would show by now
    if not resume:
        assert keys(url) == []
        return
    listed = json.loads(journal())
    for entry in listed["splits"]["train"]:
        for f in entry["files"]:
            assert fs.info(f"{url}/{f['path']}")["size"] == f["bytes"]
    r = ppencrypt("dataset", src, url, *args, "--resume")
    assert r.exit_code == 0, r.output
    encrypt(src, tmp_path / "whole", key_file, "--reproduce", url, shard_size=SHARD)
    assert ppencrypt("pull", url, tmp_path / "pulled", "--quiet").exit_code == 0
    assert tree_bytes(tmp_path / "pulled") == tree_bytes(tmp_path / "whole")


def test_a_killed_upload_resumes_in_s3(bucket, fmnist, tmp_path, key_file):
    src = big_fmnist(tmp_path / "fm", fmnist, 12_000)
    url = f"{bucket}/fm"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    journal = s3_journal(fs, url)

    args = ("--key", key_file, "--shard-size", SHARD, "--workers", 1)
    p = ppencrypt_process("dataset", src, url, *args, "--quiet")
    listed = kill_after(p, journal, 3)
    assert "manifest.json" not in keys(url) and ".ppencrypt-upload" in keys(url)
    r = ppencrypt("dataset", src, url, *args, "--resume")
    assert r.exit_code == 0, r.output
    kept, total = summary(r)
    assert listed <= kept < total == 12_000 // SHARD + 1
    encrypt(src, tmp_path / "whole", key_file, "--reproduce", url, shard_size=SHARD)
    m = open_dataset(url).manifest
    assert keys(url) == sorted([f.path for f in m.all_files()] + ["manifest.json"])  # no marker, no journal
    assert ppencrypt("pull", url, tmp_path / "pulled", "--quiet").exit_code == 0
    assert tree_bytes(tmp_path / "pulled") == tree_bytes(tmp_path / "whole")
    a, b = open_dataset(url).split("train").read(), open_dataset(tmp_path / "whole").split("train").read()
    assert np.array_equal(a.images, b.images)
