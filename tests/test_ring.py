"""Decoded chunks come back from the worker processes in shared memory (ppencrypt/ring.py), with
the bytes an in-process decode gives, and a slot is never written while its chunk is in use."""

from __future__ import annotations

import mmap
import time

import numpy as np
import pytest
from conftest import tile_real, write_imagefolder

from ppencrypt.parallel import WorkerPool
from ppencrypt.resize import DCT_LINEAR, sized
from ppencrypt.ring import SLOT_BYTES
from ppencrypt.sources import open_source
from ppencrypt.sources.base import run_task


@pytest.fixture(scope="module")
def folder(tmp_path_factory, cifar10):
    images, labels = tile_real(*cifar10, 300)  # 5 tasks of 64 files, the last short
    return write_imagefolder(tmp_path_factory.mktemp("ring") / "src", images, labels)


def chunks(folder, workers: int, size: int = 48):
    with WorkerPool(workers) as pool:
        loader = open_source(str(folder), sized(size, DCT_LINEAR), pool).splits["train"]
        for chunk in pool.map(run_task, loader.tasks()):
            yield chunk, pool


def in_shared_memory(a: np.ndarray) -> bool:
    return isinstance(a.base, mmap.mmap)


def test_worker_chunks_arrive_in_shared_memory_with_the_bytes_of_one_process(folder):
    one = [(c.images.copy(), c.labels.copy()) for c, _ in chunks(folder, 1)]
    got = []
    for c, _ in chunks(folder, 2):
        assert in_shared_memory(c.images), "a worker's pixels came back pickled"
        got.append((c.images.copy(), c.labels.copy()))
    assert len(got) == len(one) == 5
    for (a, la), (b, lb) in zip(one, got):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_a_chunk_in_use_is_never_overwritten(folder):
    # the workers keep decoding the chunks after it while the consumer is slow; its slot must
    # not be handed to one of them until the consumer asks for the next chunk
    for c, _ in chunks(folder, 2):
        before = c.images.copy()
        time.sleep(0.3)
        np.testing.assert_array_equal(c.images, before)


def test_an_abandoned_map_frees_its_slots_for_the_next(folder):
    one = [c.images.copy() for c, _ in chunks(folder, 1)]
    with WorkerPool(2) as pool:
        loader = open_source(str(folder), sized(48, DCT_LINEAR), pool).splits["train"]
        for _ in range(3):  # each abandoned with tasks still running in the workers
            m = pool.map(run_task, loader.tasks())
            next(m)
            m.close()
        got = [c.images.copy() for c in pool.map(run_task, loader.tasks())]
        time.sleep(0.5)  # the abandoned tasks' slots come back as they finish
        again = [c for c in pool.map(run_task, loader.tasks())]
        assert all(in_shared_memory(c.images) for c in again[:1])
    for a, b in zip(one, got):
        np.testing.assert_array_equal(a, b)


def test_a_chunk_larger_than_a_slot_comes_back_pickled(folder):
    size = 320  # 64 images of 320 x 320 x 3 are 19.7 MB
    assert 64 * size * size * 3 > SLOT_BYTES
    one = [c.images.copy() for c, _ in chunks(folder, 1, size)]
    got = []
    for c, _ in chunks(folder, 2, size):
        assert in_shared_memory(c.images) == (c.images.nbytes <= SLOT_BYTES)
        got.append(c.images.copy())
    assert any(a.nbytes > SLOT_BYTES for a in got)
    for a, b in zip(one, got):
        np.testing.assert_array_equal(a, b)


def _sliced(task):
    chunk = run_task(task)  # stacked into the worker's slot
    chunk.images, chunk.labels = chunk.images[1:], chunk.labels[1:]  # a view that starts one image in
    return chunk


def test_a_chunk_sliced_after_stacking_arrives_with_its_own_pixels(folder):
    one = [c.images[1:].copy() for c, _ in chunks(folder, 1)]
    with WorkerPool(2) as pool:
        loader = open_source(str(folder), sized(48, DCT_LINEAR), pool).splits["train"]
        got = [c.images.copy() for c in pool.map(_sliced, loader.tasks())]
    for a, b in zip(one, got):
        np.testing.assert_array_equal(a, b)
