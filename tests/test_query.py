"""``ppencrypt image``: query images encrypted the way a dataset was (for inference)."""

import numpy as np
import pytest
from conftest import DATA, encrypt, ppencrypt, read_pngs

from ppencrypt.formats import open_dataset

# The fixtures' train split is the vendored files from the sixth on, in order.
VENDORED = {"cifar10": sorted((DATA / "cifar10").glob("*.png")), "fmnist": sorted((DATA / "fashion-mnist").glob("*.png"))}


def query(out, dest, key_file, *images, expect: int = 0):
    key = ("--key", key_file) if key_file is not None else ()  # a plain dataset's queries take none
    # [P]'s model: queries share the dataset-scope mask, which image refuses unless asked (test_hostile.py)
    r = ppencrypt("image", *images, "--like", out, *key, "-o", dest, "--shared-mask")
    assert r.exit_code == expect, r.output
    return r


def encrypted_queries(dest) -> list[np.ndarray]:
    return list(read_pngs(dest).values())


@pytest.mark.parametrize("method", ["pe", "np", "plain"])
@pytest.mark.parametrize("data", ["cifar10", "fmnist"])
def test_dataset_scope_query_equals_the_datasets_encryption(request, tmp_path, key_file, data, method):
    out = tmp_path / "out"
    scope = ("--key-scope", "dataset") if method != "plain" else ()
    encrypt(request.getfixturevalue(f"{data}_dir"), out, key_file, "--method", method, *scope)
    picks = [0, 3, 7]
    r = query(out, tmp_path / "q", key_file if method != "plain" else None, *(VENDORED[data][5 + i] for i in picks))
    assert r.stdout.splitlines() == [f"{VENDORED[data][5 + i]}\t{tmp_path / 'q' / f'{k:06d}.png'}" for k, i in enumerate(picks)]
    stored = open_dataset(out).split("train").read().images
    got = encrypted_queries(tmp_path / "q")
    assert len(got) == 3
    for image, i in zip(got, picks):
        assert np.array_equal(image, stored[i])


@pytest.fixture
def image_scope(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--method", "np", "--key-scope", "image")
    return out


def test_image_scope_same_query_same_output(tmp_path, image_scope, key_file):
    """The mask follows the query's pixels, not its position or the call."""
    a, b = VENDORED["cifar10"][:2]
    query(image_scope, tmp_path / "q1", key_file, a, b)
    query(image_scope, tmp_path / "q2", key_file, b, a, a)
    first, second = encrypted_queries(tmp_path / "q1"), encrypted_queries(tmp_path / "q2")
    assert np.array_equal(first[0], second[1]) and np.array_equal(first[0], second[2])
    assert np.array_equal(first[1], second[0])


def test_image_scope_different_queries_get_different_masks(tmp_path, image_scope, key_file, cifar10):
    query(image_scope, tmp_path / "q", key_file, *VENDORED["cifar10"][:4])
    masks = [enc ^ plain for enc, plain in zip(encrypted_queries(tmp_path / "q"), cifar10[0][:4])]
    assert all(0.4 < (m == 255).mean() < 0.6 for m in masks)  # NP masks: about half the values flipped
    assert len({m.tobytes() for m in masks}) == 4
    # and none is the dataset's mask of the same image at its index
    stored = open_dataset(image_scope).split("test").read().images
    assert not any(np.array_equal(masks[i], stored[i] ^ cifar10[0][i]) for i in range(4))


def test_wrong_size_query_refused_naming_the_file(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file)
    small = VENDORED["fmnist"][0]
    r = query(out, tmp_path / "q", key_file, VENDORED["cifar10"][0], small, expect=1)
    assert f"{small}: 28x28" in r.stderr and "32x32" in r.stderr and "--size" in r.stderr
    assert not (tmp_path / "q").exists()


def test_query_is_resized_like_the_dataset(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--size", 24, "--key-scope", "dataset")
    query(out, tmp_path / "q", key_file, VENDORED["fmnist"][0], VENDORED["cifar10"][6])
    got = encrypted_queries(tmp_path / "q")
    assert [g.shape for g in got] == [(24, 24, 3), (24, 24, 3)]
    assert np.array_equal(got[1], open_dataset(out).split("train").read().images[1])


def test_wrong_key_refused(tmp_path, cifar10_dir, key_file):
    out, other = tmp_path / "out", tmp_path / "keys" / "other.key"
    encrypt(cifar10_dir, out, key_file)
    ppencrypt("keygen", other)
    r = query(out, tmp_path / "q", other, VENDORED["cifar10"][0], expect=1)
    assert str(other) in r.stderr and "wrong key" in r.stderr
    assert not (tmp_path / "q").exists()


def test_existing_outputs_need_overwrite(tmp_path, cifar10_dir, key_file):
    out, dest = tmp_path / "out", tmp_path / "q"
    encrypt(cifar10_dir, out, key_file)
    query(out, dest, key_file, VENDORED["cifar10"][0])
    before = (dest / "000000.png").read_bytes()
    r = query(out, dest, key_file, VENDORED["cifar10"][1], expect=1)
    assert f"{dest / '000000.png'}: already exists" in r.stderr
    assert (dest / "000000.png").read_bytes() == before
    r = ppencrypt("image", VENDORED["cifar10"][1], "--like", out, "--key", key_file, "-o", dest, "--overwrite")
    assert r.exit_code == 0 and (dest / "000000.png").read_bytes() != before


def test_bad_query_file_named(tmp_path, cifar10_dir, key_file):
    out, bad = tmp_path / "out", tmp_path / "broken.png"
    encrypt(cifar10_dir, out, key_file)
    bad.write_bytes(b"not an image")
    r = query(out, tmp_path / "q", key_file, bad, expect=1)
    assert f"{bad}: not an image file" in r.stderr
    assert not (tmp_path / "q").exists()
