"""ppencrypt dataset --copies K: augmentation in the client. K shifted and flipped copies of the
train split, encrypted; recorded in the manifest; byte-identical for any --workers; the same
draws and pixels as the cloud's crop + flip; and pptrain reading them (no augmentation of its
own by default, an epoch one pass over the originals)."""

import json

import numpy as np
import pytest
import torch

from conftest import encrypt as encrypt_cli, ppencrypt, tree_bytes
from ppencrypt.augment import FILL, draws, shift_flip
from ppencrypt.formats import open_dataset
from ppencrypt.keys import load_key, open_keyed
from ppencrypt.formats.manifest import Manifest
from streamed_fixtures import in_folder_order, write_folder, write_wds
from test_trainer_cli import run
from pptrain.augment import BatchAugment
from trainer_fixtures import session_key, shapes_src  # noqa: F401  (fixtures)


def encrypt(src, out, key_file, *extra, workers: int = 1):
    encrypt_cli(src, out, key_file, *extra, workers=workers)
    return out


def decrypt_split(keyed, split: str):
    """A split of the dataset as stored, and decrypted (its manifest's MAC checked by open_keyed)."""
    b = keyed.dataset.split(split).read()
    return b, keyed.cipher.decrypt(b.images, keyed.ring(split), b.indices)


def decrypt_all(out, key_file) -> dict[str, np.ndarray]:
    """Every split of ``out`` decrypted, in sample order, and the train labels."""
    keyed, got = open_keyed(out, load_key(key_file)), {}
    for split in keyed.dataset.splits:
        b, got[split] = decrypt_split(keyed, split)
        got[f"{split}_labels"] = b.labels
    return got


def test_copies_are_encrypted_augmented_train_images_recorded_in_the_manifest(tmp_path, cifar10_dir, cifar10, key_file):
    out = encrypt(cifar10_dir, tmp_path / "out", key_file, "--copies", 3, "--pad", 2, "--augment-seed", 7)
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["augment"] == {"copies": 3, "pad": 2, "seed": 7, "ops": ["crop", "flip"], "fill": 128, "split": "train"}
    assert doc["splits"]["train"]["count"] == 3 * 15 and doc["splits"]["test"]["count"] == 5
    images, labels = cifar10
    plain_train, plain_test = images[5:], images[:5]
    dec = decrypt_all(out, key_file)
    for k in range(3):  # copy k of image j is sample k x 15 + j, the plain image shifted and flipped by draw j of copy k
        expected = shift_flip(plain_train, draws(15, 2, 7, k))
        assert np.array_equal(dec["train"][k * 15 : (k + 1) * 15], expected)
        assert not np.array_equal(expected, plain_train)
    assert np.array_equal(dec["train_labels"], np.tile(labels[5:], 3))
    assert np.array_equal(dec["test"], plain_test)  # the other splits as they are
    assert "augmented 3 copies of train in the client (crop, flip, pad 2, seed 7)" in ppencrypt("inspect", out).stdout


def test_copies_are_byte_identical_for_any_worker_count(tmp_path, folder_dir, key_file):
    """An ImageFolder decodes in worker processes: the draws follow the image's position."""
    one = encrypt(folder_dir, tmp_path / "one", key_file, "--copies", 2, "--key-scope", "image", workers=1)
    again = ("--reproduce", one)  # an image-scope dataset gets a fresh salt otherwise
    two = encrypt(folder_dir, tmp_path / "two", key_file, "--copies", 2, "--key-scope", "image", *again, workers=3)
    assert tree_bytes(one) == tree_bytes(two)


def test_client_draws_and_pixels_are_the_clouds_crop_and_flip(cifar10):
    images = cifar10[0]
    aug = BatchAugment(("crop", "flip"), images.shape[1:], 10, pad=4)
    for k in range(3):
        cloud = aug.draw(len(images), np.random.default_rng([0, k]))
        client = draws(len(images), 4, 0, k)
        assert np.array_equal(cloud.dy, client.dy) and np.array_equal(cloud.dx, client.dx) and np.array_equal(cloud.flip, client.flip)
        warped = aug.warp(torch.from_numpy(images), cloud, FILL).numpy()
        assert np.array_equal(shift_flip(images, client), warped)


def test_copy_options_are_checked(tmp_path, cifar10_dir, key_file):
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "a", "--key", key_file, "--pad", 2)
    assert r.exit_code == 2 and "--pad belongs to --copies (the client's augmentation)" in r.output
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "b", "--key", key_file, "--copies", 0)
    assert r.exit_code == 2
    r = ppencrypt("dataset", cifar10_dir, tmp_path / "c", "--key", key_file, "--copies", 2, "--pad", 32)
    assert r.exit_code == 1 and r.output == "Error: --pad 32 must be in 0..31 for 32x32 images\n"
    assert not any((tmp_path / n).exists() for n in "abc")


def test_manifests_without_copies_have_no_augment_field_and_both_round_trip(tmp_path, cifar10_dir, key_file):
    plain = encrypt(cifar10_dir, tmp_path / "plain", key_file)
    copied = encrypt(cifar10_dir, tmp_path / "copied", key_file, "--copies", 1)
    assert "augment" not in json.loads((plain / "manifest.json").read_text())
    assert open_dataset(plain).manifest.augment is None and open_dataset(copied).manifest.augment.copies == 1
    for root in (plain, copied):
        text = (root / "manifest.json").read_text()
        assert Manifest.from_json(text, "m").to_json() == text


def test_pptrain_takes_no_augmentation_of_its_own_and_counts_epochs_over_the_originals(shapes_src, session_key, tmp_path):
    data = tmp_path / "copies"
    r = ppencrypt("dataset", shapes_src, data, "--key", session_key, "--copies", 3, "--workers", 1, "--shard-size", 64, "--quiet")
    assert r.exit_code == 0, r.output
    assert open_dataset(data).manifest.splits["train"].count == 3 * 114
    run_dir = tmp_path / "r"
    run(data, "--width", 4, "--batch-size", 16, "--epochs", 2, "--trace", "--run-dir", run_dir, "--quiet")
    c = json.loads((run_dir / "config.json").read_text())
    assert c["resolved"]["augment"] == [] and c["dataset"]["copies"] == 3 and c["settings"]["augment"] is None
    epochs = [json.loads(line) for line in (run_dir / "trace-rank0.jsonl").read_text().splitlines()]
    seen = [np.concatenate(e["batches"]) for e in epochs]
    assert [len(e["batches"]) for e in epochs] == [114 // 16] * 2  # one pass over the 114 originals per epoch
    assert not set(seen[0]) & set(seen[1])  # two thirds of one permutation of the 342 copies
    run(data, "--width", 4, "--batch-size", 16, "--epochs", 1, "--augment", "crop", "--run-dir", tmp_path / "s", "--quiet")
    assert json.loads((tmp_path / "s" / "config.json").read_text())["resolved"]["augment"] == ["crop"]  # asked for: allowed
    one = tmp_path / "one"  # a single client copy is client augmentation too
    assert ppencrypt("dataset", shapes_src, one, "--key", session_key, "--copies", 1, "--workers", 1, "--quiet").exit_code == 0
    run(one, "--width", 4, "--batch-size", 16, "--epochs", 1, "--run-dir", tmp_path / "o", "--quiet")
    assert json.loads((tmp_path / "o" / "config.json").read_text())["resolved"]["augment"] == []


@pytest.mark.parametrize("change, says", [
    (lambda a: a.update(copies=0), "copies 0 does not divide"),
    (lambda a: a.update(copies=4), "copies 4 does not divide"),  # 45 train images are not 4 copies of anything
    (lambda a: a.update(copies=10**30), "does not divide"),
    (lambda a: a.update(copies=True), "has the wrong type"),
    (lambda a: a.update(copies="3"), "has the wrong type"),
    (lambda a: a.update(pad=32), "pad 32 must be in 0..31"),
    (lambda a: a.update(seed=-1), "seed must be"),
    (lambda a: a.update(fill=256), "fill a uint8"),
    (lambda a: a.update(ops=["crop", "blur"]), "ops must be"),
    (lambda a: a.update(split="test\x1b[31m"), "control character"),
    (lambda a: a.update(split="val"), "is not one of the dataset's"),
    (lambda a: a.pop("copies"), "missing field 'copies'"),
])  # fmt: skip
def test_a_hostile_augment_section_is_a_one_line_error_for_every_reader(tmp_path, cifar10_dir, key_file, change, says):
    """The server may write any byte of the manifest: pptrain divides the split by ``copies``
    and drops its own augmentation on the strength of the section, so it is checked on read."""
    from test_hostile import doc, one_line_error, save, train

    out = encrypt(cifar10_dir, tmp_path / "out", key_file, "--copies", 3)
    d = doc(out)
    change(d["augment"])
    save(out, d)
    for cmd, r in {"inspect": ppencrypt("inspect", out), "verify": ppencrypt("verify", out, "--key", key_file),
                   "pptrain": train(out, tmp_path / "run")}.items():  # fmt: skip
        line = one_line_error(r)
        assert "manifest.json: augment" in line and says in line and "\x1b" not in line, (cmd, line)


@pytest.mark.parametrize("change", [
    lambda d: d["augment"].update(copies=5),  # well-formed (45 = 5 x 9), but not what the client wrote
    lambda d: d["augment"].update(seed=8),
    lambda d: d.pop("augment"),  # the copies passed off as 45 distinct images
], ids=["copies", "seed", "dropped"])  # fmt: skip
def test_the_mac_covers_the_augment_section(tmp_path, cifar10_dir, key_file, change):
    from test_hostile import doc, one_line_error, save

    out = encrypt(cifar10_dir, tmp_path / "out", key_file, "--copies", 3)
    assert ppencrypt("verify", out, "--key", key_file).exit_code == 0
    d = doc(out)
    change(d)
    save(out, d)
    line = one_line_error(ppencrypt("verify", out, "--key", key_file))
    assert "manifest.json: " in line and "MAC" in line, line


def shards(out) -> dict[str, bytes]:
    """A dataset's shard files (not its manifest, which names its source's layout)."""
    return {k: v for k, v in tree_bytes(out).items() if k != "manifest.json"}


@pytest.mark.parametrize("copies", [None, 3])
def test_an_imagefolder_and_its_images_as_wds_shards_give_the_same_shards(tmp_path, cifar10, key_file, copies):
    """The same images in the same order, as class folders or as webdataset shards (webdataset's
    TarWriter): the same encrypted shards, with and without --copies — a stream's split is
    counted first (its shards' member names) so that copy k's draws are the ImageFolder's."""
    folder = write_folder(tmp_path / "folder", *cifar10)
    wds = write_wds(tmp_path / "wds", *cifar10, per_shard=4, label="txt", classes=False)  # labelled by class name
    present = tmp_path / "classes.txt"  # an ImageFolder's classes: its class folders, sorted (not all ten are there)
    present.write_text("".join(f"{c}\n" for c in sorted({p.name for p in folder.glob("*/*")})))
    extra = () if copies is None else ("--copies", copies, "--pad", 3)
    a = encrypt(folder, tmp_path / "a", key_file, *extra)
    b = encrypt(wds, tmp_path / "b", key_file, *extra, "--classes", present, "--reproduce", a, workers=2)  # a's salt: a's images
    assert json.loads((a / "manifest.json").read_text())["source"]["layout"] == "imagefolder"
    assert json.loads((b / "manifest.json").read_text())["source"]["layout"] == "wds"
    assert shards(a) == shards(b) and len(shards(a)) > 3
    if copies is not None:  # and they are the copies: the decrypted train split is the shifted, flipped images
        images, _ = cifar10
        plain = np.stack([im for _, im, _ in in_folder_order(*cifar10)["train"]])
        dec = decrypt_all(b, key_file)["train"]
        assert len(dec) == 3 * 15
        for k in range(3):
            assert np.array_equal(dec[k * 15 : (k + 1) * 15], shift_flip(plain, draws(15, 3, 0, k)))
