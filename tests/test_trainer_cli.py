"""pptrain through its command line: a smoke run that learns, resume equivalence, eval and
predict, and every refusal with its exact exit code and message."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ppencrypt.cli import cli as ppencrypt
from ppencrypt.keys import load_key
from trainer_fixtures import encrypt, metrics, run, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

TIMING = ("images_per_s", "seconds")
TINY = ["--width", "4", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def trained(shapes_pe, tmp_path_factory) -> Path:
    """The smoke run: three well-separated classes of real Fashion-MNIST images, pe-encrypted.
    105 steps of 16 images: the recipe's rate scaled to that batch (0.07) is slow for so few
    steps, so the run takes 0.4."""
    run_dir = tmp_path_factory.mktemp("run") / "shapes"
    result = run(shapes_pe, "--width", 8, "--epochs", 15, "--batch-size", 16, "--lr", 0.4, "--run-dir", run_dir, "--quiet")
    assert result.stdout.startswith(f"{run_dir}: done, 15/15 epochs, test acc ")
    return run_dir


def test_smoke_run_learns_and_writes_its_run_directory(trained, shapes_pe):
    assert sorted(p.name for p in trained.iterdir()) == ["checkpoint.pt", "config.json", "curves.png", "metrics.jsonl"]
    history = metrics(trained)
    assert [r["epoch"] for r in history] == list(range(1, 16))
    assert set(history[0]) == {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "seconds"}
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # Chance is 1/3 and the largest class 10/19: a working pipeline separates the shapes.
    assert history[-1]["test_acc"] >= 0.8
    assert (trained / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_directory_records_the_encryption_but_never_the_key(trained, shapes_pe, session_key):
    config = json.loads((trained / "config.json").read_text())
    manifest = json.loads((shapes_pe / "manifest.json").read_text())
    assert config["dataset"]["method"] == "pe" and config["dataset"]["key_scope"] == "dataset"
    assert config["dataset"]["key_id"] == manifest["cipher"]["key_id"] == load_key(session_key).key_id
    assert config["settings"]["width"] == 8 and config["resolved"]["lr"] == 0.4
    secret = load_key(session_key).secret
    for f in trained.iterdir():
        data = f.read_bytes()
        assert secret not in data and secret.hex().encode() not in data


def test_eval_reports_the_runs_test_accuracy(trained, shapes_pe):
    out = run("eval", trained, shapes_pe, "--json")
    got = json.loads(out.stdout)
    assert got["images"] == 19 and got["split"] == "test"
    assert got["accuracy"] == pytest.approx(metrics(trained)[-1]["test_acc"])
    assert got["loss"] == pytest.approx(metrics(trained)[-1]["test_loss"], rel=1e-5)
    text = run("eval", trained, shapes_pe, "--split", "train").stdout
    assert text.startswith(f"{shapes_pe} (train, 114 images): accuracy ")


def encrypt_queries(files, like, key, out_dir):
    result = CliRunner().invoke(ppencrypt, ["image", *map(str, files), "--key", str(key), "--like", str(like), "-o", str(out_dir),
                                            "--shared-mask"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return [line.split("\t")[1] for line in result.stdout.splitlines()]


def test_predict_classifies_encrypted_queries_like_eval(trained, shapes_pe, shapes_src, session_key, tmp_path):
    """The test split is the 19 images themselves: encrypted as queries with the dataset key,
    predict must agree with eval image for image."""
    from trainer_fixtures import three_shapes
    from PIL import Image

    images, labels = three_shapes()
    files = []
    for i, im in enumerate(images):
        files.append(tmp_path / f"plain{i:02d}.png")
        Image.fromarray(im[..., 0]).save(files[-1])
    queries = encrypt_queries(files, shapes_pe, session_key, tmp_path / "q")
    out = run("predict", trained, *queries, "--top", 2).stdout.splitlines()
    assert len(out) == len(queries)
    classes = ["top", "trouser", "footwear"]
    correct = 0
    for line, query, label in zip(out, queries, labels):
        path, c1, p1, c2, p2 = line.split("\t")
        assert path == query and {c1, c2} <= set(classes) and c1 != c2
        assert 1 >= float(p1) >= float(p2) >= 0
        correct += c1 == classes[label]
    assert correct / len(labels) == pytest.approx(metrics(trained)[-1]["test_acc"])


def test_predict_refuses_images_of_another_shape(trained, tmp_path, cifar10):
    from PIL import Image

    rgb = tmp_path / "rgb.png"
    Image.fromarray(cifar10[0][0]).save(rgb)
    r = run("predict", trained, rgb, code=1)
    assert r.output == f"Error: {rgb}: 32x32 with 3 channels, but run {trained} takes 28x28 with 1; encrypt queries with `ppencrypt image --like` the training dataset\n"
    gray = tmp_path / "gray.png"
    Image.fromarray(cifar10[0][0][..., 0]).save(gray)
    assert "32x32 with 1 channel, but run" in run("predict", trained, gray, code=1).output
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert run("predict", trained, junk, code=1).output == f"Error: {junk}: not an image file (Pillow cannot identify it)\n"
    assert "Missing argument 'IMAGES...'" in run("predict", trained, code=2).output


@pytest.mark.parametrize("loader", [[], ["--stream", "--workers", "0"]])
def test_resumed_run_ends_with_the_same_metrics(shapes_pe, tmp_path, loader):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run(shapes_pe, *TINY, *loader, "--epochs", 3, "--run-dir", whole)
    stopped = run(shapes_pe, *TINY, *loader, "--epochs", 3, "--run-dir", parts, "--stop-after", 1)
    assert "stopped after epoch 1 (resume with --resume)" in stopped.stdout
    assert len(metrics(parts)) == 1
    run(shapes_pe, "--run-dir", parts, "--resume", "--quiet", *loader)  # the rest comes from config.json
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(metrics(parts)) == strip(metrics(whole))
    a = torch.load(whole / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(parts / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mixing_augmentations_train_through_the_streaming_loader(shapes_pe, tmp_path):
    out = run(shapes_pe, *TINY, "--epochs", 1, "--augment", "crop,flip", "--augment", "mixup,cutmix",
              "--stream", "--workers", 1, "--run-dir", tmp_path / "r")  # fmt: skip
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["resolved"]["augment"] == ["crop", "flip", "mixup", "cutmix"] and config["resolved"]["stream"]
    assert "done, 1/1 epochs" in out.stdout


def test_block_wise_baselines_train_with_a_warning(shapes_src, session_key, tmp_path):
    le = encrypt(shapes_src, tmp_path / "le", session_key, method="le", shard_size=64)
    out = run(le, *TINY, "--epochs", 4, "--stop-after", 1, "--run-dir", tmp_path / "r")  # 4 epochs: augmented by default
    assert "warning: method 'le' is not pixel-wise: crop, flip on its ciphertext is not the encryption of an augmented image" in out.stderr
    assert "warning" not in run(le, *TINY, "--epochs", 1, "--augment", "none", "--run-dir", tmp_path / "r2").stderr


def test_a_dataset_without_test_split_trains_with_a_warning(tmp_path, fmnist, session_key):
    from conftest import write_imagefolder

    src = write_imagefolder(tmp_path / "src", *fmnist)
    data = encrypt(src, tmp_path / "data", session_key)
    out = run(data, *TINY, "--batch-size", 8, "--epochs", 1, "--run-dir", tmp_path / "r")
    assert f"warning: {data}: no 'test' split; test metrics are left empty" in out.stderr
    assert "no test split" in out.stdout and metrics(tmp_path / "r")[0]["test_acc"] is None


def test_a_dataset_with_val_but_no_test_split_evaluates_on_val(tmp_path, fmnist, session_key):
    """Photo folders often come as train/ and valid/ (ImageNet's layout): the val split is
    evaluated every epoch, and pptrain eval takes it by default too; a --test-split the
    dataset lacks is a typo, refused."""
    from conftest import write_imagefolder

    src = write_imagefolder(tmp_path / "src", *fmnist, splits={"train": 14, "valid": 6})
    data = encrypt(src, tmp_path / "data", session_key)
    out = run(data, *TINY, "--batch-size", 7, "--epochs", 1, "--run-dir", tmp_path / "r")
    assert "warning" not in out.stderr
    assert metrics(tmp_path / "r")[0]["val_acc"] is not None and "test_acc" not in metrics(tmp_path / "r")[0]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["settings"]["test_split"] == "val"
    got = json.loads(run("eval", tmp_path / "r", data, "--json").stdout)
    assert (got["split"], got["images"]) == ("val", 6)
    assert got["loss"] == pytest.approx(metrics(tmp_path / "r")[0]["val_loss"], rel=1e-5)
    r = run(data, *TINY, "--batch-size", 7, "--epochs", 1, "--test-split", "test", "--run-dir", tmp_path / "r2", code=2)
    assert f"Error: Invalid value for '--test-split': {data}: no split 'test' (it has train, val)" in r.output
    assert not (tmp_path / "r2").exists()


@pytest.fixture(scope="module")
def shapes_image_scope(shapes_src, session_key, tmp_path_factory):
    return encrypt(shapes_src, tmp_path_factory.mktemp("img") / "out", session_key, scope="image", shard_size=64)


def test_refused_augmentations_exit_2_with_the_reason(shapes_pe, shapes_image_scope, tmp_path):
    r = run(shapes_pe, *TINY, "--augment", "crop,rotate", "--run-dir", tmp_path / "a", code=2)
    assert "Error: Invalid value for '--augment': 'rotate' does not commute with pixel-wise encryption: rotation by an angle" in r.output
    r = run(shapes_image_scope, *TINY, "--augment", "mixup", "--run-dir", tmp_path / "b", code=2)
    assert "Error: Invalid value for '--augment': 'mixup' needs one key for the whole dataset" in r.output
    r = run(shapes_pe, *TINY, "--augment", "wobble", "--run-dir", tmp_path / "c", code=2)
    assert "unknown augmentation 'wobble' (choose from crop, flip, vflip, rot90, mixup, cutmix, or none)" in r.output
    assert not (tmp_path / "a").exists()


def test_bad_options_exit_2(shapes_pe, tmp_path):
    r = run(shapes_pe, "--width", 4, "--batch-size", 512, "--run-dir", tmp_path / "r", code=2)
    assert "Invalid value for '--batch-size': batch size 512 (all ranks) is larger than the train split (114 images)" in r.output
    r = run(shapes_pe, *TINY, "--pad", 28, "--run-dir", tmp_path / "r", code=2)
    assert "Invalid value for '--pad': --pad 28 must be in 0..27 for 28x28 images" in r.output
    assert "'--recipe': 'slow' is not one of 'paper', 'fast'" in run(shapes_pe, "--recipe", "slow", code=2).output
    if not torch.cuda.is_available():
        r = run(shapes_pe, *TINY, "--device", "cuda", "--run-dir", tmp_path / "r", code=2)
        assert "Invalid value for '--device': CUDA was asked for, but torch sees no GPU" in r.output


def test_bad_datasets_exit_1_naming_the_file(tmp_path, shapes_pe):
    missing = tmp_path / "nothing"
    assert run(missing, *TINY, "--run-dir", tmp_path / "r", code=1).output == f"Error: {missing}: no such dataset directory\n"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{")
    r = run(broken, *TINY, "--run-dir", tmp_path / "r", code=1)
    assert r.output.startswith(f"Error: {broken / 'manifest.json'}: not valid JSON")
    r = run(shapes_pe, *TINY, "--train-split", "val", "--run-dir", tmp_path / "r", code=2)
    assert "no split 'val' (it has train, test)" in r.output


def test_resume_refusals(shapes_pe, shapes_src, session_key, tmp_path):
    r_dir = tmp_path / "r"
    r = run(shapes_pe, *TINY, "--resume", "--run-dir", r_dir, code=1)
    assert r.output == f"Error: {r_dir}: no such run directory\n"
    run(shapes_pe, *TINY, "--epochs", 2, "--stop-after", 1, "--run-dir", r_dir)
    r = run(shapes_pe, *TINY, "--epochs", 2, "--run-dir", r_dir, code=1)
    assert r.output == (f"Error: {r_dir}: already holds a run; pass --resume to continue it, --overwrite to start it afresh, "
                        "or choose another --run-dir\n")  # fmt: skip
    r = run(shapes_pe, "--width", 8, "--resume", "--run-dir", r_dir, code=1)
    assert r.output == (f"Error: {r_dir / 'config.json'}: this run was started with --width 4; resuming with --width 8 would not "
                        "continue it (start a new --run-dir instead)\n")  # fmt: skip
    other_key = tmp_path / "other.key"
    CliRunner().invoke(ppencrypt, ["keygen", str(other_key)])
    other = encrypt(shapes_src, tmp_path / "other", other_key, shard_size=32, scope="dataset")
    r = run(other, "--resume", "--run-dir", r_dir, code=1)
    assert r.output.startswith(f"Error: {other}: its key id is {load_key(other_key).key_id}, but run {r_dir} was trained on ")
    (r_dir / "checkpoint.pt").unlink()
    r = run(shapes_pe, "--resume", "--run-dir", r_dir, code=1)
    assert r.output == (f"Error: {r_dir}: no checkpoint.pt to resume from (the run stopped before its first epoch ended); "
                        "run the same command without --resume to start it afresh\n")  # fmt: skip


def test_eval_refusals(trained, tmp_path, cifar10_dir, session_key, shapes_pe):
    cifar = encrypt(cifar10_dir, tmp_path / "cifar", session_key)
    r = run("eval", trained, cifar, code=1)
    assert r.output == f"Error: {cifar}: images are 32x32 with 3 channels, but run {trained} takes 28x28 with 1 channel\n"
    r = run("eval", tmp_path / "norun", shapes_pe, code=1)
    assert r.output == f"Error: {tmp_path / 'norun'}: no such run directory\n"
    r = run("eval", trained, shapes_pe, "--split", "val", code=1)
    assert r.output == f"Error: {shapes_pe}: no split 'val' (it has train, test)\n"
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text((trained / "config.json").read_text())
    (damaged / "checkpoint.pt").write_bytes(b"garbage")
    r = run("eval", damaged, shapes_pe, code=1)
    assert r.output == f"Error: {damaged / 'checkpoint.pt'}: not a readable checkpoint (BadZipFile)\n"


def test_the_server_side_imports_no_key_or_cipher_code():
    """pptrain never holds a key: none of its modules pulls in key handling or the cipher."""
    code = (
        "import sys, pptrain.cli, pptrain.train, pptrain.infer, pptrain.stream, pptrain.data, pptrain.augment, pptrain.loop, pptrain.record\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'"
        # ppencrypt.keys: the key file, derivation, scope and MAC, and open_keyed, all in that package
        " or m.startswith(('ppencrypt.keys', 'ppencrypt.ciphers', 'ppencrypt.dataset', 'ppencrypt.decrypt')))\n"
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_augment_from_trains_the_earlier_epochs_unaugmented(shapes_pe, tmp_path):
    """--augment-from 2: epoch 1 is exactly an unaugmented run's epoch 1, epoch 2 is not."""
    def history(name, *args):
        run(shapes_pe, *TINY, "--epochs", 2, *args, "--run-dir", tmp_path / name)
        return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics(tmp_path / name)]

    none, later = history("none", "--augment", "none"), history("later", "--augment-from", 2)
    assert later[0] == none[0] and later[1] != none[1]
    c = json.loads((tmp_path / "later" / "config.json").read_text())
    assert c["resolved"]["augment"] == ["crop", "flip"] and c["resolved"]["augment_from"] == 2 and c["settings"]["augment_from"] == 2
    r = run(shapes_pe, *TINY, "--augment-from", 0, "--run-dir", tmp_path / "zero", code=2)
    assert "Invalid value for '--augment-from': 0 is not in the range x>=1" in r.output


def test_augment_until_trains_the_last_epochs_unaugmented(shapes_pe, tmp_path):
    """--augment-until 1: epoch 1 is exactly an augmented run's epoch 1, epoch 2 is not."""
    def history(name, *args):
        run(shapes_pe, *TINY, "--epochs", 2, "--augment", "crop,flip", *args, "--run-dir", tmp_path / name)
        return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics(tmp_path / name)]

    every, first = history("every", "--augment-until", 2), history("first", "--augment-until", 1)
    assert first[0] == every[0] and first[1] != every[1]
    c = json.loads((tmp_path / "first" / "config.json").read_text())
    assert c["resolved"]["augment_until"] == 1 and c["settings"]["augment_until"] == 1
    r = run(shapes_pe, *TINY, "--augment-from", 2, "--augment-until", 1, "--run-dir", tmp_path / "empty", code=2)
    assert r.output.endswith("--augment-until 1 is before --augment-from 2: no epoch would be augmented (for that, --augment none)\n")
    assert not (tmp_path / "empty").exists()


def test_the_default_augmentation_follows_the_recipes_schedule(shapes_pe, tmp_path):
    """fast: the last 3 epochs unaugmented, so none for 3 epochs or fewer; an --augment asked
    for by name runs every epoch; reference: every epoch."""
    def history(name, *args):
        run(shapes_pe, *TINY, *args, "--run-dir", tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())["resolved"]
        return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics(tmp_path / name)], config

    short, c = history("short", "--epochs", 2)
    assert c["augment"] == [] and short == history("none", "--epochs", 2, "--augment", "none")[0]
    scheduled, c = history("scheduled", "--epochs", 5)
    assert (c["augment"], c["augment_from"], c["augment_until"]) == (["crop", "flip"], 1, 2)
    assert scheduled == history("until", "--epochs", 5, "--augment", "crop,flip", "--augment-until", 2)[0]
    every, c = history("every", "--epochs", 5, "--augment", "crop,flip")
    assert c["augment_until"] == 5 and every[:2] == scheduled[:2] and every[2:] != scheduled[2:]
    assert history("reference", "--epochs", 2, "--recipe", "reference", "--stop-after", 1)[1]["augment_until"] == 2


def test_the_stem_follows_the_image_size_and_eval_rebuilds_it(shapes_src, session_key, tmp_path):
    big = encrypt(shapes_src, tmp_path / "big", session_key, size=72, shard_size=64)  # above 64 px: torchvision's stem
    run(big, *TINY, "--epochs", 1, "--run-dir", tmp_path / "auto")
    run(big, *TINY, "--epochs", 1, "--stem", "cifar", "--run-dir", tmp_path / "cifar")
    for name, stem, kernel in (("auto", "imagenet", 7), ("cifar", "cifar", 3)):
        c = json.loads((tmp_path / name / "config.json").read_text())
        assert c["model"]["stem"] == stem and c["settings"]["stem"] == ("auto" if name == "auto" else "cifar")
        assert torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"]["conv1.weight"].shape[-1] == kernel
        got = json.loads(run("eval", tmp_path / name, big, "--json").stdout)
        assert got["accuracy"] == pytest.approx(metrics(tmp_path / name)[-1]["test_acc"])
    assert json.loads((tmp_path / "cifar" / "config.json").read_text())["model"]["parameters"] < json.loads(
        (tmp_path / "auto" / "config.json").read_text())["model"]["parameters"]  # 7x7 against 3x3 kernels
