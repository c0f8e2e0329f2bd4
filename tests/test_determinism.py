"""The same input, key and options give the same bytes: run to run, and for any --workers."""

import pytest
from conftest import encrypt, ppencrypt, tile_real, tree_bytes, write_imagefolder


@pytest.mark.parametrize("storage", ["wds", "zarr"])
@pytest.mark.parametrize("scope", ["dataset", "image"])
def test_two_runs_are_byte_identical(tmp_path, cifar10_dir, key_file, storage, scope):
    outs = [tmp_path / "a", tmp_path / "b"]
    encrypt(cifar10_dir, outs[0], key_file, "--format", storage, "--key-scope", scope)
    # A new dataset gets a fresh id (and, image scope, salt): the same bytes are a reproduction.
    encrypt(cifar10_dir, outs[1], key_file, "--format", storage, "--key-scope", scope, "--reproduce", outs[0])
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
    for w, out in outs.items():
        again = ("--reproduce", outs[1]) if w == 2 else ()
        encrypt(big_folder, out, key_file, "--format", storage, "--key-scope", "image", "--shard-size", 32, *again, workers=w)
    a, b = (tree_bytes(o) for o in outs.values())
    assert len(a) >= 8  # 5 + 2 shards and the manifest (more files for zarr)
    assert a == b


def test_two_image_scope_runs_share_no_mask(tmp_path, cifar10_dir, cifar10, key_file):
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
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "c", "--key", key_file, "--method", "np", "--key-scope", "dataset", "--reproduce", outs[0], "-q")
    assert r.exit_code == 1 and "made with method np {} and image scope, not np {} and dataset scope" in r.output


def test_reproducing_a_dataset_from_other_data_is_refused_before_anything_is_written(tmp_path, cifar10_dir, cifar10, key_file):
    """The two-time pad of docs/security.md: a salt reused on other images gives them the first
    dataset's masks, so the two ciphertexts XOR to the XOR of the two plain sets. --reproduce
    checks the source's keyed digests (manifest cipher.sources) and refuses other data."""
    from conftest import write_cifar10

    from ppencrypt.formats import open_dataset

    encrypt(cifar10_dir, tmp_path / "x", key_file, "--method", "np")
    images, labels = cifar10
    other = write_cifar10(tmp_path / "other", images[:, ::-1].copy(), labels)  # the same count, other pixels
    r = ppencrypt("dataset", other, tmp_path / "y", "--key", key_file, "--method", "np", "--reproduce", tmp_path / "x", "-q")
    assert r.exit_code == 1
    assert r.stderr == (f"Error: {other}: not the source --reproduce {tmp_path / 'x'} was made from (split test differs); "
                        "reusing its salt would give these images its masks; nothing written\n")  # fmt: skip
    assert not any(p.name.startswith(".y") or p.name == "y" for p in tmp_path.iterdir())
    # The same source reproduces byte for byte, and the sources' digests are in the signed manifest.
    encrypt(cifar10_dir, tmp_path / "z", key_file, "--method", "np", "--reproduce", tmp_path / "x")
    assert tree_bytes(tmp_path / "z") == tree_bytes(tmp_path / "x")
    assert set(open_dataset(tmp_path / "x").manifest.cipher.sources) == {"train", "test"}


def test_salt_by_hand_is_refused(tmp_path, cifar10_dir, key_file):
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "y", "--key", key_file, "--salt", "00" * 16, "-q")
    assert r.exit_code == 2 and "Invalid value for '--salt': removed" in r.output and "--reproduce DATASET" in r.output
    assert not (tmp_path / "y").exists()
