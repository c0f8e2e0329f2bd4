"""Outputs appear whole or not at all: a job killed mid-run leaves no OUT; SIGTERM and Ctrl-C
clean up at once; after a SIGKILL the next run removes the stale partial."""

import os
import signal
import time

import pytest
from conftest import encrypt, leftovers, ppencrypt_process, tile_real, write_fmnist_idx, write_idx

N_IMAGES = 60_000  # about a second of work: a window to interrupt it in


@pytest.fixture(scope="module")
def big_idx(tmp_path_factory, fmnist):
    """Fashion-MNIST-shaped IDX (uncompressed, fast to write) from tiled real images."""
    root = write_fmnist_idx(tmp_path_factory.mktemp("big") / "fashion-mnist", *fmnist)
    images, labels = tile_real(*fmnist, N_IMAGES)
    for p in root.glob("train-*"):
        p.unlink()
    write_idx(root / "train-images-idx3-ubyte", images[..., 0])
    write_idx(root / "train-labels-idx1-ubyte", labels)
    return root


def start_and_interrupt(src, out, key_file, sig) -> tuple[int, str]:
    """Start a job, wait until its partial output holds a shard, send ``sig``: (rc, stderr)."""
    p = ppencrypt_process("dataset", src, out, "--key", key_file, "--shard-size", 500, "--quiet")
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.name}.partial-{p.pid}-*/train/*.tar")):
        assert p.poll() is None, f"finished before it could be interrupted: {p.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    return p.returncode, err


def test_sigkill_leaves_no_output_and_the_rerun_cleans_up(tmp_path, big_idx, key_file):
    out = tmp_path / "out"
    rc, _ = start_and_interrupt(big_idx, out, key_file, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    stale = leftovers(out)
    assert len(stale) == 1 and stale[0].startswith(".out.partial-")
    encrypt(big_idx, out, key_file, shard_size=5000)
    assert leftovers(out) == ["out"]
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize("sig, rc", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 1)], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_remove_the_partial_at_once(tmp_path, big_idx, key_file, sig, rc):
    out = tmp_path / "out"
    got, err = start_and_interrupt(big_idx, out, key_file, sig)
    assert got == rc, err
    assert "Traceback" not in err
    assert leftovers(out) == []


def test_a_running_jobs_partial_is_not_removed(tmp_path, cifar10_dir, key_file):
    """Only partials whose process is gone are stale: a live process's partial stays."""
    out = tmp_path / "out"
    live = tmp_path / f".out.partial-{os.getppid()}-abc"
    live.mkdir()
    encrypt(cifar10_dir, out, key_file)
    assert leftovers(out) == [live.name, "out"]
