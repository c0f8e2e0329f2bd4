"""Fixtures: real dataset layouts built from the vendored real images (tests/data/README.md).

Every layout a user can bring is built here the way the real thing is laid out: CIFAR python
pickles, IDX (gzip) files, ImageFolder trees with and without split folders.
"""

from __future__ import annotations

import gzip
import os
import pickle
import signal
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

# The tests send SIGINT as a terminal's Ctrl-C does. A run started in the background by a
# non-interactive shell (`bash .ci/run &`) begins with SIGINT ignored, and exec keeps an ignored
# signal ignored, so every ppencrypt it started would shrug the Ctrl-C off (exit 0); a Python
# handler is reset to the default at exec, which is what a child should start with.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# OpenMP threads spin-wait by default, which on a CPU shared with other jobs makes torch many
# times slower (pipeline/ppencrypt/audit/extra.py); read when torch starts, so set before a test imports it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
DATA = Path(__file__).parent / "data"
# experiments/ is the harness run from the repository root (python -m experiments), not an
# installed package: its tests import it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Property tests draw the same examples on every run by default, so a red build is a regression,
# not a new draw; HYPOTHESIS_PROFILE=explore draws fresh ones (and --hypothesis-seed=N replays).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def client_state(tmp_path_factory, monkeypatch):
    """Where ppencrypt remembers the datasets it wrote (keys/binding.py): a folder of the test's
    own, never the user's ~/.local/state, and inherited by the processes a test starts."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("PPENCRYPT_STATE", str(state))
    return state


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_vendored(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """The vendored PNGs of one folder as (N x H x W x C uint8, labels), in file order."""
    files = sorted((DATA / folder).glob("*.png"))
    images = [np.asarray(Image.open(f)) for f in files]
    images = np.stack([im[..., None] if im.ndim == 2 else im for im in images])
    labels = np.array([int(f.stem.rsplit("_", 1)[1]) for f in files], dtype=np.int64)
    return images, labels


@pytest.fixture(scope="session")
def cifar10():
    return load_vendored("cifar10")


@pytest.fixture(scope="session")
def fmnist():
    return load_vendored("fashion-mnist")


@pytest.fixture(scope="session")
def master_key():
    from ppencrypt.keys import MasterKey

    return MasterKey(bytes(range(32)))


@pytest.fixture
def key_file(tmp_path):
    from ppencrypt.keys import generate_key_file

    path = tmp_path / "keys" / "test.key"
    generate_key_file(path)
    return path


def write_cifar10(root: Path, images: np.ndarray, labels: np.ndarray, n_test: int = 5) -> Path:
    """The cifar-10-batches-py layout: five training batches, a test batch, the meta file."""
    root.mkdir(parents=True, exist_ok=True)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R plane, G plane, B plane
    train_x, train_y, test_x, test_y = rows[n_test:], labels[n_test:], rows[:n_test], labels[:n_test]
    parts = np.array_split(np.arange(len(train_x)), 5)
    for i, idx in enumerate(parts, 1):
        batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": train_y[idx].tolist(), b"data": train_x[idx]}
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": test_y.tolist(), b"data": test_x}
    (root / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": 10000, b"num_vis": 3072}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def write_fmnist_idx(root: Path, images: np.ndarray, labels: np.ndarray, n_test: int = 5) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte.gz", images[n_test:, ..., 0])
    write_idx(root / "train-labels-idx1-ubyte.gz", labels[n_test:])
    write_idx(root / "t10k-images-idx3-ubyte.gz", images[:n_test, ..., 0])
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels[:n_test])
    return root


def write_imagefolder(root: Path, images: np.ndarray, labels: np.ndarray, names=None, splits=None) -> Path:
    """root/<class>/img_NN.png, or root/<split>/<class>/img_NN.png with ``splits`` = {split: n}."""
    names = names or [f"class_{i}" for i in range(int(labels.max()) + 1)]
    groups = {None: range(len(images))}
    if splits:
        bounds = np.cumsum([0, *splits.values()])
        groups = {s: range(bounds[i], bounds[i + 1]) for i, s in enumerate(splits)}
    for split, idx in groups.items():
        for i in idx:
            folder = root / (split or "") / names[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            im = images[i]
            Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / f"img_{i:02d}.png")
    return root


@pytest.fixture
def cifar10_dir(tmp_path, cifar10):
    return write_cifar10(tmp_path / "cifar-10-batches-py", *cifar10)


@pytest.fixture
def fmnist_dir(tmp_path, fmnist):
    return write_fmnist_idx(tmp_path / "fashion-mnist", *fmnist)


@pytest.fixture
def folder_dir(tmp_path, cifar10):
    images, labels = cifar10
    return write_imagefolder(tmp_path / "folder", images, labels, CIFAR10_NAMES, splits={"train": 15, "test": 5})


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path: for byte-identity checks."""
    return {
        str(Path(d, f).relative_to(root)): Path(d, f).read_bytes()
        for d, _, files in os.walk(root)
        for f in files
    }


# --- CIFAR-100 --------------------------------------------------------------------------------

CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower "
    "sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale "
    "willow_tree wolf woman worm"
).split()


def write_cifar100(root: Path, images: np.ndarray, labels: np.ndarray, n_test: int = 5) -> Path:
    """The cifar-100-python layout: ``train``, ``test`` and ``meta`` pickles with fine labels."""
    root.mkdir(parents=True, exist_ok=True)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    for name, idx in (("train", slice(n_test, None)), ("test", slice(None, n_test))):
        batch = {
            b"filenames": [f"cifar100_{name}_{i:02d}.png".encode() for i in range(len(rows[idx]))],
            b"batch_label": f"{name}ing batch 1 of 1".encode(),
            b"fine_labels": labels[idx].tolist(),
            b"coarse_labels": [0] * len(rows[idx]),
            b"data": rows[idx],
        }
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"fine_label_names": [n.encode() for n in CIFAR100_NAMES], b"coarse_label_names": [b"x"] * 20}
    (root / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


@pytest.fixture(scope="session")
def cifar100():
    return load_vendored("cifar100")


@pytest.fixture
def cifar100_dir(tmp_path, cifar100):
    return write_cifar100(tmp_path / "cifar-100-python", *cifar100)


# --- bigger datasets made from the real images -------------------------------------------------


def tile_real(images: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct real-derived images: round k of the vendored set is rolled k pixels right."""
    rounds = -(-n // len(images))
    tiled = np.concatenate([np.roll(images, k, axis=2) for k in range(rounds)])[:n]
    return np.ascontiguousarray(tiled), np.tile(labels, rounds)[:n]


# --- running the CLI --------------------------------------------------------------------------


def ppencrypt(*args):
    """``ppencrypt ARGS`` in-process; the click Result has exit_code, stdout and stderr."""
    from click.testing import CliRunner

    from ppencrypt.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def encrypt(src, out, key=None, *extra, workers: int = 1, shard_size: int = 4):
    """``ppencrypt dataset`` with small shards; asserts success."""
    key_args = ("--key", key) if key is not None else ()
    r = ppencrypt("dataset", src, out, *key_args, "--quiet", "--workers", workers, "--shard-size", shard_size, *extra)
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture
def encrypted(tmp_path, cifar10_dir, key_file):
    """The CIFAR-10 fixture encrypted with pe: dataset scope (asked for: the default is image), wds, 4 samples per shard."""
    out = tmp_path / "out"
    encrypt(cifar10_dir, out, key_file, "--key-scope", "dataset")
    return out


def leftovers(out: Path) -> list[str]:
    """OUT itself or any hidden sibling a job made for it (.OUT.partial-*, .OUT.old-*)."""
    if not out.parent.exists():
        return []
    return sorted(p.name for p in out.parent.iterdir() if p.name == out.name or p.name.startswith(f".{out.name}."))


def read_pngs(root: Path) -> dict[str, np.ndarray]:
    """Every PNG under root, by '/'-separated relative path, as H x W x C arrays."""
    out = {}
    for p in sorted(root.rglob("*.png")):
        a = np.asarray(Image.open(p))
        out[p.relative_to(root).as_posix()] = a[..., None] if a.ndim == 2 else a
    return out


def expected_pngs(images, labels, classes, n_test=5) -> dict[str, np.ndarray]:
    """What ``ppencrypt decrypt`` writes for the fixtures' splits, by relative path:
    DEST/<split>/<class, '/' -> '_'>/<index, 8 digits>.png."""
    out = {}
    for split, part in (("train", slice(n_test, None)), ("test", slice(None, n_test))):
        for i, (image, label) in enumerate(zip(images[part], labels[part])):
            out[f"{split}/{classes[label].replace('/', '_')}/{i:08d}.png"] = image
    return out


def ppencrypt_process(*args, **popen):
    """``ppencrypt ARGS`` as its own process (for worker pools and signals): a Popen."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ppencrypt", *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


SALT = bytes(range(16))  # a dataset salt for tests that build image-scope key rings by hand


# --- S3 on 127.0.0.1 (moto's server, tests/servers.py) ------------------------------------------


@pytest.fixture(scope="module")
def s3_server():
    """One S3 server for a module's tests, stopped after them."""
    from servers import S3Server

    server = S3Server()
    yield server
    server.stop()


def new_bucket(s3_server, monkeypatch, tmp_path: Path, prefix: str = "ppencrypt") -> str:
    """s3://<a new, empty bucket> on ``s3_server``, this test's environment pointing s3fs at the
    server (AWS_ENDPOINT_URL and the AWS_* keys, as a user points it at AWS)."""
    import uuid

    from servers import make_bucket

    for name, value in s3_server.env(tmp_path).items():
        monkeypatch.setenv(name, value)
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    make_bucket(name)
    return f"s3://{name}"
