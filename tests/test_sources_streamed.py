"""Streamed sources (issue 23): webdataset shards and parquet files in a folder or in S3 (moto's
server on 127.0.0.1), brace patterns, an ImageFolder under a URL prefix, --split NAME=SRC.
Each is encrypted, verified and decrypted back exactly to the decoded source images, the same
images as the ImageFolder that holds them; and every bad source is a one-line error naming the
file, exit 1, with nothing written."""

from __future__ import annotations

import hashlib
import json
import tarfile
import uuid

import fsspec
import numpy as np
import pytest
from PIL import Image
from conftest import CIFAR10_NAMES, encrypt, leftovers, ppencrypt, read_pngs, tree_bytes
from streamed_fixtures import encode, expected, in_folder_order, write_folder, write_parquet, write_wds

from ppencrypt.formats import open_dataset
from ppencrypt.formats import remote
from ppencrypt.sources import StreamOptions
from servers import S3Server, make_bucket


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF", 0.01)


def decrypted(out, key_file, dest) -> dict[str, np.ndarray]:
    r = ppencrypt("verify", out, "--key", key_file, "-q")
    assert r.exit_code == 0, r.output
    r = ppencrypt("decrypt", out, dest, "--key", key_file, "-q")
    assert r.exit_code == 0, r.output
    return read_pngs(dest)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def refused(tmp_path, *args, out=None):
    """``ppencrypt dataset ARGS OUT``: a one-line error, exit 1, no OUT and no partial."""
    out = out or tmp_path / "out"
    r = ppencrypt("dataset", *args[:1], out, *args[1:], "-q", "--workers", 1)
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in r.output, r.output
    assert leftovers(out) == []
    return lines[0]


# --- local ------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["cls", "json", "txt"])
def test_wds_shards_decrypt_to_the_images_of_the_same_imagefolder(tmp_path, cifar10, key_file, label):
    folder = write_folder(tmp_path / "folder", *cifar10)
    shards = write_wds(tmp_path / "wds", *cifar10, label=label)
    encrypt(folder, tmp_path / "a", key_file)
    encrypt(shards, tmp_path / "b", key_file)
    want = expected(*cifar10)
    assert same(decrypted(tmp_path / "a", key_file, tmp_path / "da"), want)
    assert same(decrypted(tmp_path / "b", key_file, tmp_path / "db"), want)
    m = open_dataset(tmp_path / "b").manifest
    assert m.layout == "wds" and m.classes == CIFAR10_NAMES and {s: x.count for s, x in m.splits.items()} == {"train": 15, "test": 5}
    # the order read: a digest of the shards' names in order, and their count (never the names)
    names = [f"train/shard-{k:04d}.tar" for k in range(4)]
    assert m.inputs["train"].files == 4 and m.inputs["train"].sha256 == hashlib.sha256("".join(f"{n}\n" for n in names).encode()).hexdigest()
    # no source name — shard, member key, class folder path — in any file of the output
    for rel, data in tree_bytes(tmp_path / "b").items():
        assert b"shard-" not in data and b"img_" not in data and "img_" not in rel, rel


def test_parquet_files_decrypt_to_the_same_images(tmp_path, cifar10, key_file):
    for hf in (True, False):
        src = write_parquet(tmp_path / f"pq{hf}", *cifar10, hf=hf)
        extra = () if hf else ("--classes", tmp_path / "names.txt")
        (tmp_path / "names.txt").write_text("\n".join(CIFAR10_NAMES))
        encrypt(src, tmp_path / f"o{hf}", key_file, *extra)
        assert same(decrypted(tmp_path / f"o{hf}", key_file, tmp_path / f"d{hf}"), expected(*cifar10))
        m = open_dataset(tmp_path / f"o{hf}").manifest
        assert m.layout == "parquet" and m.classes == CIFAR10_NAMES and m.inputs["test"].files == 1


def test_string_labels_without_names_are_sorted_and_numbers_are_the_names(tmp_path, cifar10, key_file):
    encrypt(write_parquet(tmp_path / "pq", *cifar10, hf=False), tmp_path / "o", key_file)
    present = sorted({CIFAR10_NAMES[y] for y in cifar10[1]})
    assert open_dataset(tmp_path / "o").manifest.classes == present
    encrypt(write_wds(tmp_path / "wds", *cifar10, classes=False), tmp_path / "n", key_file)
    m = open_dataset(tmp_path / "n").manifest
    assert m.classes == [str(i) for i in range(int(cifar10[1].max()) + 1)]
    assert sum(m.splits["train"].per_class) == 15 and len(m.splits["test"].per_class) == len(m.classes)


def test_a_brace_pattern_and_split_sources(tmp_path, cifar10, key_file):
    shards = write_wds(tmp_path / "wds", *cifar10)
    pq = write_parquet(tmp_path / "pq", *cifar10)
    out = tmp_path / "o"
    encrypt("-", out, key_file, "--split", f"train={shards}/train/shard-{{0000..0003}}.tar",
            "--split", f"test={pq}/data/test-00000-of-00001.parquet", "--classes", shards / "classes.txt")  # fmt: skip
    assert same(decrypted(out, key_file, tmp_path / "d"), expected(*cifar10))
    m = open_dataset(out).manifest
    assert m.layout == "mixed" and m.inputs["train"].layout == "wds" and m.inputs["test"].layout == "parquet"
    r = ppencrypt("dataset", shards, tmp_path / "x", "--key", key_file, "--split", f"train={shards}")
    assert r.exit_code == 2 and "--split" in r.output
    r = ppencrypt("dataset", "-", tmp_path / "x", "--key", key_file, "--split", "a/b=x")
    assert r.exit_code == 2


def test_worker_count_does_not_change_the_bytes(tmp_path, cifar10, key_file):
    for name, src in (("wds", write_wds(tmp_path / "wds", *cifar10, per_shard=3)), ("pq", write_parquet(tmp_path / "pq", *cifar10, rows_per_group=2))):
        a, b = tmp_path / f"{name}1", tmp_path / f"{name}2"
        encrypt(src, a, key_file, "--shard-size", 5, workers=1)
        encrypt(src, b, key_file, "--shard-size", 5, "--reproduce", a, workers=2)
        assert tree_bytes(a) == tree_bytes(b)


@pytest.mark.parametrize("where", ["local", "url"])
def test_a_shard_cut_into_pieces_gives_the_same_samples(tmp_path, cifar10, monkeypatch, where):
    """A local shard is cut every SAMPLES samples (at headers the loader found), one at a URL
    by the byte offset of each sample's first header: every sample once, in tar order."""
    from servers import http_server

    from ppencrypt.sources import open_source, read_head
    from ppencrypt.sources import wds

    shards = write_wds(tmp_path / "wds", *cifar10, per_shard=8)
    with http_server(shards) as server:
        src = str(shards) if where == "local" else f"{server.url}/train/shard-{{0000..0001}}.tar"
        loader = open_source(src, stream=StreamOptions(classes=str(shards / "classes.txt"))).splits["train"]
        whole = read_head(loader)
        assert len(whole[1]) == 15 and len(list(loader.tasks())) == 2  # one task a shard
        monkeypatch.setattr(wds, "SAMPLES", 3)
        monkeypatch.setattr(wds, "REMOTE_PIECE", 2048)  # a 32 px PNG sample is about 3 KiB: a piece or two each
        tasks = list(loader.tasks())
        chunks = [t.run() for t in tasks]
    assert np.array_equal(np.concatenate([c.images for c in chunks if len(c.labels)]), whole[0])
    assert np.array_equal(np.concatenate([c.labels for c in chunks]), whole[1])
    if where == "local":
        starts = wds.sample_starts(loader.place, "train/shard-0000.tar")  # a shard of 8 samples: pieces of 3, 3, 2
        assert [len(c.labels) for c in chunks] == [3, 3, 2, 3, 3, 1] and len(starts) == 8
        assert tasks[1].describe().endswith(f"shard-0000.tar bytes {starts[3]}-{starts[6] - 1}")
    else:
        assert len(tasks) > 8 and any(len(c.labels) == 0 for c in chunks) and max(len(c.labels) for c in chunks) <= 2
        assert tasks[1].describe().endswith("shard-0000.tar bytes 2048-4095")


def test_the_mac_covers_the_recorded_order(tmp_path, cifar10, key_file):
    out = tmp_path / "o"
    encrypt(write_wds(tmp_path / "wds", *cifar10), out, key_file)
    doc = json.loads((out / "manifest.json").read_text())
    doc["source"]["inputs"]["train"]["files"] = 3
    (out / "manifest.json").write_text(json.dumps(doc))
    r = ppencrypt("decrypt", out, tmp_path / "d", "--key", key_file, "-q")
    assert r.exit_code == 1 and "MAC" in r.output
    doc["source"]["inputs"]["nosuch"] = {"layout": "wds", "files": 1, "sha256": "0" * 64}
    (out / "manifest.json").write_text(json.dumps(doc))
    r = ppencrypt("inspect", out)
    assert r.exit_code == 1 and "inputs" in r.output


# --- bad sources ------------------------------------------------------------------------------


def test_a_truncated_tar_is_an_error_naming_it(tmp_path, cifar10, key_file):
    shards = write_wds(tmp_path / "wds", *cifar10)
    tar = shards / "train" / "shard-0001.tar"
    tar.write_bytes(tar.read_bytes()[:3000])
    assert "shard-0001.tar: truncated tar" in refused(tmp_path, shards, "--key", key_file)
    assert "shard-0001.tar: truncated tar" in refused(tmp_path, shards, "--key", key_file, "--skip-bad")


def test_a_member_claiming_a_huge_size_is_an_error_not_an_allocation(tmp_path, cifar10, key_file):
    shards = write_wds(tmp_path / "wds", *cifar10)
    tar = shards / "train" / "shard-0002.tar"
    with tarfile.open(tar, "w") as t:  # a header saying 1 TiB, and nothing after it
        info = tarfile.TarInfo("x/evil.png")
        info.size = 1 << 40
        t.addfile(info)
    msg = refused(tmp_path, shards, "--key", key_file)
    assert "shard-0002.tar" in msg and ("more than" in msg or "truncated" in msg)


def test_an_extended_header_announcing_gigabytes_is_refused_before_it_is_read(tmp_path, cifar10, key_file):
    """tarfile reads a pax header's data whole, whatever size it announces; ours refuses one over 1 MiB."""
    shards = write_wds(tmp_path / "wds", *cifar10)
    header = bytearray(512)
    header[:9] = b"PaxHeader"
    header[100:108], header[108:116], header[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    header[124:136], header[136:148], header[156:157] = b"%011o\0" % (1 << 33), b"00000000000\0", b"x"
    header[257:263], header[263:265] = b"ustar\0", b"00"
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    (shards / "train" / "shard-0000.tar").write_bytes(bytes(header) + b"\0" * 4096)
    msg = refused(tmp_path, shards, "--key", key_file)
    assert "shard-0000.tar: a tar extended header of 8589934592 bytes" in msg


def test_an_undecodable_image_is_an_error_or_skipped(tmp_path, cifar10, key_file):
    import webdataset

    shards = write_wds(tmp_path / "wds", *cifar10)
    rows = in_folder_order(*cifar10)["train"]
    with webdataset.TarWriter(str(shards / "train" / "shard-0001.tar")) as w:
        for stem, image, y in rows[4:8]:
            w.write({"__key__": stem, "png": b"not a png" if stem == rows[5][0] else encode(image), "cls": str(y).encode()})
    msg = refused(tmp_path, shards, "--key", key_file)
    assert f"shard-0001.tar:{rows[5][0]}: not an image file" in msg
    r = ppencrypt("dataset", shards, tmp_path / "o", "--key", key_file, "-q", "--skip-bad", "--workers", 2)
    assert r.exit_code == 0 and f"skipped {shards}/train/shard-0001.tar:{rows[5][0]}" in r.output
    m = open_dataset(tmp_path / "o").manifest
    assert m.skipped == 1 and m.splits["train"].count == 14


def test_labels_outside_the_classes_or_missing_are_errors(tmp_path, cifar10, key_file):
    shards = write_wds(tmp_path / "wds", *cifar10)
    (shards / "classes.txt").write_text("a\nb\n")
    assert "label" in (msg := refused(tmp_path, shards, "--key", key_file)) and "outside the 2 classes of" in msg and "shard-0000.tar:" in msg
    shards = write_wds(tmp_path / "nolabel", *cifar10, label="none")
    assert "no label (a cls, json or txt member)" in refused(tmp_path, shards, "--key", key_file)


def test_a_pattern_matching_nothing_and_parquet_without_images(tmp_path, cifar10, key_file):
    assert "the brace pattern matches no file" in refused(tmp_path, f"{tmp_path}/none-{{00..09}}.tar", "--key", key_file)
    shards = write_wds(tmp_path / "wds", *cifar10)
    msg = refused(tmp_path, f"{shards}/train/shard-{{0000..0009}}.tar", "--key", key_file)
    assert "shard-0004.tar: missing" in msg
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"label": [1, 2], "caption": ["a", "b"]}), tmp_path / "pq" / "part-0.parquet")
    assert "part-0.parquet: no image column" in refused(tmp_path, tmp_path / "pq", "--key", key_file)


def test_copies_of_streamed_splits_are_the_same_whatever_the_layout(tmp_path, cifar10, key_file):
    """--copies of a streamed split (once refused): webdataset shards (counted first from their
    member names) and parquet (counted from its footers) of the same images in the same order,
    with the same ten classes, give the same shards."""
    wds = write_wds(tmp_path / "wds", *cifar10)
    pq = write_parquet(tmp_path / "pq", *cifar10)
    encrypt(wds, tmp_path / "a", key_file, "--copies", 2)
    encrypt(pq, tmp_path / "b", key_file, "--copies", 2, "--reproduce", tmp_path / "a")
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert a.pop("manifest.json") != b.pop("manifest.json") and a == b  # the manifests name their layouts
    assert open_dataset(tmp_path / "b").manifest.splits["train"].count == 2 * 15


# --- S3 -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server, monkeypatch, tmp_path) -> str:
    for name, value in s3_server.env(tmp_path).items():
        monkeypatch.setenv(name, value)
    name = f"src-{uuid.uuid4().hex[:12]}"
    make_bucket(name)
    return f"s3://{name}"


def upload(folder, url):
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            fs.pipe_file(f"{url}/{p.relative_to(folder).as_posix()}", p.read_bytes())


def test_sources_in_s3_decrypt_to_the_local_images(tmp_path, bucket, cifar10, key_file, monkeypatch):
    from ppencrypt.sources import wds

    monkeypatch.setattr(wds, "REMOTE_PIECE", 4096)  # shards read in pieces from S3 too (the workers are forked with it)
    upload(write_wds(tmp_path / "wds", *cifar10), f"{bucket}/wds")
    upload(write_parquet(tmp_path / "pq", *cifar10), f"{bucket}/pq")
    upload(write_folder(tmp_path / "folder", *cifar10), f"{bucket}/photos")
    want = expected(*cifar10)
    for name, src in (("wds", f"{bucket}/wds"), ("pq", f"{bucket}/pq"), ("photos", f"{bucket}/photos")):
        encrypt(src, tmp_path / f"o-{name}", key_file, workers=2)
        assert same(decrypted(tmp_path / f"o-{name}", key_file, tmp_path / f"d-{name}"), want), name
    assert open_dataset(tmp_path / "o-photos").manifest.layout == "url-imagefolder"
    # a pattern per split, written to S3 as well
    out = f"{bucket}/enc"
    encrypt("-", out, key_file, "--split", f"train={bucket}/wds/train/shard-{{0000..0003}}.tar",
            "--split", f"test={bucket}/wds/test/shard-{{0000..0001}}.tar", "--classes", tmp_path / "wds" / "classes.txt")  # fmt: skip
    assert same(decrypted(out, key_file, tmp_path / "d-enc"), want)
    assert "matches no file" in refused(tmp_path, f"{bucket}/wds/train/x-{{0..3}}.tar", "--key", key_file)
    assert "no files under this prefix" in refused(tmp_path, f"{bucket}/nothing", "--key", key_file)
    assert refused(tmp_path, f"{bucket}-missing/wds", "--key", key_file) == f"Error: {bucket}-missing/wds: no such bucket"


def test_shards_over_https_by_a_brace_pattern(tmp_path, cifar10, key_file):
    from servers import http_server

    shards = write_wds(tmp_path / "wds", *cifar10)
    with http_server(shards) as server:
        encrypt("-", tmp_path / "o", key_file, "--split", f"train={server.url}/train/shard-{{0000..0003}}.tar",
                "--split", f"test={server.url}/test/shard-{{0000..0001}}.tar", "--classes", f"{server.url}/classes.txt", workers=2)  # fmt: skip
        assert same(decrypted(tmp_path / "o", key_file, tmp_path / "d"), expected(*cifar10))
        assert "can't be listed" not in (msg := refused(tmp_path, f"{server.url}/train", "--key", key_file))
        assert "cannot be listed; give its shards as a brace pattern" in msg
        # a transfer cut short is tried again from where it stopped; cut every time, a one-line error naming the shard
        server.fail("/train/shard-0002.tar", "truncate", "truncate")
        encrypt(f"{server.url}/train/shard-{{0000..0003}}.tar", tmp_path / "again", key_file, "--classes", shards / "classes.txt")
        assert server.requests["/train/shard-0002.tar"] >= 3
        assert np.array_equal(open_dataset(tmp_path / "again").split("train").read().labels, open_dataset(tmp_path / "o").split("train").read().labels)
        server.fail("/train/shard-0002.tar", "truncate", sticky=True)
        msg = refused(tmp_path, f"{server.url}/train/shard-{{0000..0003}}.tar", "--key", key_file)
        assert f"{server.url}/train/shard-0002.tar: " in msg and "not enough data" in msg.lower()


def test_audit_reads_a_streamed_plain_source(tmp_path, cifar10, key_file):
    shards = write_wds(tmp_path / "wds", *cifar10)
    encrypt(shards, tmp_path / "o", key_file)
    r = ppencrypt("audit", tmp_path / "o", "--plain", shards, "-n", 4, "-o", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "rep.json").read_text())["split"] == "test"


def test_imagenet_jpegs_as_folder_wds_and_parquet_decrypt_alike(tmp_path, key_file):
    """The vendored ImageNet photos, their JPEG bytes unchanged, as an ImageFolder, as webdataset
    shards (``jpg`` members, ``json`` labels) and as Hugging Face parquet: resized to 48 px, the
    three decrypt to the same images, which are the source JPEGs decoded by the documented rule."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import webdataset

    from conftest import DATA
    from ppencrypt.imageio import load_image

    files = sorted((DATA / "imagenet").glob("*.jpg"))[:8]
    names = sorted({f.stem.rsplit("_", 1)[1] for f in files})
    rows = sorted(((names.index(f.stem.rsplit("_", 1)[1]), f) for f in files), key=lambda r: (names[r[0]], r[1].name))
    for y, f in rows:
        (tmp_path / "folder" / names[y]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / names[y] / f.name).write_bytes(f.read_bytes())
    (tmp_path / "wds").mkdir()
    with webdataset.TarWriter(str(tmp_path / "wds" / "in-000.tar")) as w:
        for y, f in rows:
            w.write({"__key__": f.stem, "jpg": f.read_bytes(), "json": json.dumps({"label": y}).encode()})
    (tmp_path / "wds" / "classes.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "pq").mkdir()
    meta = {"info": {"features": {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": names}}}}
    table = pa.table({"image": [{"bytes": f.read_bytes(), "path": f.name} for _, f in rows], "label": [y for y, _ in rows]})
    pq.write_table(table.replace_schema_metadata({"huggingface": json.dumps(meta)}), tmp_path / "pq" / "train-0.parquet", row_group_size=3)
    from ppencrypt.resize import DEFAULT, Size

    want = {f"train/{names[y]}/{i:08d}.png": load_image(str(f), f.name, 3, Size(48, DEFAULT)) for i, (y, f) in enumerate(rows)}
    for name in ("folder", "wds", "pq"):
        encrypt(tmp_path / name, tmp_path / f"o-{name}", key_file, "--size", 48, workers=2)
        assert same(decrypted(tmp_path / f"o-{name}", key_file, tmp_path / f"d-{name}"), want), name


def test_a_streamed_source_takes_its_channels_from_its_first_image(tmp_path, cifar10, fmnist, key_file):
    import webdataset

    (tmp_path / "wds").mkdir()
    with webdataset.TarWriter(str(tmp_path / "wds" / "x.tar")) as w:
        w.write({"__key__": "a", "png": encode(fmnist[0][0]), "cls": b"0"})
        w.write({"__key__": "b", "png": encode(np.asarray(Image.fromarray(cifar10[0][1]).resize((28, 28)))), "cls": b"1"})
    msg = refused(tmp_path, tmp_path / "wds", "--key", key_file)
    assert "x.tar:b: a colour image in a grayscale dataset" in msg and "x.tar:a" in msg


def test_img2dataset_output_is_read_as_webdataset(tmp_path, cifar10, key_file):
    """img2dataset writes NNNNN.tar with a metadata NNNNN.parquet (no images) and NNNNN_stats.json beside it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = write_wds(tmp_path / "wds", *cifar10)
    for tar in (shards / "train").glob("*.tar"):
        pq.write_table(pa.table({"key": ["x"], "status": ["success"]}), tar.with_suffix(".parquet"))
        tar.with_name(tar.stem + "_stats.json").write_text("{}")
    encrypt(shards / "train", tmp_path / "o", key_file, "--classes", shards / "classes.txt")
    assert open_dataset(tmp_path / "o").manifest.splits["train"].count == 15
    (shards / "train" / "stray.png").write_bytes(encode(cifar10[0][0]))
    assert "holds both image files and parquet and wds files" in refused(tmp_path, shards / "train", "--key", key_file)


def test_labels_that_look_like_numbers(tmp_path, cifar10, key_file):
    """String labels "10", "2", ... are class names (sorted as strings); a cls member is always
    a class index, even when classes.txt names a class "3"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images, labels = cifar10
    names = [str(10 + y) if y % 2 else str(y) for y in range(10)]  # "0", "11", "2", "13", ...
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"png": pa.array([encode(im) for im in images], pa.binary()), "label": [names[y] for y in labels]}),
                   tmp_path / "pq" / "train-0.parquet")  # fmt: skip
    encrypt(tmp_path / "pq", tmp_path / "o", key_file)
    m = open_dataset(tmp_path / "o").manifest
    present = sorted({names[y] for y in labels})
    assert m.classes == present
    got = open_dataset(tmp_path / "o").split("train").read().labels
    assert [m.classes[i] for i in got] == [names[y] for y in labels]
    shards = write_wds(tmp_path / "wds", *cifar10, names=[str(9 - i) for i in range(10)])  # classes.txt: "9", "8", ...
    encrypt(shards, tmp_path / "w", key_file)
    dest = decrypted(tmp_path / "w", key_file, tmp_path / "d")
    assert same(dest, expected(*cifar10, names=[str(9 - i) for i in range(10)]))


def test_split_names_in_shard_file_names(tmp_path, cifar10, key_file):
    """timm's imagenet-1k-wds names its shards imagenet1k-train-0000.tar, imagenet1k-validation-00.tar:
    one folder, two splits, never one split of both."""
    shards = write_wds(tmp_path / "wds", *cifar10)
    flat = tmp_path / "flat"
    flat.mkdir()
    for split, folder in (("train", "train"), ("validation", "test")):
        for k, tar in enumerate(sorted((shards / folder).glob("*.tar"))):
            (flat / f"cifar-{split}-{k:04d}.tar").write_bytes(tar.read_bytes())
    (flat / "classes.txt").write_bytes((shards / "classes.txt").read_bytes())
    encrypt(flat, tmp_path / "o", key_file)
    m = open_dataset(tmp_path / "o").manifest
    assert {s: x.count for s, x in m.splits.items()} == {"train": 15, "val": 5}
    (flat / "cifar-extra-0000.tar").write_bytes(b"")
    assert "cifar-extra-0000.tar: in no split" in refused(tmp_path, flat, "--key", key_file)


def test_a_parquet_row_group_too_large_to_read_at_once_is_refused(tmp_path, cifar10, key_file, monkeypatch):
    from ppencrypt.sources import parquet

    src = write_parquet(tmp_path / "pq", *cifar10, rows_per_group=15)
    monkeypatch.setattr(parquet, "MAX_GROUP", 20_000)  # a group of 15 CIFAR PNGs is about 40 KB
    msg = refused(tmp_path, src, "--key", key_file)
    assert "train-00000-of-00001.parquet: row group 0 is" in msg and "smaller row groups" in msg


def test_sources_in_gcs(tmp_path, cifar10, key_file):
    """gs:// through gcsfs, on the GCS emulator (servers.GCSServer), as its own process."""
    import os
    import subprocess
    import sys

    import gcsfs

    from servers import GCSServer

    server = GCSServer()
    try:
        env = {**os.environ, **server.env(tmp_path / "fsspec-config"), "OMP_NUM_THREADS": "1"}
        bucket = f"src-{uuid.uuid4().hex[:12]}"
        server.make_bucket(bucket)
        fs = gcsfs.core.GCSFileSystem(endpoint_url=server.endpoint, token="anon", skip_instance_cache=True)
        for name, folder in (("wds", write_wds(tmp_path / "wds", *cifar10)), ("pq", write_parquet(tmp_path / "pq", *cifar10))):
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    fs.pipe_file(f"{bucket}/{name}/{p.relative_to(folder).as_posix()}", p.read_bytes())
        for name in ("wds", "pq"):
            cmd = [sys.executable, "-m", "ppencrypt", "dataset", f"gs://{bucket}/{name}", tmp_path / f"o-{name}", "--key", key_file,
                   "-q", "--workers", "2", "--shard-size", "4"]  # fmt: skip
            r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=240, env=env)
            assert r.returncode == 0, r.stderr[-3000:]
            assert same(decrypted(tmp_path / f"o-{name}", key_file, tmp_path / f"d-{name}"), expected(*cifar10)), name
    finally:
        server.stop()
