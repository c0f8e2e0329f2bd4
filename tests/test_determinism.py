"""The same input, key and options give the same bytes: run to run, and for any --workers."""

import pytest
from conftest import SALT, encrypt, ppencrypt, ppencrypt_process, tile_real, tree_bytes, write_imagefolder


@pytest.mark.parametrize("storage", ["wds", "zarr"])
@pytest.mark.parametrize("scope", ["dataset", "image"])
def test_two_runs_are_byte_identical(tmp_path, cifar10_dir, key_file, storage, scope):
    outs = [tmp_path / "a", tmp_path / "b"]
    salt = ("--salt", SALT.hex()) if scope == "image" else ()  # an image-scope dataset gets a fresh one otherwise
    for out in outs:
        encrypt(cifar10_dir, out, key_file, "--format", storage, "--key-scope", scope, *salt)
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
                          "--salt", SALT.hex(), "--shard-size", 32, "--workers", w, "--quiet")
        for w, out in outs.items()
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    a, b = (tree_bytes(o) for o in outs.values())
    assert len(a) >= 8  # 5 + 2 shards and the manifest (more files for zarr)
    assert a == b


def test_without_salt_two_image_scope_runs_share_no_mask(tmp_path, cifar10_dir, cifar10, key_file):
    """Each image-scope dataset gets a fresh salt, so the same key never encrypts image i of two
    datasets under one mask (the two-time pad of docs/security.md)."""
    from ppencrypt.formats import open_dataset

    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        encrypt(cifar10_dir, out, key_file, "--method", "np", "--key-scope", "image")
    salts = [open_dataset(o).manifest.cipher.salt for o in outs]
    assert salts[0] != salts[1] and all(len(s) == 32 for s in salts)
    a, b = (open_dataset(o).split("train").read().images for o in outs)
    # Same plain images: the XOR of the two ciphertexts is the XOR of the two masks, which
    # would be all zeros if the masks were reused; independent NP masks differ in about half.
    assert 0.4 < ((a ^ b) == 255).mean() < 0.6
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "c", "--key", key_file, "--key-scope", "dataset", "--salt", salts[0], "-q")
    assert r.exit_code == 2 and "a dataset-scope key uses no salt" in r.output
