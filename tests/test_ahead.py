"""Image keys drawn ahead in a background thread (keys/ahead.py): the same draws, whatever the
batching, served from what was drawn ahead, and no thread left once the job ends."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import SALT

from ppencrypt.ciphers import make_cipher
from ppencrypt.keys import KeyRing
from ppencrypt.keys.ahead import Ahead

MASTER = bytes(range(32))
SHAPE = (32, 32, 3)


def ring(split: str = "train") -> KeyRing:
    return KeyRing(MASTER, "pe", "image", split, SALT).bind(SHAPE, {})


def schedule():
    return make_cipher("pe").draws(SHAPE)


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("reduce", [True, False])
def test_any_batching_of_a_run_gets_the_rings_draws(reduce):
    """Batches of 6, 6, 4 (a chunk's end), 6, 3, 9 ... of consecutive images: each is what
    the ring draws for it, cut from or joined across the blocks drawn ahead."""
    r, s = ring(), schedule()
    ahead = Ahead(images=16)
    try:
        at = 0
        for size in [6, 6, 4, 6, 3, 9, 1, 17, 6]:
            got = ahead.draws(r, s, np.arange(at, at + size), reduce)
            assert same(got, r.draws(s, np.arange(at, at + size), reduce)), (at, size)
            at += size
    finally:
        ahead.close()


def test_the_next_batch_comes_from_the_background_thread():
    r, s = ring(), schedule()
    ahead = Ahead(images=12)
    try:
        ahead.draws(r, s, np.arange(0, 6), False)
        first, count, future = ahead._blocks[0]
        assert (first, count) == (6, 6)
        drawn_ahead = future.result()
        got = ahead.draws(r, s, np.arange(6, 12), False)
        assert all(np.shares_memory(g, d) for g, d in zip(got, drawn_ahead))  # served, not drawn again
        assert same(got, r.draws(s, np.arange(6, 12), False))
    finally:
        ahead.close()


def test_a_jump_another_ring_or_scattered_indices_are_drawn_on_the_spot():
    r, other, s = ring(), ring("val"), schedule()
    ahead = Ahead(images=12)
    try:
        for rr, idx in [(r, np.arange(0, 6)), (r, np.arange(100, 106)), (other, np.arange(106, 112)),
                        (other, np.array([3, 9, 4])), (r, np.arange(106, 112))]:  # fmt: skip
            assert same(ahead.draws(rr, s, idx, True), rr.draws(s, idx, True))
    finally:
        ahead.close()
    assert not any(t.name.startswith("ppencrypt-keys-ahead") for t in threading.enumerate())


def test_encryption_looking_ahead_is_byte_identical_and_leaves_no_thread(cifar10):
    images = np.concatenate([cifar10[0]] * 10)[:200]
    cipher, r = make_cipher("pe"), KeyRing(MASTER, "pe", "image", "train", SALT)
    want = cipher.encrypt(images, r, np.arange(200))
    got, at = [], 0
    with cipher.looking_ahead():
        for size in [64, 64, 13, 51, 8]:  # a job's chunks, cut where shards end
            got.append(cipher.encrypt(images[at : at + size], r, np.arange(at, at + size)))
            at += size
        assert any(t.name.startswith("ppencrypt-keys-ahead") for t in threading.enumerate())
    assert np.array_equal(np.concatenate(got), want)
    assert np.array_equal(cipher.decrypt(want, r, np.arange(200)), images)
    assert not any(t.name.startswith("ppencrypt-keys-ahead") for t in threading.enumerate())
