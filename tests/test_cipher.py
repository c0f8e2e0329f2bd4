"""The pixel-based cipher: its definition, its inverse, its key statistics, and the property
augmentation in the encrypted domain rests on (flips and shifts commute with it)."""

import math

import numpy as np
import pytest
from conftest import SALT, encrypt, ppencrypt, write_cifar10
from hypothesis import given, settings
from hypothesis import strategies as st

from ppencrypt.ciphers import CODE_NAMES, PERMUTATIONS, GatherXor, PixelKey, cipher_class, make_cipher, method_names
from ppencrypt.errors import CipherError
from ppencrypt.formats import open_dataset
from ppencrypt.keys import KeyRing

MASTER = bytes(range(32))
KEYED = [m for m in method_names() if make_cipher(m).needs_key]


def ring(method: str, scope: str = "dataset", split: str = "train") -> KeyRing:
    return KeyRing(MASTER, method, scope, split if scope == "image" else None, SALT if scope == "image" else None)


def pe_key(shape) -> PixelKey:
    return make_cipher("pe").pixel_key(ring("pe"), shape)


def reference_apply(key: PixelKey, image: np.ndarray) -> np.ndarray:
    """[P] steps 2 and 3 pixel by pixel: NP per component, then the code's permutation, with
    the code named by the output order of the input components (code 'BRG' -> (B, R, G))."""
    out = np.empty_like(image)
    h, w, c = image.shape
    for y in range(h):
        for x in range(w):
            np_pixel = [int(v) ^ (255 * int(f)) for v, f in zip(image[y, x], key.flips[y, x])]
            order = "RGB" if key.codes is None else CODE_NAMES[key.codes[y, x]]
            out[y, x] = [np_pixel["RGB".index(ch)] for ch in order[:c]] if c == 3 else np_pixel
    return out


# --- the definition ---------------------------------------------------------------------------


# The built-in methods in registry order: the order the CLI lists them.
BUILT_IN = ["pe", "np", "plain", "le", "ele", "etc", "bsm"]


def test_registry():
    assert method_names() == BUILT_IN
    with pytest.raises(CipherError, match="unknown method 'nope'"):
        make_cipher("nope")
    with pytest.raises(CipherError, match="takes no parameter block"):
        make_cipher("pe", {"block": 4})


def test_dataset_help_lists_the_methods_in_registry_order():
    r = ppencrypt("dataset", "--help")
    assert r.exit_code == 0, r.output

    def bare(text: str) -> str:  # click wraps the help at its width, at hyphens too
        return "".join(text.split())

    shown = bare(r.output)
    assert bare(f"--method [{'|'.join(BUILT_IN)}]") in shown
    assert bare("; ".join(f"{n}: {cipher_class(n).summary}" for n in BUILT_IN)) in shown


def test_code_table_matches_the_paper():
    assert CODE_NAMES == ("RGB", "RBG", "GRB", "GBR", "BRG", "BGR")
    for perm, name in zip(PERMUTATIONS, CODE_NAMES):
        assert "".join("RGB"[i] for i in perm) == name


@pytest.mark.parametrize("image_index", [0, 7])
def test_pe_key_applies_as_the_paper_defines(cifar10, image_index):
    image = cifar10[0][image_index, :6, :5]
    key = pe_key(image.shape)
    assert key.codes is not None and set(np.unique(key.codes)) <= set(range(6))
    assert np.array_equal(key.apply(image[None])[0], reference_apply(key, image))


def test_every_code_and_flip_combination(cifar10):
    """All 48 encodings of one pixel, against the reference, and back."""
    flips = np.array([[(b >> c) & 1 for c in range(3)] for b in range(8)] * 6, np.uint8).reshape(1, 48, 3)
    codes = np.repeat(np.arange(6), 8).reshape(1, 48)
    key = PixelKey(flips, codes)
    image = np.repeat(cifar10[0][3, 10:11, 10:11], 48, axis=1)
    encrypted = key.apply(image[None])[0]
    assert np.array_equal(encrypted, reference_apply(key, image))
    assert len({tuple(p) for p in encrypted[0]}) == 48  # a pixel with distinct components
    assert np.array_equal(key.invert(encrypted[None])[0], image)


def test_np_is_xor_255_and_its_own_inverse(cifar10):
    images = cifar10[0][:4]
    cipher = make_cipher("np")
    encrypted = cipher.encrypt(images, ring("np"), np.arange(4))
    flips = cipher.pixel_key(ring("np"), images.shape[1:]).flips
    assert np.array_equal(encrypted, np.where(flips.astype(bool), 255 - images, images))
    assert np.array_equal(cipher.encrypt(encrypted, ring("np"), np.arange(4)), images)


def test_grayscale_gets_np_only(fmnist):
    images = fmnist[0][:3]
    cipher = make_cipher("pe")
    assert cipher.purposes(1) == ("np-bits-c0",)
    key = cipher.pixel_key(ring("pe"), images.shape[1:])
    assert key.codes is None
    assert np.array_equal(cipher.encrypt(images, ring("pe"), np.arange(3)), np.where(key.flips == 1, 255 - images, images))


def test_plain_is_the_identity_and_takes_no_scope(cifar10):
    cipher = make_cipher("plain")
    assert np.array_equal(cipher.encrypt(cifar10[0], None, None), cifar10[0])
    cipher.check((32, 32, 3), None)


@pytest.mark.parametrize("method", KEYED)
def test_keyed_methods_refuse_a_missing_scope(method):
    with pytest.raises(CipherError, match="key scope"):
        make_cipher(method).check((32, 32, 3), None)


@pytest.mark.parametrize("method", method_names())
@pytest.mark.parametrize("scope", ["dataset", "image"])
@pytest.mark.parametrize("data", ["cifar10", "fmnist"])
def test_decrypt_inverts_encrypt(request, method, scope, data):
    images = request.getfixturevalue(data)[0]
    cipher = make_cipher(method)
    r = ring(method, scope) if cipher.needs_key else None
    idx = np.arange(len(images))
    encrypted = cipher.encrypt(images, r, idx)
    assert np.array_equal(cipher.decrypt(encrypted, r, idx), images)
    assert cipher.needs_key != np.array_equal(encrypted, images)


@pytest.mark.parametrize("scope", ["dataset", "image"])
def test_batches_bigger_than_a_chunk_encrypt_like_single_images(cifar10, scope):
    """GatherXor works on chunks of 64 images: 150 images must encrypt one by one alike."""
    images = np.concatenate([cifar10[0]] * 8)[:150]
    cipher, r = make_cipher("pe"), ring("pe", scope)
    batch = cipher.encrypt(images, r, np.arange(150))
    singles = np.concatenate([cipher.encrypt(images[i : i + 1], r, np.array([i])) for i in range(150)])
    assert np.array_equal(batch, singles)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_gather_xor_inverse(data):
    d = data.draw(st.integers(1, 60))
    n = data.draw(st.integers(1, 4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))  # test data, not key material
    shared = data.draw(st.booleans())
    lead = () if shared else (n,)
    src = np.argsort(rng.random((*lead, d)), axis=-1)
    t = GatherXor(src, rng.integers(0, 256, (*lead, d), dtype=np.uint8))
    x = rng.integers(0, 256, (n, d), dtype=np.uint8)
    y = t.apply(x)
    expected = np.take_along_axis(x, np.broadcast_to(src, (n, d)), axis=1) ^ t.xor
    assert np.array_equal(y, expected)
    assert np.array_equal(t.inverse().apply(y), x)


def test_gather_xor_checks_sizes():
    t = GatherXor(None, np.zeros(12, np.uint8))
    with pytest.raises(ValueError):
        t.apply(np.zeros((2, 2, 2, 2), np.uint8))


# --- key statistics ---------------------------------------------------------------------------

BIG = (256, 256, 3)  # 65,536 positions per channel


def assert_fair_bits(bits: np.ndarray) -> None:
    """A flip rate within 5 binomial standard deviations of 1/2."""
    n = bits.size
    assert abs(bits.mean() - 0.5) < 5 * math.sqrt(0.25 / n), bits.mean()


def test_np_flip_rate_is_one_half_per_channel():
    key = pe_key(BIG)
    for c in range(3):
        assert_fair_bits(key.flips[..., c])
    for a, b in ((0, 1), (0, 2), (1, 2)):  # independent streams, not one copied
        assert_fair_bits(key.flips[..., a] == key.flips[..., b])
    assert_fair_bits(key.flips[:, 1:] == key.flips[:, :-1])  # no runs along rows


def test_colour_codes_are_uniform():
    codes = pe_key(BIG).codes
    counts = np.bincount(codes.ravel(), minlength=6)
    expected = codes.size / 6
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert len(counts) == 6
    assert chi2 < 35.9, counts  # chi-square, 5 degrees of freedom, p = 1e-6


def test_image_scope_flip_rate_over_many_images():
    flips = make_cipher("np").build(ring("np", "image"), (32, 32, 3), list(range(64))).xor // 255
    assert_fair_bits(flips)


# --- commutation with flips and shifts --------------------------------------------------------


def shift_zero(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift rows by dy and columns by dx, filling the uncovered border with zeros."""
    p = max(abs(dy), abs(dx))
    padded = np.pad(a, [(p, p), (p, p)] + [(0, 0)] * (a.ndim - 2))
    h, w = a.shape[:2]
    return padded[p - dy : p - dy + h, p - dx : p - dx + w]


MOVES = {
    "hflip": lambda a, dy, dx: a[:, ::-1],
    "vflip": lambda a, dy, dx: a[::-1],
    "roll": lambda a, dy, dx: np.roll(a, (dy, dx), axis=(0, 1)),
    "shift": shift_zero,
}


@settings(max_examples=40, deadline=None)
@given(
    move=st.sampled_from(sorted(MOVES)),
    which=st.integers(0, 19),
    gray=st.booleans(),
    h=st.integers(1, 28),
    w=st.integers(1, 28),
    dy=st.integers(-6, 6),
    dx=st.integers(-6, 6),
)
def test_moves_commute_with_the_dataset_key(cifar10, fmnist, move, which, gray, h, w, dy, dx):
    """move(E_K(x)) == E_move(K)(move(x)): a moved mask, padded with the identity key
    (no flip, code 0 = RGB) where a shift uncovers pixels, encrypts the moved image."""
    image = (fmnist if gray else cifar10)[0][which, :h, :w]
    key = pe_key(image.shape)
    f = MOVES[move]
    codes = None if key.codes is None else f(key.codes, dy, dx)
    moved_key = PixelKey(np.ascontiguousarray(f(key.flips, dy, dx)), None if codes is None else np.ascontiguousarray(codes))
    encrypted = make_cipher("pe").encrypt(image[None], ring("pe"), np.arange(1))[0]
    assert np.array_equal(f(encrypted, dy, dx), moved_key.apply(np.ascontiguousarray(f(image, dy, dx))[None])[0])


def test_a_moved_image_is_not_encrypted_by_the_unmoved_key(cifar10):
    """The property above is not trivial: the mask really must move with the image."""
    image = cifar10[0][0]
    key = pe_key(image.shape)
    assert not np.array_equal(key.apply(image[:, ::-1][None])[0], key.apply(image[None])[0][:, ::-1])


# --- masks in a real job ----------------------------------------------------------------------


def job_masks(tmp_path, cifar10, key_file, scope) -> dict[str, np.ndarray]:
    """Encrypt the CIFAR-10 fixture with np and recover each image's mask (cipher ^ plain)."""
    out = tmp_path / f"out-{scope}"
    encrypt(write_cifar10(tmp_path / f"src-{scope}", *cifar10), out, key_file, "--method", "np", "--key-scope", scope)
    ds = open_dataset(out)
    plain = {"train": cifar10[0][5:], "test": cifar10[0][:5]}
    return {s: ds.split(s).read().images ^ plain[s] for s in ("train", "test")}


def test_dataset_scope_mask_is_shared_by_every_image_of_every_split(tmp_path, cifar10, key_file):
    masks = job_masks(tmp_path, cifar10, key_file, "dataset")
    every = np.concatenate([masks["train"], masks["test"]])
    assert (every == every[0]).all()
    assert_fair_bits(every[0] == 255)


def test_image_scope_masks_differ_between_images_and_splits(tmp_path, cifar10, key_file):
    masks = job_masks(tmp_path, cifar10, key_file, "image")
    every = np.concatenate([masks["train"], masks["test"]])
    assert len({m.tobytes() for m in every}) == 20
    assert not np.array_equal(masks["train"][0], masks["test"][0])  # same index, other split
    for m in every:
        assert 0.45 < (m == 255).mean() < 0.55


@pytest.mark.parametrize("scope, shared", [("dataset", True), ("image", False)])
def test_pe_same_image_in_train_and_test(tmp_path, cifar10, key_file, scope, shared):
    images, labels = cifar10
    twice = np.concatenate([images[:5], images[:5]]), np.concatenate([labels[:5], labels[:5]])
    out = tmp_path / "out"
    encrypt(write_cifar10(tmp_path / "src", *twice), out, key_file, "--key-scope", scope)
    ds = open_dataset(out)
    train, test = ds.split("train").read().images, ds.split("test").read().images
    assert np.array_equal(train, test) == shared
