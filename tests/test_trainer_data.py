"""The loaders: disjoint data per rank, equal batch counts, per-epoch seeding, streaming from
wds and zarr with fewer shards than readers, the readers' turns, read-ahead bounded in bytes,
typed errors from worker processes."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ppencrypt.errors import ShardError
from ppencrypt.formats import open_dataset
from pptrain.memory import MemoryLoader
from pptrain.distributed import Dist
from pptrain import slots, stages
from pptrain.stream import StreamLoader, in_process, interleave
from trainer_fixtures import encrypt, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

CPU = torch.device("cpu")


def epoch_of(loader, epoch):
    return [(x, y, i) for x, y, i in loader.epoch(epoch)]


def indices(batches) -> list[int]:
    return [int(v) for _, _, i in batches for v in i]


def loaders(kind, ds, split, batch, world, train, workers=2, seed=0):
    if kind == "memory":
        return [MemoryLoader(ds, split, batch, Dist(r, world), CPU, seed, train) for r in range(world)]
    return [StreamLoader(ds, split, batch, Dist(r, world), CPU, seed, train, workers, buffer=40) for r in range(world)]


@pytest.fixture(scope="module")
def shapes_zarr_one_shard(shapes_src, session_key, tmp_path_factory) -> Path:
    """Everything in one shard: fewer shards than the 2 ranks x 2 workers reading it."""
    return encrypt(shapes_src, tmp_path_factory.mktemp("zarr") / "out", session_key, storage="zarr", shard_size=1000)


@pytest.mark.parametrize("kind", ["memory", "stream"])
def test_ranks_get_disjoint_data_and_equal_batch_counts(kind, shapes_pe):
    ds = open_dataset(shapes_pe)
    count = ds.manifest.splits["train"].count
    ranks = loaders(kind, ds, "train", 8, 2, train=True)
    got = [epoch_of(r, 0) for r in ranks]
    expected = count // 16
    assert [len(g) for g in got] == [expected, expected] == [r.batches for r in ranks]
    assert all(len(y) == 8 for g in got for _, y, _ in g)
    a, b = indices(got[0]), indices(got[1])
    assert not set(a) & set(b)
    if kind == "memory":
        assert len(set(a)) == len(a)  # one pass, no repeats


@pytest.mark.parametrize("kind", ["memory", "stream"])
def test_batches_carry_the_stored_samples(kind, shapes_pe):
    ds = open_dataset(shapes_pe)
    whole = ds.split("train").read()
    (loader,) = loaders(kind, ds, "train", 8, 1, train=True)
    for x, y, i in epoch_of(loader, 3):
        assert np.array_equal(x.numpy(), whole.images[i.numpy()])
        assert np.array_equal(y.numpy(), whole.labels[i.numpy()])


@pytest.mark.parametrize("kind", ["memory", "stream"])
def test_order_is_seeded_per_epoch(kind, shapes_pe):
    ds = open_dataset(shapes_pe)
    (loader,) = loaders(kind, ds, "train", 8, 1, train=True)
    first, again, second = indices(epoch_of(loader, 0)), indices(epoch_of(loader, 0)), indices(epoch_of(loader, 1))
    assert first == again
    assert first != second
    (other_seed,) = loaders(kind, ds, "train", 8, 1, train=True, seed=1)
    assert indices(epoch_of(other_seed, 0)) != first


def test_stream_shard_order_changes_between_epochs(shapes_pe):
    """webdataset reuses one shuffle seed every epoch unless reseeded: the shard sequence
    (not just the sample order) must differ between epochs."""
    ds = open_dataset(shapes_pe)
    shards = ds.manifest.splits["train"].shards
    assert len(shards) >= 3
    (loader,) = loaders("stream", ds, "train", 8, 1, train=True, workers=0)
    loader.buffer = 1  # no pool mixing: batches come straight from the shards in order
    firsts = set()
    for epoch in range(6):
        i = indices(epoch_of(loader, epoch))[0]
        firsts.add(next(k for k, s in enumerate(shards) if s.first <= i < s.first + s.count))
    assert len(firsts) > 1


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [0, 2, 3])
def test_fewer_shards_than_readers(workers, shapes_zarr_one_shard):
    ds = open_dataset(shapes_zarr_one_shard)
    assert len(ds.manifest.splits["train"].shards) == 1
    ranks = loaders("stream", ds, "train", 8, 2, train=True, workers=workers)
    got = [epoch_of(r, 0) for r in ranks]
    assert len(got[0]) == len(got[1]) == ranks[0].batches > 0
    a, b = indices(got[0]), indices(got[1])
    assert not set(a) & set(b)
    assert len(set(a)) == len(a) and len(set(b)) == len(b)


@pytest.mark.parametrize("kind", ["memory", "stream"])
def test_evaluation_covers_every_sample_once(kind, shapes_pe, shapes_zarr_one_shard):
    for root in (shapes_pe, shapes_zarr_one_shard):
        ds = open_dataset(root)
        count = ds.manifest.splits["test"].count
        seen = [indices(epoch_of(r, 0)) for r in loaders(kind, ds, "test", 4, 2, train=False)]
        assert sorted(seen[0] + seen[1]) == list(range(count))


def test_a_damaged_shard_raises_a_typed_error_from_a_worker(shapes_src, session_key, tmp_path):
    root = encrypt(shapes_src, tmp_path / "out", session_key, shard_size=32)
    ds = open_dataset(root)
    bad = root / ds.manifest.splits["train"].shards[1].path
    data = bytearray(bad.read_bytes())
    data[600:700] = b"\x00" * 100  # inside the first member's pixels and the next header
    bad.write_bytes(bytes(data[:1500]))
    (loader,) = loaders("stream", ds, "train", 8, 1, train=True, workers=2)
    with pytest.raises(ShardError, match=str(bad)):
        epoch_of(loader, 0)


@pytest.mark.parametrize("chunk_bytes", [1, slots.CHUNK_BYTES])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_readers_take_turns_piece_by_piece(workers, chunk_bytes, shapes_pe, monkeypatch):
    """The training process takes a piece of at most a batch from each reader in turn, a reader
    leaving the turn when its stream ends (the order torch's DataLoader took its workers' pieces
    in), however the reader processes ship them: the batches are those of the readers'
    pipelines run here and interleaved so."""
    monkeypatch.setattr(slots, "CHUNK_BYTES", chunk_bytes)  # 1: a piece per chunk
    ds = open_dataset(shapes_pe)
    for split, train, batch in (("train", True, 8), ("test", False, 3)):
        loader = StreamLoader(ds, split, batch, Dist(1, 2), CPU, 0, train, workers, buffer=40)
        for epoch in (0, 1):
            expected = []
            for _, _, i in interleave([in_process(p, loader.handler) for p in loader.plans(epoch)], batch):
                expected += i.tolist()
                if train and len(expected) >= loader.batches * batch:
                    break  # training readers cycle for ever
            got = indices(epoch_of(loader, epoch))
            assert got == (expected[: loader.batches * batch] if train else expected)
        loader.close()


def test_read_ahead_is_bounded_in_bytes(shapes_pe, monkeypatch):
    """--prefetch counts shards, but a reader never fetches more than PREFETCH_BYTES ahead: with
    shards of 1.5 GB it reads one at a time, whatever --prefetch says."""
    ds = open_dataset(shapes_pe)
    (plan,) = StreamLoader(ds, "train", 8, Dist(), CPU, 0, True, 0, buffer=40, prefetch=3).plans(0)
    largest = max(s.bytes for s in plan.shards)
    assert plan.ahead == 3
    monkeypatch.setattr(stages, "PREFETCH_BYTES", 2 * largest)
    assert plan.ahead == 2
    monkeypatch.setattr(stages, "PREFETCH_BYTES", largest - 1)
    assert plan.ahead == 0
