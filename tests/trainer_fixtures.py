"""Tiny encrypted datasets for the trainer tests, built from the vendored real images.

Not a test module: the trainer tests import these fixtures. The "three shapes" dataset groups
the 20 vendored Fashion-MNIST images into classes a narrow network separates within a few
epochs — tops (T-shirt, pullover, dress, coat, shirt), trousers, footwear (sandal, sneaker,
ankle boot); the single bag is left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import load_vendored, write_idx
from ppencrypt.dataset import EncryptOptions, encrypt_dataset
from ppencrypt.keys import generate_key_file

GROUPS = {"top": (0, 2, 3, 4, 6), "trouser": (1,), "footwear": (5, 7, 9)}
# pptrain's arguments for one quick epoch on the CPU (the remote-storage tests)
TRAIN = ["--width", "4", "--epochs", "1", "--batch-size", "16", "--quiet", "--device", "cpu"]


def run(*args, code=0):
    """``pptrain ARGS`` in-process, its exit code asserted (the output and the exception shown
    when it is another); the click Result has exit_code, stdout and stderr."""
    from click.testing import CliRunner

    from pptrain.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def metrics(run_dir: Path) -> list[dict]:
    """A run directory's metrics.jsonl: a record per epoch."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def three_shapes() -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_vendored("fashion-mnist")
    new = np.full(len(labels), -1)
    for k, members in enumerate(GROUPS.values()):
        new[np.isin(labels, members)] = k
    keep = new >= 0
    return images[keep], new[keep]


def write_three_shapes(root: Path, repeat: int = 6) -> Path:
    """IDX layout: the train split is every image ``repeat`` times, the test split each once."""
    images, labels = three_shapes()
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", np.tile(images[..., 0], (repeat, 1, 1)))
    write_idx(root / "train-labels-idx1-ubyte", np.tile(labels, repeat).astype(np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", images[..., 0])
    write_idx(root / "t10k-labels-idx1-ubyte", labels.astype(np.uint8))
    (root / "classes.txt").write_text("\n".join(GROUPS) + "\n")
    return root


def encrypt(src: Path, out: Path, key_file: Path | None, **opts) -> Path:
    from ppencrypt.keys import load_key

    key = load_key(key_file) if key_file is not None else None
    encrypt_dataset(str(src), str(out), key, EncryptOptions(workers=1, **opts))
    return out


@pytest.fixture(scope="session")
def shapes_src(tmp_path_factory) -> Path:
    return write_three_shapes(tmp_path_factory.mktemp("shapes") / "src")


@pytest.fixture(scope="session")
def session_key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trainer-key") / "k.key"
    generate_key_file(path)
    return path


@pytest.fixture(scope="session")
def shapes_pe(shapes_src, session_key, tmp_path_factory) -> Path:
    """The three-shapes dataset, pe with a dataset-scope key, wds shards of 32 samples."""
    return encrypt(shapes_src, tmp_path_factory.mktemp("shapes-pe") / "out", session_key, shard_size=32, scope="dataset")


def loader_args(loader: str, tmp_path: Path) -> list[str]:
    """pptrain's arguments for its in-memory ("memory") or streaming ("stream") input path."""
    return ["--stream", "--workers", "1", "--cache-dir", str(tmp_path / "cache")] if loader == "stream" else []


def shard_sizes(dataset: Path) -> dict[str, int]:
    """Every shard of the train and test splits: its path in the dataset and its bytes."""
    from ppencrypt.formats import open_dataset

    splits = open_dataset(dataset).manifest.splits
    return {s.path: s.bytes for split in ("train", "test") for s in splits[split].shards}
