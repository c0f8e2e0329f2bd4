"""The server is the adversary: every attack of docs/security.md, as a test that fails without its
defence. Each hostile input ends in a one-line error and a non-zero exit — never a traceback,
never an allocation the input did not pay for, never a file outside the output folder."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import CIFAR10_NAMES, DATA, encrypt, ppencrypt, tile_real, write_cifar10, write_imagefolder
from ppencrypt.formats import open_dataset
from ppencrypt.sources import open_source, read_head
from pptrain.cli import cli as pptrain

QUERY = sorted((DATA / "cifar10").glob("*.png"))[0]


def doc(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def save(root: Path, d: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(d))


def restamp(root: Path, rel: str) -> None:
    """The manifest made to agree with the file at ``rel``: what a server that writes both does."""
    d, data = doc(root), (root / rel).read_bytes()
    for entry in [sh for s in d["splits"].values() for sh in s["shards"]] + d["files"]:
        if entry["path"] == rel:
            entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    save(root, d)


def one_line_error(r, code: int = 1) -> str:
    """The result failed cleanly: the exit code, no traceback, one line on stderr."""
    assert r.exit_code == code, (r.output, r.exception)
    assert isinstance(r.exception, SystemExit), r.exception
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


def train(data: Path, run_dir: Path, *extra):
    return CliRunner().invoke(pptrain, [str(data), "--width", "4", "--batch-size", "5", "--epochs", "1", "--quiet",
                                        "--run-dir", str(run_dir), *map(str, extra)])  # fmt: skip


def readers(root: Path, tmp: Path, key: Path | None = None) -> dict:
    """Every command that reads a dataset, run on ``root`` (decrypt with ``key`` when given)."""
    key_args = ("--key", key) if key else ()
    return {
        "verify": ppencrypt("verify", root, "-q"),
        "inspect+read": ppencrypt("preview", root, "-o", tmp / "p.png"),
        "decrypt": ppencrypt("decrypt", root, tmp / "dest", "-q", *key_args),
        "pptrain": train(root, tmp / "run"),
        "pptrain --stream": train(root, tmp / "run-stream", "--stream", "--workers", 0),
    }


# --- 1. a mask is used once ------------------------------------------------------------------


def test_two_datasets_under_one_key_are_not_a_two_time_pad(tmp_path, cifar10, key_file):
    """A public dataset and a private one, encrypted with the same key file: XORing their
    ciphertexts must not give the XOR of their plain images (it did, exactly, before the salt)."""
    images, labels = tile_real(*cifar10, 40)
    public = write_imagefolder(tmp_path / "public", images[:20], labels[:20], splits={"train": 20})
    private = write_imagefolder(tmp_path / "private", images[20:], labels[20:], splits={"train": 20})
    for name, src in (("pub", public), ("priv", private)):
        encrypt(src, tmp_path / name, key_file, "--method", "np")  # the default scope: image
    c_pub, c_priv = (open_dataset(tmp_path / n).split("train").read().images for n in ("pub", "priv"))
    p_pub, p_priv = (read_head(open_source(str(s)).splits["train"], 20)[0] for s in (public, private))
    guess = c_pub ^ c_priv ^ p_pub  # the attacker knows the public images
    assert (guess == p_priv).all(axis=(1, 2, 3)).sum() == 0
    assert 0.4 < (guess == p_priv).mean() < 0.6  # chance: each value is right or flipped


def test_the_image_shape_and_block_size_are_part_of_every_mask(tmp_path, master_key):
    """A 32x32 mask is not the corner of the 64x64 one; a grayscale mask is not the red channel's;
    LE with 4x4 blocks does not share a key with 8x8 (dataset scope: keys are otherwise stable)."""
    from ppencrypt.ciphers import make_cipher
    from ppencrypt.keys import KeyRing

    ring = KeyRing(master_key.secret, "np", "dataset")
    np_ = make_cipher("np")
    small = np_.encrypt(np.zeros((1, 32, 32, 3), np.uint8), ring, None)
    big = np_.encrypt(np.zeros((1, 64, 64, 3), np.uint8), ring, None)
    gray = np_.encrypt(np.zeros((1, 32, 32, 1), np.uint8), ring, None)
    assert 0.4 < (small[0] != big[0, :32, :32]).mean() < 0.6
    assert 0.4 < (gray[0, ..., 0] != small[0, ..., 0]).mean() < 0.6
    le = KeyRing(master_key.secret, "le", "dataset")
    a = make_cipher("le", {"block_size": 4}).encrypt(np.zeros((1, 32, 32, 3), np.uint8), le, None)
    b = make_cipher("le", {"block_size": 8}).encrypt(np.zeros((1, 32, 32, 3), np.uint8), le, None)
    assert not np.array_equal(a, b)


def test_a_query_never_shares_a_dataset_images_mask(tmp_path, cifar10_dir, key_file, cifar10):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--method", "np")  # image scope
    r = ppencrypt("image", QUERY, "--like", out, "--key", key_file, "-o", tmp_path / "q")
    assert r.exit_code == 0, r.output
    query_mask = np.asarray(Image.open(tmp_path / "q" / "000000.png")) ^ cifar10[0][0]
    stored = open_dataset(out).split("test").read().images
    masks = stored ^ cifar10[0][:5]
    assert not any(np.array_equal(query_mask, m) for m in masks)


# --- 2. the manifest is authenticated by the key ---------------------------------------------


@pytest.fixture
def dataset(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--shard-size", 8)  # pe, image scope
    return out


def test_a_manifest_that_says_plain_gets_no_query_in_the_clear(tmp_path, dataset, key_file):
    """Before: exit 0 and the query written unencrypted."""
    d = doc(dataset)
    d["cipher"].update(method="plain", key_id=None, key_scope=None, derivations=[], family="none", pixel_group="identity", salt=None)
    d["mac"] = None
    save(dataset, d)
    line = one_line_error(ppencrypt("image", QUERY, "--like", dataset, "--key", key_file, "-o", tmp_path / "q"))
    assert "says the dataset is not encrypted" in line
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("change", [
    lambda d: d["cipher"].update(key_scope="dataset", salt=None),  # a weaker scope: masks shared with other data
    lambda d: d["cipher"].update(method="np", pixel_group="negations"),  # a weaker method
    lambda d: d["cipher"].update(salt="00" * 16),  # another dataset's salt: its masks
    lambda d: d["classes"].reverse(),  # labels that lie
    lambda d: d["splits"]["train"]["shards"][0].update(sha256="0" * 64),  # a swapped shard's hash
    lambda d: d.update(mac=None),
    lambda d: d.update(extra="anything the server adds"),
    lambda d: d["cipher"]["sources"].update(train="0" * 64),  # digests that let --reproduce take other data
], ids=["scope", "method", "salt", "classes", "shard-hash", "no-mac", "extra-field", "sources"])  # fmt: skip
def test_every_command_that_holds_the_key_refuses_an_altered_manifest(tmp_path, dataset, cifar10_dir, key_file, change):
    d = doc(dataset)
    change(d)
    save(dataset, d)
    for args in (("image", QUERY, "--like", dataset, "-o", tmp_path / "q"), ("decrypt", dataset, tmp_path / "dest"),
                 ("preview", dataset, "-o", tmp_path / "p.png"), ("verify", dataset),
                 ("audit", dataset, "--plain", cifar10_dir, "-n", 4, "-o", tmp_path / "r")):  # fmt: skip
        line = one_line_error(ppencrypt(*args, "--key", key_file))
        assert "manifest.json: " in line and ("MAC" in line), line
    assert not any((tmp_path / n).exists() for n in ("q", "dest", "p.png", "r.json", "r.png"))


def test_reproduce_refuses_an_altered_manifest_before_reading_the_source(tmp_path, dataset, cifar10_dir, key_file):
    """A server that rewrites the digests (or the salt) of a dataset cannot make --reproduce reuse
    a salt on other data: the manifest is authenticated first."""
    d = doc(dataset)
    d["cipher"]["sources"]["train"] = "0" * 64
    save(dataset, d)
    line = one_line_error(ppencrypt("dataset", cifar10_dir, tmp_path / "y", "--key", key_file, "--reproduce", dataset))
    assert "manifest.json: MAC mismatch" in line and not (tmp_path / "y").exists()


def test_audit_with_the_key_refuses_an_edited_scope_and_without_says_unauthenticated(tmp_path, dataset, cifar10_dir, key_file):
    """Issue 22, 9: the audit's header and key-space line come from the manifest, which the
    server can edit. Before: an image-scope dataset whose manifest was edited to say dataset
    scope was audited as 'pe (dataset-scope key)', 'one key per dataset', with nothing to tell.
    Now `audit --key` authenticates the manifest first, as verify and decrypt do, and a report
    made without the key says it is unauthenticated, on stdout and in report.json."""
    audit = ("audit", dataset, "--plain", cifar10_dir, "-n", 4)
    r = ppencrypt(*audit, "-o", tmp_path / "genuine", "--key", key_file)
    assert r.exit_code == 0, r.output
    assert "manifest: authenticated with the key (its MAC checks)" in r.stdout and "unauthenticated" not in r.stdout
    assert json.loads((tmp_path / "genuine.json").read_text())["manifest"] == "authenticated"
    d = doc(dataset)
    d["cipher"].update(key_scope="dataset", salt=None)
    save(dataset, d)
    line = one_line_error(ppencrypt(*audit, "-o", tmp_path / "edited", "--key", key_file))
    assert line == f"Error: {dataset / 'manifest.json'}: MAC mismatch: the manifest was altered after ppencrypt wrote it"
    assert not list(tmp_path.glob("edited*"))
    r = ppencrypt(*audit, "-o", tmp_path / "keyless")
    assert r.exit_code == 0, r.output
    header, trust = r.stdout.splitlines()[:2]
    assert header.startswith(f"{dataset}: pe (dataset-scope key)")  # what the edit says: without the key, nothing can tell
    assert trust.startswith("manifest: unauthenticated: method, scope and key space are what the manifest says")
    assert "(pass --key to check its MAC)" in trust
    assert json.loads((tmp_path / "keyless.json").read_text())["manifest"] == "unauthenticated"


def test_verify_without_the_key_checks_integrity_only_and_says_so(dataset, key_file):
    r = ppencrypt("verify", dataset)
    assert r.exit_code == 0 and "integrity only: pass --key to authenticate the manifest" in r.output
    r = ppencrypt("verify", dataset, "--key", key_file)
    assert r.exit_code == 0 and "authenticated with the key" in r.output


def test_a_manifest_downgraded_to_version_1_gets_no_query_unless_trusted(tmp_path, dataset, key_file, client_state):
    """Version 1 had no MAC: rewriting a manifest as version 1 must not let the server choose the
    scope of the user's queries. Where ppencrypt remembers writing the dataset, a manifest without
    its id is refused outright; elsewhere, only with a warning and --trust-manifest."""
    d = doc(dataset)
    d["version"] = 1
    for k in ("mac",):
        d.pop(k)
    for k in ("kdf", "salt"):
        d["cipher"].pop(k)
    save(dataset, d)
    line = one_line_error(ppencrypt("image", QUERY, "--like", dataset, "--key", key_file, "-o", tmp_path / "q"))
    assert "version 1 carries no MAC" in line and "--trust-manifest" in line
    line = one_line_error(ppencrypt("verify", dataset, "--key", key_file))
    assert line.startswith(f"Error: {dataset}: holds dataset none (manifest version 1), not ")
    shutil.rmtree(client_state)  # another machine
    r = ppencrypt("verify", dataset, "--key", key_file)
    assert r.exit_code == 0 and "warning: " in r.stderr and "version 1 carries no MAC" in r.stderr


# --- 3. hostile datasets read safely ---------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/escaped", "a/b", "..", "x\x1b[2J", "nul\x00l", ""])
def test_split_names_that_could_leave_dest_are_refused_on_read(tmp_path, dataset, key_file, name):
    d = doc(dataset)
    d["splits"][name] = d["splits"].pop("test")
    save(dataset, d)
    for cmd, r in {**readers(dataset, tmp_path), "inspect": ppencrypt("inspect", dataset)}.items():
        line = one_line_error(r)
        assert "is not a plain name" in line, (cmd, line)
    line = one_line_error(ppencrypt("decrypt", dataset, tmp_path / "dest" / "inner", "--key", key_file))
    assert not list(tmp_path.rglob("escaped*")) and not (tmp_path / "dest").exists()


def test_class_names_become_distinct_folders_inside_dest(tmp_path, cifar10, key_file):
    """A class named '../../x' or 'a/b' next to 'a_b' stays inside DEST, each in its own folder."""
    src = write_imagefolder(tmp_path / "src", *cifar10, CIFAR10_NAMES, splits={"train": 15, "test": 5})
    out = tmp_path / "out"
    encrypt(src, out, key_file, "--key-scope", "dataset")
    d = doc(out)
    d["classes"] = ["../../escaped", "a/b", "a_b", "..", "A_B", *d["classes"][5:]]
    # The key's MAC would catch this edit; decrypt must be safe with or without it, so sign it.
    save(out, d)
    from ppencrypt.keys import load_key, sign

    m = open_dataset(out).manifest
    d["mac"] = sign(m, load_key(key_file))
    save(out, d)
    r = ppencrypt("decrypt", out, tmp_path / "dest", "--key", key_file, "-q")
    assert r.exit_code == 0, r.output
    folders = {p.name for split in (tmp_path / "dest").iterdir() if split.is_dir() for p in split.iterdir()}
    assert {".._.._escaped", "a_b_1", "a_b_2", "_.._", "A_B_4"} <= folders
    assert not list(tmp_path.rglob("escaped*"))


@pytest.mark.parametrize("name", ["tab\there", "esc\x1b[31m", "del\x7f"])
def test_class_names_with_control_characters_are_refused(dataset, name):
    d = doc(dataset)
    d["classes"][0] = name
    save(dataset, d)
    line = one_line_error(ppencrypt("inspect", dataset))
    assert "holds a control character" in line and "\x1b" not in line


def test_a_zarr_store_that_asks_for_pickle_is_refused_before_decoding(tmp_path, cifar10_dir, key_file, monkeypatch):
    """A zarr v2 array whose filters include pickle ran the server's code on read (numcodecs
    0.16.1; later numcodecs refuse unless the process opted in — here it has). The reader opens
    zarr v3 metadata only, and our structure only."""
    import numcodecs.pickles

    monkeypatch.setattr(numcodecs.pickles, "ALLOW_UNSAFE_PICKLE_DECODE", True)
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--format", "zarr", "--shard-size", 8)
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    for rel in ("zarr.json", "train/zarr.json", "test/zarr.json", "train/images/zarr.json", "train/labels/zarr.json",
                "test/images/zarr.json", "test/labels/zarr.json"):  # fmt: skip
        (out / rel).unlink()
    (out / ".zgroup").write_text('{"zarr_format": 2}')
    (out / "train" / ".zgroup").write_text('{"zarr_format": 2}')
    images = out / "train" / "images"
    shutil.rmtree(images)
    images.mkdir()
    (images / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [15, 32, 32, 3], "chunks": [15, 32, 32, 3], "dtype": "|O", "compressor": None,
        "fill_value": None, "order": "C", "filters": [{"id": "vlen-utf8"}, {"id": "pickle"}]}))  # fmt: skip
    (images / "0.0.0.0").write_bytes(pickle.dumps(Payload()))
    labels = out / "train" / "labels"
    shutil.rmtree(labels)
    labels.mkdir()
    (labels / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [15], "chunks": [15], "dtype": "<i8", "compressor": None, "fill_value": 0,
        "order": "C", "filters": None}))  # fmt: skip
    (labels / "0").write_bytes(np.zeros(15, "<i8").tobytes())
    for cmd, r in readers(out, tmp_path).items():
        assert r.exit_code == 1, (cmd, r.output)
        one_line_error(r)
    assert not sentinel.exists()


def test_zarr_metadata_naming_another_codec_is_refused(tmp_path, cifar10_dir, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--format", "zarr", "--shard-size", 8)
    meta = out / "train" / "images" / "zarr.json"
    m = json.loads(meta.read_text())
    m["codecs"][0]["configuration"]["codecs"].append({"name": "numcodecs.pickle"})
    meta.write_text(json.dumps(m))
    restamp(out, "train/images/zarr.json")
    line = one_line_error(train(out, tmp_path / "run"))
    assert "codec 'numcodecs.pickle' is refused" in line


def test_claimed_sizes_are_checked_before_anything_is_allocated(tmp_path, dataset, key_file):
    """1M x 1M images, or a shard claiming more samples than its bytes: before, numpy was asked
    for 15 TiB (a MemoryError traceback)."""
    d = doc(dataset)
    d["image"]["height"] = d["image"]["width"] = 1 << 20
    save(dataset, d)
    for cmd, r in readers(dataset, tmp_path).items():
        assert "not one ppencrypt writes" in one_line_error(r), cmd
    d["image"]["height"] = d["image"]["width"] = 32
    train_split = d["splits"]["train"]
    train_split["shards"][-1]["count"] = 10**9
    train_split["count"] += 10**9 - 7
    train_split["per_class"][0] += 10**9 - 7
    save(dataset, d)
    for cmd, r in readers(dataset, tmp_path, key_file).items():
        expected = "MAC mismatch" if cmd == "decrypt" else "bytes can hold"  # with the key, the edit itself is caught
        assert expected in one_line_error(r), cmd


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder-link"])
def test_a_shard_must_be_a_regular_file_inside_the_dataset(tmp_path, dataset, key_file, kind):
    """A shard linked to /dev/zero (read for ever, then MemoryError), a FIFO (blocks), or a split
    folder linked elsewhere (reads outside the dataset): refused before a byte is read."""
    shard = dataset / "train" / "000000.tar"
    if kind == "dev-zero":
        shard.unlink()
        shard.symlink_to("/dev/zero")
    elif kind == "fifo":
        shard.unlink()
        os.mkfifo(shard)
    else:
        elsewhere = tmp_path / "elsewhere"
        (dataset / "train").rename(elsewhere)
        (dataset / "train").symlink_to(elsewhere)
    expected = {"dev-zero": "is a symbolic link", "fifo": "is not a regular file", "folder-link": "leads outside the dataset"}[kind]
    for cmd, r in readers(dataset, tmp_path, key_file).items():
        assert expected in one_line_error(r), cmd


def test_an_idx_file_with_overflowing_dimensions_is_a_clear_error(tmp_path, key_file):
    """2^31 x 2^31 x 4 overflows int64 to 0 = the bytes present: before, numpy's reshape raised."""
    src = tmp_path / "idx"
    src.mkdir()
    (src / "train-images-idx3-ubyte").write_bytes(bytes((0, 0, 8, 3)) + struct.pack(">III", 1 << 31, 1 << 31, 4))
    (src / "train-labels-idx1-ubyte").write_bytes(bytes((0, 0, 8, 1)) + struct.pack(">I", 0))
    line = one_line_error(ppencrypt("dataset", src, tmp_path / "out", "--key", key_file, "-q"))
    assert "more than this 16-byte file can hold" in line


def test_a_gzip_bomb_is_read_no_further_than_its_header_says(tmp_path, key_file):
    """A 1 MB .gz whose IDX header declares one 28x28 image but which inflates to 1 GiB: before,
    the whole file was decompressed (a MemoryError under a 700 MiB limit); now the reader stops
    one byte past the declared size."""
    import zlib

    src = tmp_path / "bomb"
    src.mkdir()
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(src / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(z.compress(bytes((0, 0, 8, 3)) + struct.pack(">III", 1, 28, 28)))
        zeros = bytes(1 << 24)
        for _ in range(64):  # 1 GiB
            f.write(z.compress(zeros))
        f.write(z.flush())
    (src / "train-labels-idx1-ubyte").write_bytes(bytes((0, 0, 8, 1)) + struct.pack(">I", 1) + b"\0")
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (700 << 20, 700 << 20)); "
            f"sys.argv = ['ppencrypt', 'dataset', {str(src)!r}, {str(tmp_path / 'out')!r}, '--key', {str(key_file)!r}, '-q', '--workers', '1']; "
            "from ppencrypt.cli import main; main()")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "train-images-idx3-ubyte.gz: truncated or corrupt (header says (1, 28, 28), more bytes of data)" in done.stderr


def test_a_cifar_pickle_cannot_ask_for_a_huge_array(tmp_path, cifar10, key_file):
    """numpy's _reconstruct allocates the shape the pickle names: a few bytes asked for 9 TiB."""
    src = write_cifar10(tmp_path / "cifar-10-batches-py", *cifar10)
    class Huge:
        def __reduce__(self):
            return (np._core.multiarray._reconstruct, (np.ndarray, (1 << 43,), b"b"))

    (src / "data_batch_1").write_bytes(pickle.dumps({b"data": Huge(), b"labels": []}, protocol=2))
    line = one_line_error(ppencrypt("dataset", src, tmp_path / "out", "--key", key_file, "-q"))
    assert "data_batch_1: not a readable CIFAR pickle (an array of" in line


@pytest.mark.parametrize("where", ["query", "preview", "run-dir"])
def test_a_planted_link_cannot_redirect_a_write(tmp_path, dataset, key_file, where):
    """Before: outputs went through a temporary file of a predictable name (`.000000.png.tmp`,
    `.checkpoint.pt.tmp`, ...), and a link planted there was followed. Temporary names are now
    unpredictable and created with O_EXCL | O_NOFOLLOW; a link planted at the target itself is
    replaced, not followed."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    if where == "query":
        (tmp_path / "q").mkdir()
        (tmp_path / "q" / ".000000.png.tmp").symlink_to(victim)
        (tmp_path / "q" / "000000.png").symlink_to(victim)
        r = ppencrypt("image", QUERY, "--like", dataset, "--key", key_file, "-o", tmp_path / "q", "--overwrite")
        written = [tmp_path / "q" / "000000.png"]
    elif where == "preview":
        (tmp_path / "p.png").symlink_to(victim)
        (tmp_path / ".p.png.tmp").symlink_to(victim)
        r = ppencrypt("preview", dataset, "-o", tmp_path / "p.png")
        written = [tmp_path / "p.png"]
    else:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        for name in (".checkpoint.pt.tmp", ".config.json.tmp", ".metrics.jsonl.tmp", ".curves.tmp.png"):
            (run_dir / name).symlink_to(victim)
        r = train(dataset, run_dir)
        written = [run_dir / n for n in ("checkpoint.pt", "config.json", "metrics.jsonl", "curves.png")]
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "precious"
    assert all(p.is_file() and not p.is_symlink() for p in written)


def test_overwrite_replaces_only_a_real_dataset(tmp_path, cifar10_dir, key_file):
    """Before: any folder holding a file named manifest.json was deleted."""
    extension = tmp_path / "my-extension"
    extension.mkdir()
    (extension / "manifest.json").write_text('{"manifest_version": 3, "name": "a browser extension"}')
    (extension / "background.js").write_text("// mine")
    line = one_line_error(ppencrypt("dataset", cifar10_dir, extension, "--key", key_file, "-q", "--overwrite"))
    assert "is not a ppencrypt dataset; refusing to replace it" in line
    assert (extension / "background.js").read_text() == "// mine"


@pytest.mark.parametrize("kind", ["symlink", "other-owner", "fifo"])
def test_key_files_are_checked_on_the_open_file(tmp_path, key_file, cifar10_dir, kind):
    path = tmp_path / "k2.key"
    if kind == "symlink":
        path.symlink_to(key_file)
        expected = "is a symbolic link; refusing to follow it"
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
        expected = "not a regular file"
    else:
        if os.getuid() != 0:
            pytest.skip("changing a file's owner needs root")
        shutil.copy(key_file, path)
        os.chmod(path, 0o600)
        os.chown(path, 65534, 65534)
        expected = "owned by another user"
    line = one_line_error(ppencrypt("dataset", cifar10_dir, tmp_path / "out", "--key", path, "-q"))
    assert expected in line


def test_key_files_are_ignored_by_git_everywhere():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["git", "check-ignore", "-q", "anywhere/deep/some.key"], cwd=root)
    assert done.returncode == 0


def test_dataset_scope_warns(tmp_path, cifar10_dir, key_file):
    """[P]'s shared mask stays available, with the audit's verdict said out loud."""
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "out", "--key", key_file, "--key-scope", "dataset", "-q")
    assert r.exit_code == 0
    warning = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "fr-shared" in warning[0] and "docs/privacy.md" in warning[0]
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "out2", "--key", key_file, "-q")
    assert r.exit_code == 0 and "warning" not in r.stderr
    assert open_dataset(tmp_path / "out2").manifest.cipher.key_scope == "image"


def test_a_genuine_manifest_of_another_dataset_of_the_key_is_refused(tmp_path, cifar10_dir, key_file, client_state):
    """Issue 22, 1: one key, two datasets — A (pe, image keys) and B (np, a dataset key, as made to
    reproduce the paper). The server serves B where A was: B's MAC checks (the key made it), but
    it is not the dataset the user means, and a query "like A" would go out under B's shared
    mask, which one known pair of B reveals. The client remembers the id of what it wrote where."""
    a, b = tmp_path / "a", tmp_path / "b"
    encrypt(cifar10_dir, a, key_file)
    encrypt(cifar10_dir, b, key_file, "--method", "np", "--key-scope", "dataset")
    meant = json.loads((a / "manifest.json").read_text())["dataset_id"]
    shutil.rmtree(a)
    shutil.copytree(b, a)  # the swap
    other = json.loads((a / "manifest.json").read_text())["dataset_id"]
    for args in (("verify", a), ("decrypt", a, tmp_path / "dest"), ("preview", a, "-o", tmp_path / "p.png"),
                 ("image", QUERY, "--like", a, "-o", tmp_path / "q", "--shared-mask"),
                 ("audit", a, "--plain", cifar10_dir, "-n", 4, "-o", tmp_path / "r")):  # fmt: skip
        line = one_line_error(ppencrypt(*args, "--key", key_file))
        assert line.startswith(f"Error: {a}: holds dataset {other}, not {meant} as ppencrypt dataset wrote there"), line
    assert not any((tmp_path / n).exists() for n in ("q", "dest", "p.png", "r.json"))
    # On another machine (no memory of A) the user names the dataset meant.
    shutil.rmtree(client_state)
    line = one_line_error(ppencrypt("verify", a, "--key", key_file, "--dataset-id", meant))
    assert line == f"Error: {a}: holds dataset {other}, not {meant} as --dataset-id says: another dataset of this key was put in its place; refusing it"
    assert ppencrypt("verify", a, "--key", key_file, "--dataset-id", other).exit_code == 0


@pytest.mark.parametrize("method, scope, why", [
    ("np", "dataset", "its key scope is dataset"),
    ("etc", "image", "method etc is block-wise"),
])  # fmt: skip
def test_a_query_under_a_shared_mask_needs_the_user_to_say_so(tmp_path, cifar10_dir, key_file, method, scope, why):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--method", method, "--key-scope", scope)
    r = ppencrypt("image", QUERY, "--like", out, "-o", tmp_path / "q", "--key", key_file)
    assert r.exit_code == 1 and one_line_error(r).startswith(f"Error: {out}: {why}") and "--shared-mask" in r.stderr
    assert not (tmp_path / "q").exists()
    r = ppencrypt("image", QUERY, "--like", out, "-o", tmp_path / "q", "--key", key_file, "--shared-mask")
    assert r.exit_code == 0 and f"encrypted like {out}: method {method}, {scope} scope" in r.stderr


def test_image_says_what_a_query_gets(tmp_path, dataset, key_file):
    r = ppencrypt("image", QUERY, "--like", dataset, "-o", tmp_path / "q", "--key", key_file)
    dataset_id = json.loads((dataset / "manifest.json").read_text())["dataset_id"]
    assert r.exit_code == 0, r.output
    assert r.stderr == f"encrypted like {dataset}: method pe, image scope (a fresh mask per query), dataset {dataset_id}\n"


def test_a_state_folder_that_cannot_be_written_costs_a_warning_not_the_dataset(tmp_path, cifar10_dir, key_file, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder would be")
    monkeypatch.setenv("PPENCRYPT_STATE", str(blocker / "ppencrypt"))
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "out", "--key", key_file, "-q")
    dataset_id = json.loads((tmp_path / "out" / "manifest.json").read_text())["dataset_id"]
    assert r.exit_code == 0 and "warning: " in r.stderr and f"could not remember dataset {dataset_id}" in r.stderr, r.output
    assert f"--dataset-id {dataset_id}" in r.stderr
