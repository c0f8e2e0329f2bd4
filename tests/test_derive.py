"""Key derivation: labels, subkeys, nonces, and the two ways bits leave the keystream."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppencrypt.keys import KeyRing, Keystream, index_nonce
from ppencrypt.keys.draws import Draw, from_records, spare_bytes
from ppencrypt.keys.records import records

MASTER = bytes(range(32))
SUBKEY = bytes(range(100, 132))


def test_read_continues_where_it_stopped():
    whole = Keystream(SUBKEY).read(300)
    ks = Keystream(SUBKEY)
    assert ks.read(7) + ks.read(0) + ks.read(93) + ks.read(200) == whole


def test_bits_are_least_significant_first():
    raw = Keystream(SUBKEY).read(16)
    expected = [(raw[i // 8] >> (i % 8)) & 1 for i in range(125)]
    assert Keystream(SUBKEY).bits(125).tolist() == expected


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 400), k=st.integers(1, 256))
def test_integers_follow_the_rejection_rule(n, k):
    limit = 256 - 256 % k
    raw = Keystream(SUBKEY).read(4 * n + 64)
    expected = [b % k for b in raw if b < limit][:n]
    assert len(expected) == n  # the margin above is ample for every k
    got = Keystream(SUBKEY).integers(n, k)
    assert got.dtype == np.uint8 and got.tolist() == expected


def test_colour_codes_skip_bytes_from_252():
    """k = 6, the colour codes: 252 = 42 * 6, so bytes 252..255 are skipped."""
    raw = Keystream(SUBKEY).read(2000)
    assert any(b >= 252 for b in raw[:600])
    expected = [b % 6 for b in raw if b < 252][:500]
    assert Keystream(SUBKEY).integers(500, 6).tolist() == expected


@pytest.mark.parametrize("k", [0, 257])
def test_integers_reject_a_bad_range(k):
    with pytest.raises(ValueError):
        Keystream(SUBKEY).integers(4, k)


def test_nonce_must_be_12_bytes():
    with pytest.raises(ValueError):
        Keystream(SUBKEY, bytes(8))


def test_index_nonce_is_little_endian_and_padded():
    assert index_nonce(0x0102) == bytes([2, 1]) + bytes(10)


SALT = bytes(range(16))
SHAPE = (32, 32, 3)


def bound(ring: KeyRing, shape=SHAPE, params=None) -> KeyRing:
    return ring.bind(shape, params or {})


def test_labels():
    assert bound(KeyRing(MASTER, "np", "dataset")).label() == "ppencrypt/v3|method=np|scope=dataset|shape=32x32x3"
    image = bound(KeyRing(MASTER, "np", "image", "test", SALT), (28, 28, 1))
    assert image.label() == f"ppencrypt/v3|method=np|scope=image|shape=28x28x1|salt={SALT.hex()}|split=test"
    query = bound(KeyRing(MASTER, "le", "image", None, SALT, query=True), params={"block_size": 4})
    assert query.label("query-nonce") == f"ppencrypt/v3|method=le|scope=image|shape=32x32x3|block_size=4|salt={SALT.hex()}|query|purpose=query-nonce"
    # version 2 datasets keep theirs: a subkey per purpose
    v2 = bound(KeyRing(MASTER, "np", "image", "test", SALT, kdf="ppencrypt/v2"), (28, 28, 1))
    assert v2.label("x") == f"ppencrypt/v2|method=np|purpose=x|scope=image|shape=28x28x1|salt={SALT.hex()}|split=test"
    with pytest.raises(ValueError, match="a v2 subkey is for one purpose"):
        v2.label()
    # version 1 datasets keep their labels
    assert KeyRing(MASTER, "np", "dataset", kdf="ppencrypt/v1").label("x") == "ppencrypt/v1|method=np|purpose=x|scope=dataset"
    assert KeyRing(MASTER, "np", "image", "test", kdf="ppencrypt/v1").label("x") == "ppencrypt/v1|method=np|purpose=x|scope=image|split=test"


def test_rings_refuse_what_would_reuse_a_mask():
    with pytest.raises(ValueError, match="unknown key scope"):
        KeyRing(MASTER, "pe", "client")
    with pytest.raises(ValueError, match="salt"):
        KeyRing(MASTER, "pe", "image", "train")  # no salt: two datasets would share masks
    with pytest.raises(ValueError, match="one split's images or for queries"):
        KeyRing(MASTER, "pe", "image", "train", SALT, query=True)
    with pytest.raises(ValueError, match="bound to an image shape"):
        KeyRing(MASTER, "pe", "dataset").label("x")  # no shape: a 32x32 mask would be a 64x64 one's corner


def test_subkeys_are_distinct_across_every_label_component():
    rings = [
        bound(KeyRing(MASTER, "pe", "dataset")),
        bound(KeyRing(MASTER, "np", "dataset")),
        bound(KeyRing(MASTER, "pe", "dataset"), (64, 64, 3)),
        bound(KeyRing(MASTER, "pe", "dataset"), (32, 32, 1)),
        bound(KeyRing(MASTER, "le", "dataset"), params={"block_size": 4}),
        bound(KeyRing(MASTER, "le", "dataset"), params={"block_size": 8}),
        bound(KeyRing(MASTER, "pe", "image", "train", SALT)),
        bound(KeyRing(MASTER, "pe", "image", "test", SALT)),
        bound(KeyRing(MASTER, "pe", "image", "train", bytes(16))),
        bound(KeyRing(MASTER, "pe", "image", None, SALT, query=True)),
        bound(KeyRing(bytes(32), "pe", "dataset")),
        KeyRing(MASTER, "pe", "dataset", kdf="ppencrypt/v1"),
    ]
    keys = [r.subkey(p) for r in rings for p in ("np-bits-c0", "np-bits-c1", "colour-codes")]
    assert len(set(keys)) == len(keys)


def test_dataset_scope_ignores_the_index():
    ring = bound(KeyRing(MASTER, "pe", "dataset"))
    assert ring.stream("np-bits-c0", 5).read(64) == ring.stream("np-bits-c0").read(64)


def test_image_scope_streams_differ_per_index():
    ring = bound(KeyRing(MASTER, "pe", "image", "train", SALT))
    streams = [ring.stream("np-bits-c0", i).read(32) for i in range(50)]
    assert len(set(streams)) == 50
    assert ring.stream("np-bits-c0", 3).read(32) == ring.stream("np-bits-c0", index_nonce(3)).read(32)
    with pytest.raises(ValueError):
        ring.stream("np-bits-c0")


def test_content_nonce_is_keyed_and_deterministic():
    ring = bound(KeyRing(MASTER, "pe", "image", None, SALT, query=True))
    a = ring.content_nonce(b"pixels a")
    assert len(a) == 12
    assert a == ring.content_nonce(b"pixels a")
    assert a != ring.content_nonce(b"pixels b")
    assert a != bound(KeyRing(bytes(32), "pe", "image", None, SALT, query=True)).content_nonce(b"pixels a")
    assert a != bound(KeyRing(MASTER, "pe", "image", None, bytes(16), query=True)).content_nonce(b"pixels a")


# Version 3: records, many images per ChaCha20 call (keys/records.py, keys/draws.py).


@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=12), st.integers(1, 300))
@settings(max_examples=40, deadline=None)
def test_records_of_a_batch_are_the_records_one_by_one(indices, size):
    batch = records(SUBKEY, indices, size)
    assert batch.shape == (len(indices), size)
    for row, i in zip(batch, indices):
        assert np.array_equal(row, records(SUBKEY, [i], size)[0])


def test_records_stay_apart_across_nonce_groups(monkeypatch):
    """With a 2^32-block counter a nonce holds floor(2^32 / b) records; shrunk here to 5 so a
    batch crosses groups: each record is still its own, and images never share a block."""
    size = 200  # 4 blocks
    monkeypatch.setattr("ppencrypt.keys.records.COUNTER_SPACE", 5 * 4 + 3)
    batch = records(SUBKEY, np.arange(17), size)
    for i in range(17):  # the rule, by hand: group i // 5 is the nonce, (i % 5) * 4 the first block
        group, offset = divmod(i, 5)
        stream = Keystream(SUBKEY, group.to_bytes(8, "little") + bytes(4)).read((offset + 1) * 4 * 64)
        assert batch[i].tobytes() == stream[offset * 256 : offset * 256 + size]
    assert len({row.tobytes() for row in batch}) == 17


def test_integers_from_records_are_uniform_and_replace_rejected_bytes():
    draw = Draw("codes", "integers", 50_000, 6)
    raw = records(SUBKEY, np.arange(4), draw.record_bytes())
    (codes,) = from_records(raw, (draw,))
    assert codes.shape == (4, 50_000) and codes.max() == 5
    primary = raw[:, :50_000]
    kept = primary < 252
    assert (~kept).sum() > 100  # rejections happened and were replaced
    assert np.array_equal(codes[kept], primary[kept] % 6)
    spares = [row[50_000:][row[50_000:] < 252] for row in raw]
    for r in range(4):
        assert np.array_equal(codes[r][~kept[r]], spares[r][: (~kept[r]).sum()] % 6)
    freq = np.bincount(codes.ravel(), minlength=6) / codes.size
    assert np.abs(freq - 1 / 6).max() < 0.005


@pytest.mark.parametrize("n, k", [(1, 6), (6, 6), (1024, 6), (50_176, 6), (1000, 129), (4096, 255), (10, 8), (3, 256)])
def test_spare_bytes_make_running_out_negligible(n, k):
    """Hoeffding: the rejected primaries outnumber the accepted spares with probability at most
    exp(-2 t^2 / (n + s)), t the expected surplus; the rule keeps it below 2^-128."""
    s = spare_bytes(n, k)
    r = 256 % k
    if r == 0:
        assert s == 0
        return
    p, q = r / 256, 1 - r / 256
    t = q * s - n * p
    assert t > 0 and -2 * t * t / (n + s) < -128 * np.log(2)


def test_permutations_from_records_are_permutations():
    draw = Draw("perm", "permutations", 96, 3)
    (perms,) = from_records(records(SUBKEY, np.arange(5), draw.record_bytes()), (draw,))
    assert perms.shape == (5, 3, 96)
    assert (np.sort(perms, axis=2) == np.arange(96)).all()
    assert len({p.tobytes() for p in perms.reshape(15, 96)}) == 15


def test_no_two_images_of_any_split_copy_or_dataset_share_key_material(tmp_path, cifar10_dir, key_file):
    """Two datasets from the same images and key, with augmented copies of the train split:
    every (dataset, split, sample) has a record of its own, so no two images share a mask."""
    from conftest import encrypt

    from ppencrypt.ciphers import make_cipher
    from ppencrypt.formats import open_dataset
    from ppencrypt.keys import KeyUse, load_key

    key = load_key(key_file)
    seen: dict[bytes, tuple] = {}
    for name in ("a", "b"):
        encrypt(cifar10_dir, tmp_path / name, key_file, "--copies", "3")
        m = open_dataset(tmp_path / name).manifest
        assert m.cipher.kdf == "ppencrypt/v3" and m.augment.copies == 3
        cipher, use = make_cipher(m.cipher.method, m.cipher.params), KeyUse.of(m.cipher)
        size = sum(d.record_bytes() for d in cipher.draws(m.shape))
        for split, info in m.splits.items():
            ring = use.ring(cipher, key, split).bind(m.shape, cipher.params)
            for i, row in enumerate(records(ring.subkey(), np.arange(info.count), size)):
                assert seen.setdefault(row.tobytes(), (name, split, i)) == (name, split, i)
    assert len(seen) == 2 * (3 * 15 + 5)
