"""How the streaming readers start and live: never by forking a training process that runs
threads; once per loader, kept across epochs.

A rank runs threads by its first epoch (gloo's, zarr's I/O loop, tqdm's monitor); a process
forked from it inherits every lock one of them held at that instant, and a reader forked that
way once hung inside ``os.fork()``. The readers start from a fork server instead, on the
loader's first epoch, and take the training process's environment as it is when each epoch
begins (tests/test_remote_s3.py: the credentials of a bucket, set after the fork server started).
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from ppencrypt.formats import open_dataset
from pptrain.distributed import Dist
from pptrain.stream import StreamLoader
from trainer_fixtures import encrypt, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

CPU = torch.device("cpu")

# A library that re-initialises itself in a forked child under a lock that another thread of
# the parent holds at the moment of the fork: the child waits for ever. This is the shape of
# the hang, made certain instead of rare.
HELD_LOCK = textwrap.dedent("""
    import os, sys, threading, time
    import torch
    from ppencrypt.formats import open_dataset
    from pptrain.distributed import Dist
    from pptrain.stream import StreamLoader

    held, taken = threading.Lock(), threading.Event()
    def hold():
        with held:
            taken.set()
            time.sleep(3600)
    threading.Thread(target=hold, daemon=True).start()
    taken.wait()
    os.register_at_fork(after_in_child=held.acquire)

    loader = StreamLoader(open_dataset(sys.argv[1]), "train", 8, Dist(), torch.device("cpu"), 0, True, workers=2, buffer=40)
    print(sum(len(y) for _, y, _ in loader.epoch(0)))
""")


def test_readers_start_while_a_thread_holds_a_lock(shapes_pe):
    ds = open_dataset(shapes_pe)
    expected = StreamLoader(ds, "train", 8, Dist(), CPU, 0, True, workers=0, buffer=40).images
    try:
        done = subprocess.run([sys.executable, "-c", HELD_LOCK, str(shapes_pe)], capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        raise AssertionError("a reader hung: it was forked from a process whose thread held a lock") from None
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == expected


def test_readers_start_once_and_serve_every_epoch(shapes_pe):
    loader = StreamLoader(open_dataset(shapes_pe), "train", 8, Dist(), CPU, 0, True, workers=2, buffer=40)
    list(loader.epoch(0))
    procs = list(loader.readers.procs)
    assert len(procs) == 2 and all(p.is_alive() for p in procs)
    for epoch in (1, 2):
        assert len(list(loader.epoch(epoch))) == loader.batches
    assert loader.readers.procs == procs and all(p.is_alive() for p in procs)
    loader.close()
    assert all(p.exitcode is not None for p in procs)


def test_a_reader_that_died_stops_the_epoch_with_an_error(shapes_pe):
    loader = StreamLoader(open_dataset(shapes_pe), "train", 8, Dist(), CPU, 0, True, workers=2, buffer=40)
    list(loader.epoch(0))
    victim = loader.readers.procs[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    with pytest.raises(RuntimeError, match=f"streaming reader 1 \\(pid {victim.pid}\\) exited unexpectedly"):
        list(loader.epoch(1))
    loader.close()


def test_an_epoch_left_unfinished_ends_when_the_next_starts(shapes_pe):
    """The readers serve one epoch at a time: a later epoch supersedes an unfinished one, whose
    batches stop (they cannot be those of the later epoch)."""
    loader = StreamLoader(open_dataset(shapes_pe), "test", 4, Dist(), CPU, 0, False, workers=2, buffer=40)
    first = loader.epoch(0)
    next(first)
    assert len(list(loader.epoch(0))) == loader.batches
    with pytest.raises(RuntimeError, match="a later epoch of this streaming loader has started"):
        list(first)
    loader.close()


def test_readers_that_would_not_fit_in_shared_memory_are_refused(shapes_pe, monkeypatch):
    from pptrain import readers
    from pptrain.errors import OptionError

    monkeypatch.setattr(readers, "SLOTS", 1 << 40)
    loader = StreamLoader(open_dataset(shapes_pe), "train", 8, Dist(), CPU, 0, True, workers=2, buffer=40)
    with pytest.raises(OptionError, match="2 streaming readers need .* MiB of shared memory, and /dev/shm has .* MiB free"):
        list(loader.epoch(0))


def handler_with_a_bug(error):
    raise KeyError("a bug in the handler")


def test_an_error_in_a_reader_that_is_not_the_datas_is_raised_with_its_traceback(shapes_src, session_key, tmp_path):
    root = encrypt(shapes_src, tmp_path / "out", session_key, shard_size=32)
    ds = open_dataset(root)
    bad = root / ds.manifest.splits["train"].shards[0].path
    bad.write_bytes(b"\0" * bad.stat().st_size)  # a hash mismatch: the handler is asked, and fails
    loader = StreamLoader(ds, "train", 8, Dist(), CPU, 0, True, workers=1, buffer=40, handler=handler_with_a_bug)
    with pytest.raises(KeyError, match="KeyError in a streaming reader:(.|\n)*handler_with_a_bug(.|\n)*a bug in the handler"):
        list(loader.epoch(0))
    loader.close()
