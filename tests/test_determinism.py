"""The same input, key and options give the same bytes: run to run, and for any --workers."""

import pytest
from conftest import encrypt, ppencrypt_process, tile_real, tree_bytes, write_imagefolder


@pytest.mark.parametrize("storage", ["wds", "zarr"])
@pytest.mark.parametrize("scope", ["dataset", "image"])
def test_two_runs_are_byte_identical(tmp_path, cifar10_dir, key_file, storage, scope):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        encrypt(cifar10_dir, out, key_file, "--format", storage, "--key-scope", scope)
    a, b = (tree_bytes(o) for o in outs)
    assert "manifest.json" in a and len(a) > 3
    assert a == b


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory, cifar10):
    """200 real-derived PNGs (150 train, 50 test): several 64-file decode tasks per split."""
    images, labels = tile_real(*cifar10, 200)
    return write_imagefolder(tmp_path_factory.mktemp("big") / "folder", images, labels, splits={"train": 150, "test": 50})


@pytest.mark.parametrize("storage", ["wds", "zarr"])
def test_worker_count_does_not_change_the_bytes(tmp_path, big_folder, key_file, storage):
    outs = {w: tmp_path / f"w{w}" for w in (1, 2)}
    procs = [
        ppencrypt_process("dataset", big_folder, out, "--key", key_file, "--format", storage, "--key-scope", "image",
                          "--shard-size", 32, "--workers", w, "--quiet")
        for w, out in outs.items()
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    a, b = (tree_bytes(o) for o in outs.values())
    assert len(a) >= 8  # 5 + 2 shards and the manifest (more files for zarr)
    assert a == b
