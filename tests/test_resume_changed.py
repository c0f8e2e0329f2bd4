"""``--resume`` notices a source changed in place since the interrupted run (issue 23): the
journal binds the source's fingerprint — per split its inputs' names, sizes and versions (a
local file's mtime, an S3 object's ETag) and the SHA-256 of the classes file — so a rewritten
source file or classes file is refused with one line naming it, nothing changed at OUT; the
source put back as it was resumes to the bytes of an uninterrupted run. The user's own source
changing is the case: kept shards of the old images would meet new shards of the new ones."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
import pytest
from conftest import CIFAR10_NAMES, encrypt, leftovers, ppencrypt, ppencrypt_process, tile_real, tree_bytes
from servers import make_bucket
from streamed_fixtures import encode
from test_resume import big_fmnist, kill_after, local_journal, s3_server, summary  # noqa: F401  (s3_server: a fixture)

from ppencrypt.formats import remote

IMAGES, PER_TAR, SHARD = 6000, 100, 100


def write_tars(folder: Path, cifar10) -> Path:
    """IMAGES real-derived CIFAR images as webdataset shards (webdataset's TarWriter), labelled by class name."""
    import webdataset

    images, labels = tile_real(*cifar10, IMAGES)
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(IMAGES // PER_TAR):
        with webdataset.TarWriter(str(folder / f"train-{t:04d}.tar")) as w:
            for i in range(t * PER_TAR, (t + 1) * PER_TAR):
                w.write({"__key__": f"s{i:06d}", "png": encode(images[i]), "txt": CIFAR10_NAMES[labels[i]].encode()})
    return folder


def one_line(r, *needles: str) -> None:
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert all(n in r.output for n in needles), r.output
    assert "Traceback" not in r.output


def test_a_rewritten_source_file_is_refused_and_put_back_it_resumes(tmp_path, fmnist, key_file):
    src = big_fmnist(tmp_path / "fashion-mnist", fmnist, 30_000)
    out = tmp_path / "out"
    args = ("--key", key_file, "--shard-size", 500, "--workers", 1)
    p = ppencrypt_process("dataset", src, out, *args, "--quiet")
    kill_after(p, local_journal(out, p.pid), 3)
    partial = tmp_path / leftovers(out)[0]
    before = tree_bytes(partial)
    images = src / "train-images-idx3-ubyte"
    original, st = images.read_bytes(), images.stat()
    changed = bytearray(original)
    changed[-1] ^= 0xFF  # one pixel of the last image: same name, same size, other bytes
    images.write_bytes(bytes(changed))
    os.utime(images, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    r = ppencrypt("dataset", src, out, *args, "--resume")
    one_line(r, f"{src}: changed since the interrupted run", "rerun without --resume")
    assert tree_bytes(partial) == before  # nothing changed at OUT
    images.write_bytes(original)  # put back as it was, mtime too: the same source
    os.utime(images, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = ppencrypt("dataset", src, out, *args, "--resume")
    assert r.exit_code == 0, r.output
    assert 3 <= summary(r)[0] < summary(r)[1]
    encrypt(src, tmp_path / "whole", key_file, "--reproduce", out, shard_size=500)
    assert tree_bytes(tmp_path / "whole") == tree_bytes(out)


def test_a_changed_classes_file_is_refused(tmp_path, cifar10, key_file):
    src = write_tars(tmp_path / "wds", cifar10)
    classes = tmp_path / "names.txt"
    classes.write_text("".join(f"{n}\n" for n in CIFAR10_NAMES))
    out = tmp_path / "out"
    args = ("--key", key_file, "--shard-size", SHARD, "--workers", 1, "--classes", classes)
    p = ppencrypt_process("dataset", src, out, *args, "--quiet")
    kill_after(p, local_journal(out, p.pid), 3)
    partial = tmp_path / leftovers(out)[0]
    before = tree_bytes(partial)
    classes.write_text("".join(f"{n}\n" for n in [*CIFAR10_NAMES[1:], CIFAR10_NAMES[0]]))  # the labels now mean other classes
    r = ppencrypt("dataset", src, out, *args, "--resume")
    one_line(r, f"{classes}: changed since the interrupted run (its bytes differ)", "rerun without --resume")
    assert tree_bytes(partial) == before
    # and a rewritten shard of the wds source (a tar of other bytes under the same name)
    classes.write_text("".join(f"{n}\n" for n in CIFAR10_NAMES))
    tar = src / "train-0042.tar"
    tar.write_bytes((src / "train-0041.tar").read_bytes())
    r = ppencrypt("dataset", src, out, *args, "--resume")
    one_line(r, f"{src}: changed since the interrupted run (split train", "rerun without --resume")
    assert tree_bytes(partial) == before
    r = ppencrypt("dataset", src, out, *args, "--overwrite")  # without --resume: encrypted anew
    assert r.exit_code == 0, r.output
    assert not any(n.startswith(".out.partial") for n in leftovers(out))


# --- a source in S3: an object rewritten gets another ETag -----------------------------------


@pytest.fixture
def s3_env(s3_server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(remote, "BACKOFF", 0.01)
    for name, value in s3_server.env(tmp_path).items():
        monkeypatch.setenv(name, value)


def test_a_source_rewritten_in_s3_is_refused_and_put_back_it_resumes(s3_env, tmp_path, cifar10, key_file):
    folder = write_tars(tmp_path / "wds", cifar10)
    (folder / "classes.txt").write_text("".join(f"{n}\n" for n in CIFAR10_NAMES))
    bucket = f"src-{uuid.uuid4().hex[:12]}"
    make_bucket(bucket)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    for p in sorted(folder.iterdir()):
        fs.pipe_file(f"{bucket}/wds/{p.name}", p.read_bytes())
    src = f"s3://{bucket}/wds"
    out = tmp_path / "out"
    args = ("--key", key_file, "--shard-size", SHARD, "--workers", 1)
    p = ppencrypt_process("dataset", src, out, *args, "--quiet")
    kill_after(p, local_journal(out, p.pid), 3)
    partial = tmp_path / leftovers(out)[0]
    before = tree_bytes(partial)
    tar = f"{bucket}/wds/train-0030.tar"
    fs.pipe_file(tar, (folder / "train-0031.tar").read_bytes())
    r = ppencrypt("dataset", src, out, *args, "--resume")
    one_line(r, f"{src}: changed since the interrupted run", "rerun without --resume")
    fs.pipe_file(tar, (folder / "train-0030.tar").read_bytes())  # the same bytes again: the same ETag
    fs.pipe_file(f"{bucket}/wds/classes.txt", "".join(f"{n}\n" for n in reversed(CIFAR10_NAMES)).encode())
    r = ppencrypt("dataset", src, out, *args, "--resume")
    one_line(r, f"{src}/classes.txt: changed since the interrupted run (its bytes differ)", "rerun without --resume")
    assert tree_bytes(partial) == before
    fs.pipe_file(f"{bucket}/wds/classes.txt", (folder / "classes.txt").read_bytes())
    r = ppencrypt("dataset", src, out, *args, "--resume")
    assert r.exit_code == 0, r.output
    kept, total = summary(r)
    assert 3 <= kept < total == IMAGES // SHARD
    encrypt(src, tmp_path / "whole", key_file, "--reproduce", out, shard_size=SHARD)
    assert tree_bytes(tmp_path / "whole") == tree_bytes(out)
