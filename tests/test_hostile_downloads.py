"""Downloads from a hostile server (issue 22, items 2 and 6; docs/security.md, section 3b):
memory stays bounded whatever a server sends or a manifest claims, redirects are not
followed, and a server that trickles is dropped at a deadline or a minimum rate. Each runs
against a real server on 127.0.0.1 (tests/servers.py): Python's http.server, and moto's S3
behind a middleware that answers as a hostile S3-compatible endpoint (``Hostile``).
Memory is measured as the peak RSS of the command in a process of its own, under an
address-space limit (a safety net for the machine when the defence is missing)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import new_bucket, ppencrypt
from ppencrypt.formats import ShardCache, download, open_dataset, remote
from ppencrypt.formats.copy import copy_dataset
from ppencrypt.formats.prefetch import read_ahead
from servers import http_server
from test_hostile import one_line_error
from trainer_fixtures import session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures; shapes_pe needs shapes_src)

MIB = 1 << 20
LIMIT = 3 << 30  # address space of a measured command: a 2 GiB body does not fit, with its copy
CLAIMED = 128 * MIB  # each train shard of the hostile manifest over HTTP
TIMEOUT = 300

MEASURED = """
import atexit, resource, sys
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
def peak():  # VmHWM: this process's own peak (ru_maxrss keeps the forking parent's across exec)
    kib = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    sys.stderr.write(f"\\npeak-rss-kib {kib}\\n")
atexit.register(peak)
sys.argv[0] = "ppencrypt"
from ppencrypt.cli import main
main()
"""


def measured(*args, env=None) -> tuple[int, list[str], float]:
    """``ppencrypt ARGS`` in a process of its own: (exit code, stderr lines but the peak, peak RSS in MiB)."""
    env = dict(os.environ if env is None else env, MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", MEASURED, str(LIMIT), *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    peaks = [line for line in lines if line.startswith("peak-rss-kib ")]
    assert peaks, done.stderr[-2000:]  # the process ended by itself, not killed
    return done.returncode, [line for line in lines if line and line not in peaks], int(peaks[-1].split()[1]) / 1024


def doc(root) -> dict:
    return json.loads((root / "manifest.json").read_text())


# -- 2(b): a manifest claiming huge shards, over HTTP, read without the key ------------------


def test_shards_a_manifest_claims_huge_are_never_held_in_memory(shapes_pe, tmp_path):
    """Before: every download buffered whole, joined into a second copy, four at a time —
    four claimed 1 GiB shards peaked at 8.2 GiB. Now a download goes to a temporary file as
    it is hashed and reaches memory only once it matched (these never do)."""
    copy = tmp_path / "big"
    shutil.copytree(shapes_pe, copy)
    d = doc(copy)
    shards = d["splits"]["train"]["shards"]
    for sh in shards:
        sh["bytes"], sh["sha256"] = CLAIMED, "ab" * 32  # the server's claim; what it sends will not match
    (copy / "manifest.json").write_text(json.dumps(d))
    with http_server(tmp_path) as server:
        server.generated.update({f"/big/{sh['path']}": CLAIMED for sh in shards})
        url = f"{server.url}/big"
        code, lines, baseline = measured("inspect", url)  # the same process, the manifest only
        assert code == 0, lines
        code, lines, peak = measured("verify", url)
    claimed = CLAIMED * len(shards)
    assert code == 1 and len(lines) == 1, lines
    assert re.fullmatch(rf"Error: {url}/train/\d+\.tar: checksum mismatch \(the file was altered or damaged\) \({remote.TRIES} tries\)", lines[0])
    assert sum(server.requests[f"/big/{sh['path']}"] for sh in shards) >= remote.TRIES  # the bytes were sent
    # bounded: no shard in memory (before: every one of them, twice)
    assert peak - baseline < CLAIMED / MIB / 2, (peak, baseline, claimed / MIB)


def test_files_fetched_ahead_hold_a_bounded_number_of_bytes():
    """read_ahead with a byte budget: never more than the budget fetched and unused, or one
    item however large; the order and the values unchanged."""
    lock, live, most = threading.Lock(), [0], [0]

    def fetch(n):
        with lock:
            live[0] += n
            most[0] = max(most[0], live[0])
        return n

    sizes = [100, 300, 50, 50, 50, 400, 10]
    got = []
    for n, fetched in read_ahead(sizes, fetch, 4, size=lambda n: n, budget=200):
        got.append(fetched())
        with lock:
            live[0] -= n
    assert got == sizes
    assert most[0] <= 400 + 200  # the item in use and what is fetched ahead: one item, or at most the budget


# -- 2(a): an S3 endpoint that sends more than it was asked for -----------------------------


@pytest.fixture
def s3_dataset(s3_server, shapes_pe, monkeypatch, tmp_path) -> str:
    url = f"{new_bucket(s3_server, monkeypatch, tmp_path)}/ds"
    copy_dataset(shapes_pe, url)
    s3_server.hostile.clear()
    return url


@pytest.mark.parametrize("file,announced", [("manifest.json", True), ("manifest.json", False), ("shard", True)])
def test_an_s3_endpoint_sending_a_huge_body_is_read_no_further_than_asked(s3_server, s3_dataset, shapes_pe, session_key, file, announced):
    """Before: s3fs read a ranged GET's whole answer into memory, so an endpoint that ignored
    the Range and sent 2 GiB made `verify --key` peak at 4.2 GiB before the manifest's 1 MiB
    limit applied. Now one GET per file, its announced length checked first and its body
    read a piece at a time, never past what the file may hold."""
    bucket_path = "/" + s3_dataset[len("s3://") :]
    rel = "manifest.json" if file == "manifest.json" else open_dataset(shapes_pe).manifest.splits["train"].shards[0].path
    size = 2 << 30
    s3_server.hostile.bodies[f"{bucket_path}/{rel}"] = (size, announced)
    code, lines, peak = measured("verify", s3_dataset, "--key", session_key)
    assert code == 1 and len(lines) == 1, lines
    if rel == "manifest.json":
        want = f"{size} bytes, more than the 1048576 a file of this kind may have" if announced else "more than the 1048576 bytes a file of this kind may have"
        assert lines[0] == f"Error: {s3_dataset}/{rel}: {want}"
    else:
        shard = open_dataset(shapes_pe).manifest.splits["train"].shards[0]
        assert lines[0] == f"Error: {s3_dataset}/{rel}: {size} bytes, the manifest says {shard.bytes} ({remote.TRIES} tries)"
    assert peak < 256, peak  # MiB: the interpreter, numpy, botocore (about 130); no body
    assert s3_server.hostile.sent[f"{bucket_path}/{rel}"] < size // 8  # the client hung up early


def test_an_s3_endpoint_redirecting_elsewhere_is_not_followed(s3_server, s3_dataset, shapes_pe, session_key):
    """Before: aiobotocore's aiohttp session followed any redirect (up to 10), so the endpoint
    chose where the client's next request went, signed."""
    bucket_path = "/" + s3_dataset[len("s3://") :]
    with http_server(shapes_pe.parent) as internal:
        s3_server.hostile.redirects[f"{bucket_path}/manifest.json"] = f"{internal.url}/{shapes_pe.name}/manifest.json"
        line = one_line_error(ppencrypt("verify", s3_dataset, "--key", session_key))
        assert line == f"Error: {s3_dataset}/manifest.json: redirected elsewhere (HTTP 302); ppencrypt follows no redirects: give the final URL"
        assert sum(internal.requests.values()) == 0


# -- 6: redirects and trickling servers ------------------------------------------------------


@pytest.fixture
def served(shapes_pe):
    with http_server(shapes_pe.parent) as server:
        yield server, f"{server.url}/{shapes_pe.name}"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF", 0.01)


@pytest.mark.parametrize("file", ["manifest.json", "shard"])
def test_a_redirect_is_not_followed(served, shapes_pe, tmp_path, file):
    """Before: aiohttp followed any redirect, so the server chose where the client's next
    request went (another host, an internal address), credentials and all."""
    server, url = served
    rel = "manifest.json" if file == "manifest.json" else open_dataset(shapes_pe).manifest.splits["train"].shards[0].path
    with http_server(shapes_pe.parent) as internal:  # the same files: following would have worked
        server.elsewhere = internal.url
        server.fail(f"/{shapes_pe.name}/{rel}", "redirect", sticky=True)
        line = one_line_error(ppencrypt("verify", url))
        assert line == f"Error: {url}/{rel}: redirected elsewhere (HTTP 302); ppencrypt follows no redirects: give the final URL"
        assert sum(internal.requests.values()) == 0
        assert server.requests[f"/{shapes_pe.name}/{rel}"] == 1  # not tried again


def test_a_trickling_server_is_dropped_below_the_minimum_rate(served, shapes_pe, monkeypatch):
    """Before: a byte every 20 s kept `inspect` waiting for hours (aiohttp's read timeout
    restarts with each byte, and there was no total)."""
    server, url = served
    monkeypatch.setattr(download, "GRACE", 1.0)
    monkeypatch.setenv("PPENCRYPT_MIN_RATE", "1000")
    server.fail(f"/{shapes_pe.name}/manifest.json", "trickle")
    start = time.monotonic()
    line = one_line_error(ppencrypt("inspect", url))
    assert time.monotonic() - start < 10
    assert re.fullmatch(rf"Error: {url}/manifest\.json: too slow: \d bytes in 1 s, under the minimum of 1000 bytes/s "
                        r"\(PPENCRYPT_MIN_RATE sets it\)", line), line  # fmt: skip
    assert server.requests[f"/{shapes_pe.name}/manifest.json"] == 1  # a slow server is not asked again


def test_a_file_that_takes_longer_than_the_deadline_is_dropped(served, shapes_pe, monkeypatch):
    server, url = served
    monkeypatch.setenv("PPENCRYPT_MIN_RATE", "0")
    monkeypatch.setenv("PPENCRYPT_DEADLINE", "1.5")
    shard = open_dataset(shapes_pe).manifest.splits["train"].shards[1].path
    server.fail(f"/{shapes_pe.name}/{shard}", "trickle")
    start = time.monotonic()
    line = one_line_error(ppencrypt("verify", url))
    assert time.monotonic() - start < 15
    assert re.fullmatch(rf"Error: {url}/{shard}: took longer than 1\.5 s \(\d+ bytes; PPENCRYPT_DEADLINE sets the limit\)", line), line


@pytest.mark.parametrize("name,value", [("PPENCRYPT_DEADLINE", "0"), ("PPENCRYPT_DEADLINE", "soon"), ("PPENCRYPT_MIN_RATE", "-1")])
def test_limits_that_are_not_numbers_are_one_line_errors(served, monkeypatch, name, value):
    _, url = served
    monkeypatch.setenv(name, value)
    assert one_line_error(ppencrypt("inspect", url)).startswith(f"Error: {name}='{value}': not a ")


def test_large_files_go_through_a_temporary_file_or_straight_into_the_cache(served, shapes_pe, tmp_path, monkeypatch):
    """The paths a file over SPOOL_IN_MEMORY takes (every file here, with the limit at 0):
    the same samples, the cache holding exactly the files named by their hashes."""
    server, url = served
    monkeypatch.setattr(remote, "SPOOL_IN_MEMORY", 0)
    want = open_dataset(shapes_pe).split("train").read()
    cache_dir = tmp_path / "cache"
    for cache in (None, ShardCache(cache_dir, 1 << 30), ShardCache(cache_dir, 1 << 30)):  # spooled; into the cache; from it
        got = open_dataset(url, cache).split("train").read()
        assert np.array_equal(got.images, want.images) and np.array_equal(got.labels, want.labels)
    shards = open_dataset(shapes_pe).manifest.splits["train"].shards
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(s.sha256 for s in shards)  # no temporary file left
    assert [server.requests[f"/{shapes_pe.name}/{s.path}"] for s in shards] == [2] * len(shards)  # the third read: cache hits


# -- 10: a killed cache write ----------------------------------------------------------------

KILLED_WRITE = """
import os, sys
from ppencrypt.formats import ShardCache
with ShardCache(sys.argv[1], 10_000).incoming("ab" * 32, 2000) as f:
    f.write(b"x" * 1500)
    f.flush()
    os.kill(os.getpid(), 9)
"""


def test_what_a_killed_cache_write_leaves_counts_and_is_cleaned(tmp_path):
    """Before: a write killed half-way left its temporary file, which no process counted or
    removed: the cache outgrew its limit by one such file per kill."""
    cache_dir = tmp_path / "cache"
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(cache_dir)], capture_output=True, timeout=TIMEOUT)
        assert done.returncode == -9, done.stderr
    left = [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].stat().st_size == 1500  # the second writer removed the first's
    cache = ShardCache(cache_dir, limit=3000)
    data = b"d" * 2500
    cache.put(hashlib.sha256(data).hexdigest(), data)
    assert sorted(p.name for p in cache_dir.iterdir()) == [hashlib.sha256(data).hexdigest()]  # the dead writers' files went
    assert sum(p.stat().st_size for p in cache_dir.iterdir()) <= 3000


def test_a_live_writers_temporary_file_counts_toward_the_limit(tmp_path):
    cache = ShardCache(tmp_path, limit=3000)
    old = b"o" * 1000
    cache.put(hashlib.sha256(old).hexdigest(), old)
    with cache.incoming("cd" * 32, 1500) as f:  # another download under way, 1500 bytes when done
        f.write(b"c" * 1500)
        f.flush()
        new = b"n" * 1000
        cache.put(hashlib.sha256(new).hexdigest(), new)  # 1000 + 1500 + 1000 > 3000: the oldest goes
        assert not (tmp_path / hashlib.sha256(old).hexdigest()).exists()
        assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([hashlib.sha256(new).hexdigest(), "cd" * 32])
