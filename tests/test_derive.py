"""Key derivation: labels, subkeys, nonces, and the two ways bits leave the keystream."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppencrypt.keys import KeyRing, Keystream, index_nonce

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
    assert bound(KeyRing(MASTER, "np", "dataset")).label("x") == "ppencrypt/v2|method=np|purpose=x|scope=dataset|shape=32x32x3"
    image = bound(KeyRing(MASTER, "np", "image", "test", SALT), (28, 28, 1))
    assert image.label("x") == f"ppencrypt/v2|method=np|purpose=x|scope=image|shape=28x28x1|salt={SALT.hex()}|split=test"
    query = bound(KeyRing(MASTER, "le", "image", None, SALT, query=True), params={"block_size": 4})
    assert query.label("x") == f"ppencrypt/v2|method=le|purpose=x|scope=image|shape=32x32x3|block_size=4|salt={SALT.hex()}|query"
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
