"""Source layouts (CIFAR-10/100, IDX, ImageFolder) and the decoding rule every image goes
through (modes, alpha, bit depth, EXIF orientation, --size)."""

import gzip
import os
import pickle

import numpy as np
import pytest
from conftest import (
    CIFAR10_NAMES,
    CIFAR100_NAMES,
    leftovers,
    ppencrypt,
    write_cifar10,
    write_cifar100,
    write_fmnist_idx,
    write_idx,
    write_imagefolder,
)
from PIL import Image

from ppencrypt.errors import SourceError
from ppencrypt.sources import FileLoader, open_source, read_head, run_task
from ppencrypt.sources.idx import FASHION_CLASSES


def decode(src, size=None, skip_bad=False):
    """open_source + every task run in-process: (Source, {split: (images, labels)})."""
    source = open_source(str(src), size, None, skip_bad)
    return source, {name: read_head(loader) for name, loader in source.splits.items()}


def assert_split(got, images, labels):
    assert np.array_equal(got[0], images)
    assert np.array_equal(got[1], labels)


# --- layouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["direct", "nested"])
@pytest.mark.parametrize(
    "data, write, folder, classes",
    [("cifar10", write_cifar10, "cifar-10-batches-py", CIFAR10_NAMES), ("cifar100", write_cifar100, "cifar-100-python", CIFAR100_NAMES)],
    ids=["cifar10", "cifar100"],
)
def test_cifar(request, tmp_path, data, write, folder, classes, nested):
    images, labels = request.getfixturevalue(data)
    root = write(tmp_path / "dl" / folder, images, labels)
    source, splits = decode(root.parent if nested else root)
    assert (source.layout, source.classes, source.shape) == (data, classes, (32, 32, 3))
    assert list(splits) == ["train", "test"]
    assert_split(splits["train"], images[5:], labels[5:])
    assert_split(splits["test"], images[:5], labels[:5])


@pytest.mark.parametrize("suffix", [".gz", ""], ids=["gzip", "raw"])
def test_idx(tmp_path, fmnist, suffix):
    images, labels = fmnist
    root = write_fmnist_idx(tmp_path / "fashion-mnist", images, labels)
    if not suffix:
        for p in root.iterdir():
            p.with_suffix("").write_bytes(gzip.decompress(p.read_bytes()))
            p.unlink()
    source, splits = decode(root)
    assert (source.layout, source.classes, source.shape) == ("idx", FASHION_CLASSES, (28, 28, 1))
    assert_split(splits["train"], images[5:], labels[5:])
    assert_split(splits["test"], images[:5], labels[:5])


def test_idx_class_names(tmp_path, fmnist):
    root = write_fmnist_idx(tmp_path / "digits", *fmnist)
    assert decode(root)[0].classes == [str(i) for i in range(10)]
    (root / "classes.txt").write_text("\n".join(f"name {i}" for i in range(10)) + "\n")
    assert decode(root)[0].classes == [f"name {i}" for i in range(10)]


def test_idx_splits_of_different_sizes_need_size(tmp_path, fmnist, cifar10):
    root = write_fmnist_idx(tmp_path / "mixed", *fmnist)
    gray = cifar10[0][:5].mean(axis=-1).astype(np.uint8)
    write_idx(root / "t10k-images-idx3-ubyte.gz", gray)
    with pytest.raises(SourceError, match="differ in image size.*--size"):
        decode(root)
    assert decode(root, size=28)[0].shape == (28, 28, 1)


def folder_order(labels, names, idx):
    """ImageFolder order: class folders sorted by name, files sorted within each."""
    return sorted(idx, key=lambda i: (names[labels[i]], i))


@pytest.mark.parametrize(
    "folders, ranges",
    [
        (None, {"train": range(20)}),
        ({"val": 8, "train": 12}, {"train": range(8, 20), "val": range(8)}),
        ({"Test": 5, "Validation": 15}, {"test": range(5), "val": range(5, 20)}),
    ],
    ids=["flat", "split", "aliases"],
)
def test_imagefolder(tmp_path, cifar10, folders, ranges):
    """Classes sorted by name (created here in reverse order), splits in train/test/val order."""
    images, labels = cifar10
    names = [f"c{9 - k}_{n}" for k, n in enumerate(CIFAR10_NAMES)]
    root = write_imagefolder(tmp_path / "folder", images, labels, names, splits=folders)
    source, splits = decode(root)
    present = sorted({names[y] for y in labels})
    assert source.layout == "imagefolder" and source.classes == present and source.shape == (32, 32, 3)
    assert list(splits) == list(ranges)
    for split, idx in ranges.items():
        order = folder_order(labels, names, idx)
        assert_split(splits[split], images[order], np.array([present.index(names[labels[i]]) for i in order]))


def test_imagefolder_ignores_hidden_files_and_os_droppings(tmp_path, cifar10):
    root = write_imagefolder(tmp_path / "folder", *cifar10)
    for junk in (".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.png"):
        (root / "class_3" / junk).write_bytes(b"junk")
    (root / ".git").mkdir()
    (root / ".git" / "x.png").write_bytes(b"junk")
    source, splits = decode(root)
    assert len(splits["train"][0]) == 20 and ".git" not in source.classes


def test_imagefolder_warns_about_folders_beside_splits(tmp_path, cifar10):
    root = write_imagefolder(tmp_path / "folder", *cifar10, splits={"train": 15, "test": 5})
    (root / "extras" / "a").mkdir(parents=True)
    assert any("extras" in w for w in decode(root)[0].warnings)


class Exploit:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("victim", ["data_batch_1", "batches.meta", "test_batch"])
def test_malicious_cifar_pickle_is_refused_unexecuted(tmp_path, cifar10, key_file, victim):
    root = write_cifar10(tmp_path / "cifar-10-batches-py", *cifar10)
    sentinel = tmp_path / "pwned"
    (root / victim).write_bytes(pickle.dumps({b"data": Exploit(sentinel), b"labels": [0]}, protocol=2))
    out = tmp_path / "out"
    r = ppencrypt("dataset", root, out, "--key", key_file, "--workers", "1")
    assert r.exit_code == 1
    assert f"{root}/{victim}" in r.stderr and "not a readable CIFAR pickle" in r.stderr
    assert not sentinel.exists()
    assert leftovers(out) == []


# --- the decoding rule ------------------------------------------------------------------------


def decode_files(tmp_path, files: dict[str, Image.Image], size=None, **save) -> tuple[tuple, dict[str, np.ndarray]]:
    """Save each PIL image as one file of a one-class ImageFolder and decode the folder:
    (dataset shape, {file name: array})."""
    folder = tmp_path / "src" / "only"
    folder.mkdir(parents=True)
    for name, im in files.items():
        im.save(folder / name, **save)
    source, splits = decode(folder.parent, size)
    return source.shape, dict(zip(sorted(files), splits["train"][0]))


def alpha_ramp(h, w) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * 255 // (h * w - 1)).astype(np.uint8)


def on_white(values: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255
    return values * a + 255 * (1 - a)


def test_rgba_is_composited_on_white(tmp_path, cifar10):
    rgb = cifar10[0][1]
    alpha = alpha_ramp(32, 32)
    alpha[0, :4] = [0, 0, 255, 255]
    shape, got = decode_files(tmp_path, {"a.png": Image.fromarray(np.dstack([rgb, alpha]))})
    got = got["a.png"]
    assert shape == (32, 32, 3)
    assert np.abs(got.astype(int) - on_white(rgb, alpha)).max() <= 1
    assert (got[0, :2] == 255).all() and np.array_equal(got[0, 2:4], rgb[0, 2:4])


def test_la_is_composited_on_white_and_stays_gray(tmp_path, fmnist):
    gray = fmnist[0][2, ..., 0]
    alpha = alpha_ramp(28, 28)
    shape, got = decode_files(tmp_path, {"a.png": Image.fromarray(np.dstack([gray, alpha]), "LA")})
    assert shape == (28, 28, 1)
    assert np.abs(got["a.png"].astype(int) - on_white(gray[..., None], alpha)).max() <= 1


def test_palette_images_are_looked_up(tmp_path, cifar10):
    p = Image.fromarray(cifar10[0][4]).quantize(64)
    palette = np.array(p.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    expected = palette[np.asarray(p)]
    shape, got = decode_files(tmp_path, {"p.png": p})
    assert shape == (32, 32, 3) and np.array_equal(got["p.png"], expected)
    _, got = decode_files(tmp_path / "t", {"pt.png": p}, transparency=int(np.asarray(p)[0, 0]))
    transparent = np.asarray(p) == np.asarray(p)[0, 0]
    assert (got["pt.png"][transparent] == 255).all()
    assert np.array_equal(got["pt.png"][~transparent], expected[~transparent])


def test_16_bit_grayscale_is_scaled_by_257(tmp_path, fmnist):
    gray = fmnist[0][3, ..., 0].astype(np.int64)
    noise = np.random.default_rng(0).integers(-120, 121, gray.shape)  # test data only
    wide = np.clip(gray * 257 + noise, 0, 65535).astype(np.uint16)
    im = Image.fromarray(wide)
    assert im.mode.startswith("I;16")
    shape, got = decode_files(tmp_path, {"a.png": im})
    assert shape == (28, 28, 1)
    assert np.array_equal(got["a.png"][..., 0], np.rint(wide / 257).astype(np.uint8))
    assert np.array_equal(got["a.png"][..., 0], gray)


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([[-5, 0, 128, 129, 257 * 200, 65535, 70000]], np.int32), [0, 0, 0, 1, 200, 255, 255]),
        (np.array([[-5.0, 0.0, 0.4, 0.6, 100.2, 254.9, 300.0]], np.float32), [0, 0, 0, 1, 100, 255, 255]),
    ],
    ids=["32-bit-int", "float"],
)
def test_wide_grayscale_modes(tmp_path, values, expected):
    im = Image.fromarray(values)
    assert im.mode in ("I", "F")
    shape, got = decode_files(tmp_path, {"a.tif": im})
    assert shape == (1, 7, 1) and got["a.tif"].ravel().tolist() == expected


def test_cmyk_is_converted_to_rgb(tmp_path, cifar10):
    rgb = cifar10[0][5]
    cmyk = Image.fromarray(np.dstack([255 - rgb, np.zeros((32, 32), np.uint8)]), "CMYK")
    shape, got = decode_files(tmp_path, {"a.tif": cmyk})
    assert shape == (32, 32, 3) and np.array_equal(got["a.tif"], rgb)


def test_bilevel_is_0_or_255(tmp_path, fmnist):
    gray = fmnist[0][6, ..., 0]
    shape, got = decode_files(tmp_path, {"a.png": Image.fromarray(gray > 100)})
    assert shape == (28, 28, 1) and np.array_equal(got["a.png"][..., 0], np.where(gray > 100, 255, 0))


def test_mixed_gray_and_rgb_become_rgb_with_replicated_gray(tmp_path, cifar10):
    rgb, other = cifar10[0][7], cifar10[0][8]
    gray = np.asarray(Image.fromarray(other).convert("L"))
    shape, got = decode_files(tmp_path, {"a.png": Image.fromarray(rgb), "b.png": Image.fromarray(gray)})
    assert shape == (32, 32, 3)
    assert np.array_equal(got["a.png"], rgb)
    assert np.array_equal(got["b.png"], np.repeat(gray[..., None], 3, axis=-1))


def with_orientation(array: np.ndarray, orientation: int) -> Image.Image:
    im = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    return im


@pytest.mark.parametrize(
    "orientation, upright",
    [(2, lambda a: a[:, ::-1]), (3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1))],
)
def test_exif_orientation_is_applied(tmp_path, cifar10, orientation, upright):
    """A rotated file sits next to an upright one of the displayed size: the size check must
    also see the displayed size."""
    stored = cifar10[0][9][:, :20]  # 20 wide, 32 high
    shown = upright(stored)
    neighbour = np.zeros_like(shown)
    neighbour[:] = cifar10[0][10][: shown.shape[0], : shown.shape[1]]
    folder = tmp_path / "src" / "only"
    folder.mkdir(parents=True)
    im = with_orientation(stored, orientation)
    im.save(folder / "a.png", exif=im.info["exif"])
    Image.fromarray(neighbour).save(folder / "b.png")
    source, splits = decode(folder.parent)
    assert source.shape == (*shown.shape[:2], 3)
    assert np.array_equal(splits["train"][0][0], shown)


@pytest.mark.parametrize("landscape", [True, False])
def test_size_center_crops_the_longer_side(tmp_path, cifar10, landscape):
    a, b = cifar10[0][11], cifar10[0][12]
    both = np.concatenate([a, b], axis=1 if landscape else 0)  # 64 x 32 or 32 x 64
    shape, got = decode_files(tmp_path, {"a.png": Image.fromarray(both)}, size=32)
    expected = both[:, 16:48] if landscape else both[16:48]
    assert shape == (32, 32, 3) and np.array_equal(got["a.png"], expected)


@pytest.mark.parametrize("size", [32, 20, 7])
def test_size_gives_n_by_n_alike_for_files_and_arrays(tmp_path, cifar10, size):
    """CIFAR (decoded arrays) and ImageFolder (files) apply the same --size rule."""
    images, labels = cifar10
    _, from_arrays = decode(write_cifar10(tmp_path / "cifar-10-batches-py", images, labels), size)
    names = [f"c{i:02d}" for i in range(20)]
    _, from_files = decode(write_imagefolder(tmp_path / "folder", images, np.arange(20), names), size)
    got = from_arrays["test"][0]
    assert got.shape == (5, size, size, 3)
    assert np.array_equal(got, from_files["train"][0][:5])
    if size == 32:
        assert np.array_equal(got, images[:5])
    else:
        expected = np.asarray(Image.fromarray(images[0]).resize((size, size), Image.Resampling.BICUBIC))
        assert np.array_equal(got[0], expected)


def test_size_on_grayscale_arrays(tmp_path, fmnist):
    source, splits = decode(write_fmnist_idx(tmp_path / "fashion-mnist", *fmnist), size=14)
    assert source.shape == (14, 14, 1) and splits["train"][0].shape == (15, 14, 14, 1)


def test_torchvision_raw_folder(tmp_path, fmnist):
    """torchvision's downloaders leave SRC/raw/*-idx?-ubyte[.gz] (and maybe processed/)."""
    images, labels = fmnist
    write_fmnist_idx(tmp_path / "FashionMNIST" / "raw", images, labels)
    (tmp_path / "FashionMNIST" / "processed").mkdir()
    source, splits = decode(tmp_path / "FashionMNIST")
    assert source.layout == "idx" and source.shape == (28, 28, 1)
    assert_split(splits["train"], images[5:], labels[5:])


@pytest.mark.parametrize("limit", [1, 63, 64, 65, 80, 500])
def test_read_head_returns_the_first_images_across_tasks(tmp_path, cifar10, limit):
    """80 files make two tasks of 64 and 16; the head is cut from them in order."""
    images, labels = cifar10
    root = write_imagefolder(tmp_path / "folder", images, labels, CIFAR10_NAMES)
    loader = open_source(str(root)).splits["train"]
    many = FileLoader(loader.paths * 4, loader.names * 4, loader.labels * 4, 3, None, False)
    assert len(list(many.tasks())) == 2
    x, y = read_head(many, limit)
    n = min(limit, 80)
    assert x.shape == (n, 32, 32, 3) and y.shape == (n,)
    whole = [run_task(t) for t in many.tasks()]
    assert np.array_equal(x, np.concatenate([c.images for c in whole])[:n])
    assert np.array_equal(y, np.concatenate([c.labels for c in whole])[:n])
