"""Every class of bad input, through the CLI: the exact exit code, a message that names the
culprit, and nothing left behind (no OUT, no hidden .OUT.partial-* sibling)."""

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from conftest import encrypt, leftovers, ppencrypt, ppencrypt_process, tree_bytes, write_imagefolder
from PIL import Image

TOKEN = "zq7bad"  # in every bad file's name, to search the output for


def image_bytes(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt)
    return buf.getvalue()


def png_bomb(_) -> bytes:
    """A valid PNG header claiming 30000 x 30000 pixels, and no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


# kind: (file name, its bytes made from a real image, the reason printed)
BAD_FILES = {
    "truncated-png": (f"{TOKEN}.png", lambda im: image_bytes(im, "PNG")[:1500], "truncated or corrupt image"),
    "truncated-jpeg": (f"{TOKEN}.jpg", lambda im: image_bytes(im, "JPEG")[:800], "truncated or corrupt image"),
    "zero-byte": (f"{TOKEN}.png", lambda im: b"", "empty file (0 bytes)"),
    "text-named-png": (f"{TOKEN}.png", lambda im: b"a text file, not a picture\n", "not an image file"),
    "notes-txt": (f"notes_{TOKEN}.txt", lambda im: b"label notes\n", "not an image file"),
    "decompression-bomb": (f"{TOKEN}.png", png_bomb, "image too large"),
}


@pytest.fixture
def src(tmp_path, cifar10):
    """The 20 CIFAR-10 images as class folders (flat ImageFolder)."""
    return write_imagefolder(tmp_path / "src", *cifar10)


def add_bad(src, cifar10, kind, folder="class_3") -> tuple[str, str]:
    """Put one bad file into src/<folder>: (its name as messages show it, the reason)."""
    name, make, reason = BAD_FILES[kind]
    (src / folder).mkdir(exist_ok=True)
    (src / folder / name).write_bytes(make(cifar10[0][0]))
    return f"{src}/{folder}/{name}", reason


def run(workers: int, *args) -> tuple[int, str, str]:
    """ppencrypt ARGS --workers N: in-process for 1, as a process for more (a forked pool)."""
    if workers == 1:
        r = ppencrypt(*args, "--workers", 1)
        return r.exit_code, r.stdout, r.stderr
    p = ppencrypt_process(*args, "--workers", workers)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


def assert_fails(out, code: int, *phrases, args=(), result=None):
    r = result or ppencrypt(*args)
    assert r.exit_code == code, r.output
    for phrase in phrases:
        assert phrase in r.stderr, r.stderr
    assert "Traceback" not in r.output
    assert leftovers(out) == []
    return r


# --- bad source files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, workers",
    [(k, 1) for k in BAD_FILES] + [("truncated-png", 2), ("truncated-jpeg", 2)],
)
def test_bad_file_stops_the_job_naming_it(tmp_path, src, cifar10, key_file, kind, workers):
    name, reason = add_bad(src, cifar10, kind)
    out = tmp_path / "out"
    code, _, err = run(workers, "dataset", src, out, "--key", key_file, "--quiet")
    assert code == 1, err
    assert f"{name}: {reason}" in err
    assert "Traceback" not in err
    assert leftovers(out) == []


@pytest.mark.parametrize(
    "kinds, workers, storage",
    [
        (["truncated-png"], 1, "wds"),
        (["truncated-jpeg"], 1, "zarr"),
        (list(BAD_FILES)[2:], 1, "wds"),
        (["truncated-png"], 2, "wds"),
        (["truncated-jpeg"], 2, "zarr"),
    ],
    ids=["png", "jpeg-zarr", "rest", "png-workers2", "jpeg-zarr-workers2"],
)
def test_skip_bad_skips_names_and_counts_them(tmp_path, src, cifar10, key_file, kinds, workers, storage):
    bad = [add_bad(src, cifar10, kind, f"class_{i}") for i, kind in enumerate(kinds)]
    out = tmp_path / "out"
    code, _, err = run(workers, "dataset", src, out, "--key", key_file, "--quiet", "--skip-bad", "--shard-size", 4, "--format", storage)
    assert code == 0, err
    for name, reason in bad:
        assert f"skipped {name}: {reason}" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["skipped_bad_files"] == len(kinds)
    assert manifest["splits"]["train"]["count"] == 20
    assert not any(TOKEN.encode() in data for data in tree_bytes(out).values())
    assert ppencrypt("verify", out).exit_code == 0


@pytest.mark.parametrize("storage", ["wds", "zarr"])
def test_skip_bad_drops_a_split_with_no_good_file(tmp_path, cifar10, key_file, storage):
    src = write_imagefolder(tmp_path / "src", *cifar10, splits={"train": 20})
    (src / "test").mkdir()
    add_bad(src / "test", cifar10, "truncated-jpeg", "class_0")
    out = tmp_path / "out"
    encrypt(src, out, key_file, "--skip-bad", "--format", storage)
    m = json.loads((out / "manifest.json").read_text())
    assert list(m["splits"]) == ["train"] and m["source"]["skipped_bad_files"] == 1
    assert not (out / "test").exists()
    assert ppencrypt("verify", out).exit_code == 0


def test_skip_bad_with_nothing_left(tmp_path, cifar10, key_file):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.png").write_bytes(b"")
    out = tmp_path / "out"
    assert_fails(out, 1, f"{src}: no readable images found (1 bad files skipped)",
                 args=("dataset", src, out, "--key", key_file, "--skip-bad", "--workers", 1))  # fmt: skip


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "empty directory"),
        (lambda p: (p / "cats").mkdir(parents=True), "no images found in its class folders"),
        (lambda p: None, "no such directory"),
        (lambda p: (p.mkdir(), (p / "readme.md").write_text("x")), "no dataset found"),
    ],
    ids=["empty", "empty-class-folder", "missing", "no-dataset"],
)
def test_source_without_images(tmp_path, key_file, make, message):
    src, out = tmp_path / "src", tmp_path / "out"
    make(src)
    assert_fails(out, 1, str(src), message, args=("dataset", src, out, "--key", key_file, "--workers", 1))


def test_mixed_sizes_need_size(tmp_path, cifar10, fmnist, key_file):
    src = write_imagefolder(tmp_path / "src", *cifar10)
    Image.fromarray(fmnist[0][0, ..., 0]).save(src / "class_9" / "small.png")
    out = tmp_path / "out"
    r = assert_fails(out, 1, "images differ in size", f"{src}/class_9/small.png", "28x28", "32x32", "--size N",
                     args=("dataset", src, out, "--key", key_file, "--workers", 1))  # fmt: skip
    assert r.stderr.count(f"{src}/") == 2  # the two files
    encrypt(src, out, key_file, "--size", 32)


@pytest.mark.parametrize(
    "damage, culprit, message",
    [
        (lambda r: (r / "data_batch_3").write_bytes((r / "data_batch_3").read_bytes()[:500]), "data_batch_3", "not a readable CIFAR pickle"),
        (lambda r: (r / "data_batch_2").unlink(), "data_batch_2", "missing"),
        (lambda r: (r / "batches.meta").write_bytes(b"\x80\x02}q\x00."), "batches.meta", "no label_names"),
    ],
    ids=["truncated-pickle", "missing-batch", "meta-without-names"],
)
def test_damaged_cifar(tmp_path, cifar10_dir, key_file, damage, culprit, message):
    damage(cifar10_dir)
    out = tmp_path / "out"
    assert_fails(out, 1, f"{cifar10_dir}/{culprit}", message, args=("dataset", cifar10_dir, out, "--key", key_file))


@pytest.mark.parametrize(
    "damage, culprit, message",
    [
        (lambda r: (r / "train-images-idx3-ubyte.gz").write_bytes((r / "train-images-idx3-ubyte.gz").read_bytes()[:300]), "train-images-idx3-ubyte.gz", "truncated or corrupt"),
        (lambda r: (r / "t10k-labels-idx1-ubyte.gz").unlink(), "t10k-labels-idx1-ubyte.gz", "missing"),
        (lambda r: (r / "train-labels-idx1-ubyte.gz").write_bytes((r / "t10k-labels-idx1-ubyte.gz").read_bytes()), "train-labels-idx1-ubyte.gz", "5 labels for 15 images"),
    ],
    ids=["truncated", "missing-labels", "label-count"],
)
def test_damaged_idx(tmp_path, fmnist_dir, key_file, damage, culprit, message):
    damage(fmnist_dir)
    out = tmp_path / "out"
    assert_fails(out, 1, f"{fmnist_dir}/{culprit}", message, args=("dataset", fmnist_dir, out, "--key", key_file))


# --- the output -------------------------------------------------------------------------------


def test_existing_out_needs_overwrite(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    r = ppencrypt("dataset", cifar10_dir, out, "--key", key_file)
    assert r.exit_code == 1 and f"{out}: already exists (pass --overwrite" in r.stderr
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert leftovers(out) == ["out"]


def test_overwrite_replaces(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--format", "zarr")
    (out / "old.txt").write_text("old")
    encrypt(cifar10_dir, out, key_file, "--overwrite")
    assert not (out / "old.txt").exists() and (out / "manifest.json").is_file()
    assert leftovers(out) == ["out"]
    assert ppencrypt("verify", out).exit_code == 0


def test_overwrite_refuses_a_folder_that_is_not_a_dataset(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "letter.txt").write_text("precious")
    r = ppencrypt("dataset", cifar10_dir, out, "--key", key_file, "--overwrite")
    assert r.exit_code == 1
    assert f"{out}: exists and is not a ppencrypt dataset; refusing to replace it" in r.output
    assert (out / "letter.txt").read_text() == "precious" and leftovers(out) == ["documents"]


def test_failed_overwrite_keeps_the_old_output(tmp_path, src, cifar10, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file)
    before = tree_bytes(out)
    add_bad(src, cifar10, "zero-byte")
    r = ppencrypt("dataset", src, out, "--key", key_file, "--overwrite", "--workers", 1)
    assert r.exit_code == 1 and "empty file" in r.stderr
    assert tree_bytes(out) == before and leftovers(out) == ["out"]


def test_out_that_is_a_file(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    out.write_text("a file")
    r = ppencrypt("dataset", cifar10_dir, out, "--key", key_file, "--overwrite")
    assert r.exit_code == 1 and f"{out}: exists and is not a directory" in r.stderr
    assert out.read_text() == "a file"


def test_out_inside_source(tmp_path, cifar10_dir, key_file):
    out = cifar10_dir / "enc"
    assert_fails(out, 1, "must not be inside the source", args=("dataset", cifar10_dir, out, "--key", key_file))


# --- keys -------------------------------------------------------------------------------------


def test_missing_key_file(tmp_path, cifar10_dir):
    out, key = tmp_path / "out", tmp_path / "none.key"
    assert_fails(out, 1, f"{key}: no such key file", f"ppencrypt keygen {key}", args=("dataset", cifar10_dir, out, "--key", key))


def test_readable_key_file_refused(tmp_path, cifar10_dir, key_file):
    key_file.chmod(0o644)
    out = tmp_path / "out"
    assert_fails(out, 1, f"{key_file}: permissions 0644 are too open", f"chmod 600 {key_file}",
                 args=("dataset", cifar10_dir, out, "--key", key_file))  # fmt: skip


def test_keyed_method_without_key(tmp_path, cifar10_dir):
    out = tmp_path / "out"
    assert_fails(out, 1, "method 'pe' encrypts with a key: pass --key", args=("dataset", cifar10_dir, out))


@pytest.mark.parametrize("command", ["decrypt", "preview"])
def test_the_wrong_key_is_refused_before_anything_is_written(tmp_path, encrypted, command):
    other = tmp_path / "keys" / "other.key"
    assert ppencrypt("keygen", other).exit_code == 0
    dest = tmp_path / "dest"
    target = (dest,) if command == "decrypt" else ("-o", dest)
    assert_fails(dest, 1, str(other), "wrong key", args=(command, encrypted, *target, "--key", other))


def test_decrypt_without_a_key(tmp_path, encrypted):
    dest = tmp_path / "dest"
    assert_fails(dest, 1, "pass --key", args=("decrypt", encrypted, dest))


@pytest.mark.parametrize(
    "command, target",
    [("decrypt", "plain"), ("preview", "look.png")],
)
def test_decrypted_images_never_land_inside_the_dataset(encrypted, key_file, command, target):
    """OUT is what goes to the untrusted server: writing decryptions into it would ship them."""
    inside = encrypted / target
    args = (encrypted, inside, "--key", key_file) if command == "decrypt" else (encrypted, "-o", inside, "--key", key_file)
    r = ppencrypt(command, *args)
    assert r.exit_code == 1, r.output
    assert "inside" in r.stderr
    assert not inside.exists() and ppencrypt("verify", encrypted).exit_code == 0


def test_decrypt_into_an_existing_dest(tmp_path, encrypted, key_file):
    dest = tmp_path / "dest"
    dest.mkdir()
    r = ppencrypt("decrypt", encrypted, dest, "--key", key_file)
    assert r.exit_code == 1 and "already exists" in r.stderr and list(dest.iterdir()) == []


# --- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["dataset", "{src}", "{out}", "--key", "{key}", "--method", "rot13"], "--method"),
        (["dataset", "{src}", "{out}", "--key", "{key}", "--size", "0"], "--size"),
        (["dataset", "{src}", "{out}", "--key", "{key}", "--shard-size", "0"], "--shard-size"),
        (["dataset", "{src}", "{out}", "--key", "{key}", "--workers", "0"], "--workers"),
        (["dataset", "{src}", "{out}", "--key", "{key}", "--format", "hdf5"], "--format"),
        (["dataset", "{src}", "{out}", "--key", "{key}", "--key-scope", "block"], "--key-scope"),
        (["dataset", "{src}"], "Missing argument 'OUT'"),
        (["dataset"], "Missing argument 'SRC'"),
        (["decrypt", "{out}"], "Missing argument 'DEST'"),
        (["image", "{src}/x.png", "-o", "{out}"], "--like"),
        (["preview", "{out}"], "--output"),
        (["keygen"], "Missing argument 'PATH'"),
        (["encrypt-everything"], "No such command"),
    ],
)
def test_usage_errors_exit_2(tmp_path, cifar10_dir, key_file, args, phrase):
    out = tmp_path / "out"
    fill = {"src": cifar10_dir, "out": out, "key": key_file}
    assert_fails(out, 2, phrase, args=[a.format(**fill) for a in args])


def test_source_that_is_a_file_is_a_usage_error(tmp_path, key_file):
    src = tmp_path / "src.png"
    src.write_bytes(b"x")
    assert_fails(tmp_path / "out", 2, "src.png", args=("dataset", src, tmp_path / "out", "--key", key_file))


def test_no_partial_survives_a_failure_midway(tmp_path, src, cifar10, key_file):
    """A bad file found after shards were written: the partial output goes too."""
    big = write_imagefolder(tmp_path / "big", *cifar10)
    (big / "zz_last").mkdir()
    (big / "zz_last" / "late.jpg").write_bytes(BAD_FILES["truncated-jpeg"][1](cifar10[0][1]))
    out = tmp_path / "out"
    r = ppencrypt("dataset", big, out, "--key", key_file, "--workers", 1, "--shard-size", 1)
    assert_fails(out, 1, f"{big}/zz_last/late.jpg", result=r)
    assert sorted(os.listdir(tmp_path)) == sorted(["big", "keys", "src"])
