"""``ppencrypt verify``: a clean dataset passes; any tampering is caught and named (exit 1)."""

import json

import pytest
from conftest import encrypt, ppencrypt

from ppencrypt.formats import open_dataset


def make(tmp_path, cifar10_dir, key_file, storage):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--format", storage)
    return out


@pytest.fixture(params=["wds", "zarr"])
def out(request, tmp_path, cifar10_dir, key_file):
    return make(tmp_path, cifar10_dir, key_file, request.param)


def shard_path(out, k: int = 1):
    return out / open_dataset(out).manifest.splits["train"].shards[k].path


def assert_verify_fails(out, *phrases):
    r = ppencrypt("verify", out, "--quiet")
    assert r.exit_code == 1, r.output
    for phrase in phrases:
        assert phrase in r.stderr, r.stderr


def test_clean_dataset_verifies(out):
    r = ppencrypt("verify", out)
    n_files = len(open_dataset(out).manifest.all_files())
    assert r.exit_code == 0, r.output
    assert f"{out}: OK ({n_files} files, 20 samples," in r.stdout


@pytest.mark.parametrize("where", [0.0, 0.5, -1])
def test_flipped_byte_in_a_shard(out, where):
    path = shard_path(out)
    data = bytearray(path.read_bytes())
    at = int(len(data) * where) if where >= 0 else len(data) - 1
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    assert_verify_fails(out, str(path), "checksum mismatch")


def test_deleted_shard(out):
    path = shard_path(out, 2)
    path.unlink()
    assert_verify_fails(out, str(path), "missing")


def test_truncated_shard(out):
    path = shard_path(out, 0)
    path.write_bytes(path.read_bytes()[:-100])
    assert_verify_fails(out, str(path), "bytes, the manifest says")


@pytest.mark.parametrize("rel", ["extra.bin", "train/notes.txt", "test/000099.tar"])
def test_unlisted_file(out, rel):
    (out / rel).write_bytes(b"extra")
    assert_verify_fails(out, str(out / rel), "not listed in the manifest")


@pytest.mark.parametrize("k", [0, -1])
def test_altered_zarr_metadata_or_labels(tmp_path, cifar10_dir, key_file, k):
    """zarr metadata and label chunks are listed under ``files`` and checked too."""
    out = make(tmp_path, cifar10_dir, key_file, "zarr")
    files = open_dataset(out).manifest.files
    assert {"zarr.json", "train/zarr.json", "train/images/zarr.json", "train/labels/c/0"} <= {f.path for f in files}
    path = out / files[k].path
    path.write_bytes(path.read_bytes() + b" ")
    assert_verify_fails(out, str(path))


def test_swapped_wds_shards_with_a_fixed_manifest(tmp_path, cifar10_dir, key_file):
    """Two shards swapped and their hashes swapped too: the sample keys give it away."""
    out = make(tmp_path, cifar10_dir, key_file, "wds")
    doc = json.loads((out / "manifest.json").read_text())
    shards = doc["splits"]["train"]["shards"]
    assert doc["files"] == []
    a, b = out / shards[0]["path"], out / shards[1]["path"]
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    shards[0]["sha256"], shards[1]["sha256"] = shards[1]["sha256"], shards[0]["sha256"]
    (out / "manifest.json").write_text(json.dumps(doc))
    assert_verify_fails(out, str(a), "expected sample 00000000")


@pytest.mark.parametrize(
    "text, phrase",
    [("{ truncated", "not valid JSON"), ('{"format": "ppencrypt-dataset", "version": 4}', "manifest version 4 is newer")],
    ids=["corrupt", "version-4"],
)
@pytest.mark.parametrize("command", ["verify", "inspect", "decrypt"])
def test_bad_manifest_is_a_clear_error(tmp_path, out, key_file, text, phrase, command):
    (out / "manifest.json").write_text(text)
    extra = [tmp_path / "dest", "--key", key_file] if command == "decrypt" else []
    r = ppencrypt(command, out, *extra)
    assert r.exit_code == 1, r.output
    assert f"{out}/manifest.json" in r.stderr and phrase in r.stderr
    assert "Traceback" not in r.output
    assert not (tmp_path / "dest").exists()


def test_missing_manifest(out):
    (out / "manifest.json").unlink()
    assert_verify_fails(out, str(out), "no manifest.json")
