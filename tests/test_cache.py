"""--cache-dir: a bounded cache of a remote dataset's verified files, named by their hash."""

from __future__ import annotations

import hashlib
import os

from ppencrypt.formats import ShardCache


def put(cache: ShardCache, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    cache.put(sha, data)
    return sha


def test_the_cache_stays_under_its_limit_evicting_the_least_recently_used(tmp_path):
    cache = ShardCache(tmp_path, limit=3000)
    a, b = put(cache, b"a" * 1000), put(cache, b"b" * 1000)
    os.utime(tmp_path / a, (1, 1))  # long ago ...
    os.utime(tmp_path / b, (2, 2))
    assert cache.get(a, 1000) == b"a" * 1000  # ... but used just now
    c = put(cache, b"c" * 1500)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([a, c])
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 3000
    put(cache, b"d" * 4000)  # larger than the whole cache: not kept, nothing evicted for it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([a, c])


def test_a_damaged_or_linked_cache_file_is_a_miss_and_other_files_are_left_alone(tmp_path):
    cache = ShardCache(tmp_path, limit=10_000)
    data = b"x" * 100
    sha = put(cache, data)
    (tmp_path / sha).write_bytes(b"y" * 100)
    assert cache.get(sha, 100) is None and not (tmp_path / sha).exists()
    (tmp_path / "secret").write_bytes(data)
    (tmp_path / sha).symlink_to(tmp_path / "secret")
    assert cache.get(sha, 100) is None
    (tmp_path / "notes.txt").write_bytes(b"z" * 9_000)
    put(cache, b"w" * 5_000)  # over the limit only counting notes.txt: it is not the cache's to evict
    assert (tmp_path / "notes.txt").exists() and (tmp_path / "secret").exists()
