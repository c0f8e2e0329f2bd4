"""Key derivation: labels, subkeys, nonces, and the two ways bits leave the keystream."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.derive import KeyRing, Keystream, index_nonce

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


def test_labels():
    assert KeyRing(MASTER, "np", "dataset", "train").label("x") == "ppencrypt/v1|method=np|purpose=x|scope=dataset"
    assert KeyRing(MASTER, "np", "image", "test").label("x") == "ppencrypt/v1|method=np|purpose=x|scope=image|split=test"


def test_unknown_scope_refused():
    with pytest.raises(ValueError):
        KeyRing(MASTER, "pe", "client")


def test_subkeys_are_distinct_across_every_label_component():
    rings = [
        KeyRing(MASTER, "pe", "dataset"),
        KeyRing(MASTER, "np", "dataset"),
        KeyRing(MASTER, "pe", "image", "train"),
        KeyRing(MASTER, "pe", "image", "test"),
        KeyRing(bytes(32), "pe", "dataset"),
    ]
    keys = [r.subkey(p) for r in rings for p in ("np-bits-c0", "np-bits-c1", "colour-codes")]
    assert len(set(keys)) == len(keys)


def test_dataset_scope_ignores_the_index():
    ring = KeyRing(MASTER, "pe", "dataset")
    assert ring.stream("np-bits-c0", 5).read(64) == ring.stream("np-bits-c0").read(64)


def test_image_scope_streams_differ_per_index():
    ring = KeyRing(MASTER, "pe", "image", "train")
    streams = [ring.stream("np-bits-c0", i).read(32) for i in range(50)]
    assert len(set(streams)) == 50
    assert ring.stream("np-bits-c0", 3).read(32) == ring.stream("np-bits-c0", index_nonce(3)).read(32)
    with pytest.raises(ValueError):
        ring.stream("np-bits-c0")


def test_content_nonce_is_keyed_and_deterministic():
    ring = KeyRing(MASTER, "pe", "image", "query")
    a = ring.content_nonce(b"pixels a")
    assert len(a) == 12
    assert a == ring.content_nonce(b"pixels a")
    assert a != ring.content_nonce(b"pixels b")
    assert a != KeyRing(bytes(32), "pe", "image", "query").content_nonce(b"pixels a")
