"""The output formats: shard layout, the manifest contract, our readers, and stock
webdataset / zarr / tarfile reading what we wrote."""

import io
import json
import re
import tarfile

import numpy as np
import pytest
import webdataset
import zarr
from conftest import CIFAR10_NAMES, encrypt

from ppencrypt.ciphers import make_cipher
from ppencrypt.keys import KeyRing
from ppencrypt.errors import ManifestError, ShardError
from ppencrypt.formats import open_dataset
from ppencrypt.formats.manifest import Manifest
from ppencrypt.formats.zarrstore import inner_chunk
from ppencrypt.keys import load_key

STORAGES = ["wds", "zarr"]


@pytest.fixture(params=STORAGES)
def storage(request):
    return request.param


def make(tmp_path, cifar10_dir, key_file, storage):
    """The CIFAR-10 fixture (15 train, 5 test) encrypted with pe (dataset scope), 4 samples per shard."""
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--format", storage, "--key-scope", "dataset")
    return out


@pytest.fixture
def made(tmp_path, cifar10_dir, key_file, storage):
    return make(tmp_path, cifar10_dir, key_file, storage)


@pytest.fixture
def wds(tmp_path, cifar10_dir, key_file):
    return make(tmp_path, cifar10_dir, key_file, "wds")


@pytest.fixture
def zarr_store(tmp_path, cifar10_dir, key_file):
    return make(tmp_path, cifar10_dir, key_file, "zarr")


def expected_split(cifar10, key_file, split):
    """The pe encryption of the plain split, computed without the job."""
    images, labels = cifar10
    part = slice(5, None) if split == "train" else slice(None, 5)
    ring = KeyRing(load_key(key_file).secret, "pe", "dataset")
    return make_cipher("pe").encrypt(images[part], ring, None), labels[part]


def test_manifest_describes_the_dataset(made, storage, key_file):
    m = open_dataset(made).manifest
    assert (m.storage, m.shape, m.classes, m.layout, m.skipped, m.resize) == (storage, (32, 32, 3), CIFAR10_NAMES, "cifar10", 0, None)
    assert (m.cipher.method, m.cipher.key_id, m.cipher.key_scope) == ("pe", load_key(key_file).key_id, "dataset")
    train = m.splits["train"]
    assert train.count == 15 and sum(train.per_class) == 15
    assert [(s.count, s.first) for s in train.shards] == [(4, 0), (4, 4), (4, 8), (3, 12)]
    assert [(s.count, s.first) for s in m.splits["test"].shards] == [(4, 0), (1, 4)]
    for s in m.all_files():
        assert (made / s.path).stat().st_size == s.bytes


def test_wds_shard_names(wds):
    m = open_dataset(wds).manifest
    assert [s.path for s in m.splits["train"].shards] == [f"train/{i:06d}.tar" for i in range(4)]
    with tarfile.open(wds / "train" / "000001.tar") as tar:
        assert tar.getnames() == [f"{i:08d}.{ext}" for i in range(4, 8) for ext in ("cls", "npy")]


@pytest.mark.parametrize("split", ["train", "test"])
def test_our_reader_returns_the_encrypted_split(made, cifar10, key_file, split):
    images, labels = expected_split(cifar10, key_file, split)
    reader = open_dataset(made).split(split)
    whole = reader.read()
    assert np.array_equal(whole.images, images) and np.array_equal(whole.labels, labels)
    assert whole.indices.tolist() == list(range(len(labels)))
    chunks = list(reader.chunks())
    assert np.array_equal(np.concatenate([c.images for c in chunks]), images)
    head = reader.head(5)
    assert np.array_equal(head.images, images[:5]) and head.indices.tolist() == list(range(min(5, len(labels))))


def test_stock_webdataset_reads_the_shards(wds, cifar10, key_file):
    urls = [str(wds / s.path) for s in open_dataset(wds).manifest.splits["train"].shards]
    samples = list(webdataset.WebDataset(urls, shardshuffle=False).decode().to_tuple("npy", "cls"))
    images, labels = expected_split(cifar10, key_file, "train")
    assert np.array_equal(np.stack([s[0] for s in samples]), images)
    assert [s[1] for s in samples] == labels.tolist()


def test_stock_zarr_reads_the_store(zarr_store, cifar10, key_file):
    group = zarr.open_group(zarr_store, mode="r")
    for split in ("train", "test"):
        images, labels = expected_split(cifar10, key_file, split)
        assert np.array_equal(group[f"{split}/images"][:], images)
        assert np.array_equal(group[f"{split}/labels"][:], labels)


def test_zarr_has_one_shard_file_per_shard(zarr_store):
    shards = open_dataset(zarr_store).manifest.splits["train"].shards
    assert [s.path for s in shards] == [f"train/images/c/{k}/0/0/0" for k in range(4)]
    assert sorted(p.name for p in (zarr_store / "train" / "images" / "c").iterdir()) == ["0", "1", "2", "3"]


@pytest.mark.parametrize("shard_size, expected", [(10_000, 250), (4, 4), (100, 100), (37, 37), (512, 256), (48, 48), (526, 526)])
def test_inner_chunk_divides_the_shard(shard_size, expected):
    assert inner_chunk(shard_size) == expected and shard_size % expected == 0


def npy_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, image)
    return buf.getvalue()


def test_tar_bytes_equal_webdataset_tarwriter(tmp_path, wds):
    shard = open_dataset(wds).manifest.splits["train"].shards[1]
    batch = open_dataset(wds).split("train").read_shard(shard)
    reference = tmp_path / "reference.tar"
    with open(reference, "wb") as f:
        writer = webdataset.TarWriter(f, encoder=False, mtime=0, user="ppencrypt", group="ppencrypt")
        for image, label, index in zip(batch.images, batch.labels, batch.indices):
            writer.write({"__key__": f"{index:08d}", "cls": str(label).encode(), "npy": npy_bytes(image)})
        writer.close()
    assert (wds / shard.path).read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("path", ["laid-out", "member-by-member"])
def test_small_samples_laid_out_as_arrays_equal_webdataset_tarwriter(tmp_path, fmnist, monkeypatch, path):
    """Samples under LAID_OUT_BELOW bytes are written as whole arrays (wds.laid_out), the rest
    member by member: both give webdataset.TarWriter's bytes, with labels of 1 to 18 digits,
    batches that cross shard ends and shards that start mid-batch."""
    from ppencrypt.formats import wds as storage

    if path == "member-by-member":
        monkeypatch.setattr(storage, "LAID_OUT_BELOW", 0)
    images = np.concatenate([fmnist[0]] * 4)[:37]  # real images, a few of them twice
    labels = np.array([0, 9, 10, 99, 100, 12345, 10**17 - 1, 10**17, 7, 42] * 4, np.int64)[:37]
    writer = storage.WdsSplitWriter(tmp_path / "out", "train", images.shape[1:], shard_size=16)
    for a, b in [(0, 5), (5, 20), (20, 37)]:
        writer.write(images[a:b], labels[a:b])
    shards = writer.close()
    assert [s.count for s in shards] == [16, 16, 5]
    for shard in shards:
        reference = tmp_path / f"reference-{shard.first}.tar"
        with open(reference, "wb") as f:
            tw = webdataset.TarWriter(f, encoder=False, mtime=0, user="ppencrypt", group="ppencrypt")
            for i in range(shard.first, shard.first + shard.count):
                tw.write({"__key__": f"{i:08d}", "cls": str(labels[i]).encode(), "npy": npy_bytes(images[i])})
            tw.close()
        written = (tmp_path / "out" / shard.path).read_bytes()
        assert written == reference.read_bytes()
        assert shard.bytes == len(written)


# --- the manifest contract --------------------------------------------------------------------


def manifest_doc(root) -> dict:
    return json.loads((root / "manifest.json").read_text())


def test_manifest_round_trips(made):
    text = (made / "manifest.json").read_text()
    assert Manifest.from_json(text, "m").to_json() == text


def test_manifest_top_level_fields(made, storage):
    doc = manifest_doc(made)
    assert (doc["format"], doc["version"], doc["storage"]) == ("ppencrypt-dataset", 3, storage)
    assert doc["image"] == {"height": 32, "width": 32, "channels": 3, "dtype": "uint8", "resize": None}
    assert doc["source"] == {"layout": "cifar10", "skipped_bad_files": 0}
    assert doc["cipher"]["derivations"] == ["ppencrypt/v3|method=pe|scope=dataset|shape=32x32x3"]  # one record stream
    assert (doc["cipher"]["kdf"], doc["cipher"]["salt"]) == ("ppencrypt/v3", None) and len(doc["mac"]) == 64


def edit(doc: dict, path: str, value):
    *parents, last = path.split(".")
    d = doc
    for p in parents:
        d = d[p] if not isinstance(d, list) else d[int(p)]
    if value is KeyError:
        del d[last]
    else:
        d[last] = value


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("version", 4, "manifest version 4 is newer than this tool's (3)"),
        ("version", 0, "manifest version 0 is older"),
        ("format", "something", "not a ppencrypt dataset manifest"),
        ("storage", "hdf5", "unknown storage 'hdf5'"),
        ("image.height", True, "field 'height' has the wrong type"),
        ("image.width", 0, "is not one ppencrypt writes"),
        ("classes", KeyError, "missing field 'classes'"),
        ("splits.train.count", 99, "counts do not add up"),
        ("splits.train.per_class", [15], "per_class has 1 entries"),
        ("splits.train.shards.0.path", "../../etc/passwd", "leaves the dataset"),
        ("splits.train.shards.0.path", "/etc/passwd", "leaves the dataset"),
    ],
)
def test_bad_manifests_are_refused(wds, path, value, message):
    doc = manifest_doc(wds)
    edit(doc, path, value)
    (wds / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=re.escape(message)):
        open_dataset(wds)


@pytest.mark.parametrize("text, message", [("{not json", "not valid JSON"), ("[1, 2]", "expected an object"), ("\udcff", "cannot read")])
def test_unreadable_manifests_are_refused(wds, text, message):
    (wds / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ManifestError, match=message):
        open_dataset(wds)


def test_missing_dataset_and_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no such dataset directory"):
        open_dataset(tmp_path / "absent")
    with pytest.raises(ManifestError, match="no manifest.json"):
        open_dataset(tmp_path)


def test_unknown_split(wds):
    with pytest.raises(ManifestError, match="no split 'val'"):
        open_dataset(wds).split("val")


# --- damaged shards, read without verify (as the trainer does) --------------------------------


def damage_byte(at: int):
    def damage(data: bytes) -> bytes:
        out = bytearray(data)
        out[at] ^= 0x20
        return bytes(out)

    return damage


@pytest.mark.parametrize(
    "damage, message",
    [
        (damage_byte(3), "corrupt tar header at byte 0"),
        (damage_byte(124 + 5), "not a tar archive (bad header at byte 0)"),
        (lambda d: d[:3000], "the manifest claims 4 samples, more than its 3000 bytes can hold"),
        (lambda d: d[:1024], "the manifest claims 4 samples, more than its 1024 bytes can hold"),
        (lambda d: bytes(len(d)), "0 samples, the manifest says 4"),
        (lambda d: d[:2048] + bytes(len(d) - 2048), "1 samples, the manifest says 4"),
    ],
    ids=["name", "size", "cut-in-member", "cut-between-members", "zeroed", "cut-to-one-sample"],
)
def test_our_wds_reader_names_a_damaged_shard(wds, damage, message):
    """The parser, given a damaged shard whose hash and size the manifest was made to match (as
    a server that writes both could): the error names the shard and what is wrong."""
    shard = open_dataset(wds).manifest.splits["train"].shards[0]
    path = wds / shard.path
    path.write_bytes(damage(path.read_bytes()))
    restamp(wds, shard.path)
    shard = open_dataset(wds).manifest.splits["train"].shards[0]
    with pytest.raises(ShardError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        open_dataset(wds).split("train").read_shard(shard)


@pytest.mark.parametrize("cut, message", [(4500, "truncated (member 00000000.npy runs past the end)"),
                                          (4096 + 1024, "truncated (no end-of-archive marker)")])  # fmt: skip
def test_the_tar_parser_names_a_truncated_shard(wds, cut, message):
    """A shard long enough for the one sample claimed, cut short inside or after it."""
    from ppencrypt.formats.manifest import ShardInfo
    from ppencrypt.formats.wds import parse_shard

    data = (wds / "train" / "000000.tar").read_bytes()[:cut]
    with pytest.raises(ShardError, match=re.escape(f"shard.tar: {message}")):
        parse_shard(data, ShardInfo("train/000000.tar", "0" * 64, len(data), 1, 0), (32, 32, 3), "shard.tar")


def restamp(root, rel: str) -> None:
    """Make the manifest agree with the file at ``rel`` (size and hash), as a hostile server can."""
    import hashlib

    doc = manifest_doc(root)
    data = (root / rel).read_bytes()
    for entry in [sh for s in doc["splits"].values() for sh in s["shards"]] + doc["files"]:
        if entry["path"] == rel:
            entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (root / "manifest.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("storage", STORAGES)
def test_a_shard_that_differs_from_the_manifest_is_refused_before_parsing(tmp_path, cifar10_dir, key_file, storage):
    root = make(tmp_path, cifar10_dir, key_file, storage)
    shard = open_dataset(root).manifest.splits["train"].shards[1]
    path = root / shard.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=re.escape(f"{path}: checksum mismatch")):
        open_dataset(root).split("train").read_shard(shard)
    path.write_bytes(bytes(data) + b"x")
    with pytest.raises(ShardError, match=re.escape(f"{path}: {len(data) + 1} bytes, the manifest says {len(data)}")):
        open_dataset(root).split("train").read_shard(shard)


def test_our_zarr_reader_names_a_damaged_shard(zarr_store):
    shard = open_dataset(zarr_store).manifest.splits["train"].shards[1]
    path = zarr_store / shard.path
    path.write_bytes(path.read_bytes()[:-40])
    restamp(zarr_store, shard.path)
    shard = open_dataset(zarr_store).manifest.splits["train"].shards[1]
    with pytest.raises(ShardError, match=re.escape(str(zarr_store / "train")) + ": samples 4..7 cannot be read"):
        open_dataset(zarr_store).split("train").read_shard(shard)


def test_image_scope_samples_are_keyed_by_their_index_in_the_split(tmp_path, cifar10_dir, cifar10, key_file):
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--key-scope", "image", "--format", "zarr")
    secret = load_key(key_file).secret
    salt = bytes.fromhex(open_dataset(out).manifest.cipher.salt)
    for split, part in (("train", slice(5, None)), ("test", slice(None, 5))):
        plain = cifar10[0][part]
        ring = KeyRing(secret, "pe", "image", split, salt)
        expected = make_cipher("pe").encrypt(plain, ring, np.arange(len(plain)))
        assert np.array_equal(open_dataset(out).split(split).read().images, expected)


def test_whole_shard_decode_equals_the_member_walk(wds, monkeypatch):
    """Shards as WdsSplitWriter writes them are decoded as whole arrays (no per-sample Python);
    the result is the member walk's, sample for sample."""
    from ppencrypt.formats import wds as storage

    ds = open_dataset(wds)
    shape = ds.manifest.shape
    for split in ("train", "test"):
        reader = ds.split(split)
        for shard in reader.shards:
            data = reader.fetch(shard)
            fast = storage._parse_canonical(data, shard, shape, storage.npy_header(shape))
            assert fast is not None
            with monkeypatch.context() as m:
                m.setattr(storage, "_parse_canonical", lambda *a: None)
                walked = storage.parse_shard(data, shard, shape, "shard.tar")
            for f in ("images", "labels", "indices"):
                a, b = getattr(fast, f), getattr(walked, f)
                assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_a_shard_written_by_another_tar_writer_is_read_by_the_member_walk(wds):
    """Other header bytes (here tarfile's own mtime and owner): not the array path's layout, so
    the member walk reads it, to the same samples."""
    from ppencrypt.formats import wds as storage

    ds = open_dataset(wds)
    shard = ds.manifest.splits["train"].shards[0]
    data = (wds / shard.path).read_bytes()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar, tarfile.open(fileobj=io.BytesIO(data)) as src:
        for member in src.getmembers():
            member.mtime, member.uname = 1, "someone"
            tar.addfile(member, src.extractfile(member))
    other = out.getvalue()
    shape = ds.manifest.shape
    assert storage._parse_canonical(other, shard, shape, storage.npy_header(shape)) is None
    a, b = storage.parse_shard(other, shard, shape, "x.tar"), storage.parse_shard(data, shard, shape, "x.tar")
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("images", "labels", "indices"))
