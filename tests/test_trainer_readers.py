"""How the streaming readers start: never by forking a training process that runs threads.

A rank runs threads by its first epoch (gloo's, zarr's I/O loop, tqdm's monitor); a process
forked from it inherits every lock one of them held at that instant, and a reader forked that
way once hung inside ``os.fork()``. The readers start from a fork server instead, and take the
training process's environment as it is when the epoch begins (tests/test_remote_s3.py: the
credentials of a bucket, set after the fork server started).
"""

import subprocess
import sys
import textwrap

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
