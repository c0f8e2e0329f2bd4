"""Known-answer vectors: the RFCs' own vectors for the primitives, then ours (docs/cipher.md).

Our vectors are literal hex. Each is checked twice: against the pipeline, and against a
from-scratch computation in this file that uses only ``cryptography`` and the documented
rules (bits least significant first; colour codes b % 6 for bytes b < 252; NP then shuffle),
so a change in either the code or the spec shows up here.
"""

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pipeline.ciphers import make_cipher
from pipeline.derive import KeyRing, Keystream, hkdf_sha256
from pipeline.keys import MasterKey

# RFC 5869, appendix A.1 (test case 1)
RFC5869_IKM = bytes([0x0B] * 22)
RFC5869_SALT = bytes(range(0x0D))
RFC5869_INFO = bytes(range(0xF0, 0xFA))
RFC5869_OKM = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"

# RFC 8439, appendix A.1, test vector 1: all-zero key and nonce, block counter 0
RFC8439_A1_KEYSTREAM = (
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
)
# RFC 8439, section 2.4.2: key 00..1f, nonce 00:00:00:00:00:00:00:4a:00:00:00:00, counter 1
RFC8439_242_NONCE = bytes.fromhex("000000000000004a00000000")
RFC8439_242_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it."
)
RFC8439_242_CIPHERTEXT = (
    "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
    "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
    "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
    "5af90bbf74a35be6b40b8eedf2785e42874d"
)

# ppencrypt v1: master key bytes(range(32)); the same values are published in docs/cipher.md
MASTER = bytes(range(32))
KAT_KEY_ID = "b9816c67ac2df7a81b4e848f1dc18e41"
KAT_LABEL = "ppencrypt/v1|method=pe|purpose=np-bits-c0|scope=dataset"
KAT_SUBKEYS = {
    KAT_LABEL: "0f5fbeff064971cce3d770b9d4951fcc0b49f97a9e6c5c001d8c19483db37deb",
    "ppencrypt/v1|method=pe|purpose=colour-codes|scope=dataset": "286e7f8d22ad2ae0f4e40e3ed9ee3830a8ab43f1dc105c88c69610bdee2861d1",
    "ppencrypt/v1|method=pe|purpose=np-bits-c0|scope=image|split=train": "61db491ca22771c757a1f5a4181bf32bed6214b878b0f90f9380c07345704297",
}
KAT_STREAMS = {  # first 16 bytes, dataset scope (nonce 0)
    ("pe", "np-bits-c0"): "585724d4838834789ffe78103bceade5",
    ("pe", "colour-codes"): "2043b1aafdd6af492708f784f3c7ebe3",
}
KAT_IMAGE = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)  # 2 x 3 pixels, RGB, values 0..17
KAT_GRAY = np.array([0, 40, 80, 120, 160, 200], np.uint8).reshape(2, 3, 1)
# (method, scope, split, index, image): ciphertext
KAT_CIPHERTEXTS = [
    ("pe", "dataset", None, 0, KAT_IMAGE, "fe000203fa04f8f7060af60b0ef30d0feeef"),
    ("pe", "image", "train", 0, KAT_IMAGE, "0001fd0503fbf908f8f4f5f60d0ef30fefee"),
    ("pe", "image", "train", 1, KAT_IMAGE, "0100fdfcfa0407f908f5f6f4f1f2f3f01011"),
    ("np", "dataset", None, 0, KAT_IMAGE, "0001fdfcfbfaf9f808f6f50bf3f2f1f0efee"),
    ("pe", "dataset", None, 0, KAT_GRAY, "002850875fc8"),
]

PERMS = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]  # RGB RBG GRB GBR BRG BGR


def ref_hkdf(ikm: bytes, info: bytes, length: int, salt: bytes = b"ppencrypt/v1") -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def ref_stream(label: str, n: int, nonce: bytes = bytes(12)) -> bytes:
    key = ref_hkdf(MASTER, label.encode(), 32)
    return Cipher(algorithms.ChaCha20(key, bytes(4) + nonce), mode=None).encryptor().update(bytes(n))


def ref_encrypt(image: np.ndarray, method: str, scope: str, nonce: bytes = bytes(12)) -> np.ndarray:
    """The spec, one pixel at a time: per-component NP bits, then (pe, RGB) the permutation."""
    h, w, c = image.shape
    n = h * w
    label = f"ppencrypt/v1|method={method}|purpose={{}}|" + scope
    flips = []
    for ch in range(c):
        s = ref_stream(label.format(f"np-bits-c{ch}"), (n + 7) // 8, nonce)
        flips.append([(s[p // 8] >> (p % 8)) & 1 for p in range(n)])
    codes = [0] * n
    if method == "pe" and c == 3:
        codes = [b % 6 for b in ref_stream(label.format("colour-codes"), 4 * n, nonce) if b < 252][:n]
    out = np.empty_like(image)
    for p in range(n):
        y, x = divmod(p, w)
        for ch in range(c):
            src = PERMS[codes[p]][ch]
            out[y, x, ch] = image[y, x, src] ^ (255 * flips[src][p])
    return out


def test_hkdf_rfc5869_case1():
    assert hkdf_sha256(RFC5869_IKM, RFC5869_INFO, 42, salt=RFC5869_SALT).hex() == RFC5869_OKM


def test_chacha20_rfc8439_a1_counter0():
    assert Keystream(bytes(32), bytes(12)).read(64).hex() == RFC8439_A1_KEYSTREAM


def test_chacha20_rfc8439_242_counter1():
    """The stream starts at block 0, so block 1 (the RFC's counter) is bytes 64..127 on."""
    ks = Keystream(bytes(range(32)), RFC8439_242_NONCE)
    ks.read(64)
    stream = ks.read(len(RFC8439_242_PLAINTEXT))
    assert bytes(a ^ b for a, b in zip(RFC8439_242_PLAINTEXT, stream)).hex() == RFC8439_242_CIPHERTEXT


def test_key_id():
    assert MasterKey(MASTER).key_id == KAT_KEY_ID
    assert ref_hkdf(MASTER, b"ppencrypt/v1|key-id", 16).hex() == KAT_KEY_ID


@pytest.mark.parametrize("label", sorted(KAT_SUBKEYS))
def test_subkeys(label):
    scope = label.split("|scope=")[1].split("|")[0]
    split = label.split("|split=")[1] if "|split=" in label else None
    purpose = label.split("|purpose=")[1].split("|")[0]
    ring = KeyRing(MASTER, "pe", scope, split)
    assert ring.label(purpose) == label
    assert ring.subkey(purpose).hex() == KAT_SUBKEYS[label]
    assert ref_hkdf(MASTER, label.encode(), 32).hex() == KAT_SUBKEYS[label]


@pytest.mark.parametrize("method, purpose", sorted(KAT_STREAMS))
def test_streams(method, purpose):
    label = KeyRing(MASTER, method, "dataset").label(purpose)
    assert KeyRing(MASTER, method, "dataset").stream(purpose).read(16).hex() == KAT_STREAMS[method, purpose]
    assert ref_stream(label, 16).hex() == KAT_STREAMS[method, purpose]


@pytest.mark.parametrize("method, scope, split, index, image, expected", KAT_CIPHERTEXTS)
def test_ciphertexts(method, scope, split, index, image, expected):
    encrypted = make_cipher(method).encrypt(image[None], KeyRing(MASTER, method, scope, split), np.array([index]))
    assert encrypted[0].tobytes().hex() == expected
    suffix = "scope=dataset" if scope == "dataset" else f"scope=image|split={split}"
    nonce = bytes(12) if scope == "dataset" else index.to_bytes(8, "little") + bytes(4)
    assert ref_encrypt(image, method, suffix, nonce).tobytes().hex() == expected


def test_documented_pixels():
    """The ciphertext table of docs/cipher.md, as pixel tuples."""
    assert bytes.fromhex(KAT_CIPHERTEXTS[0][-1]) == bytes([254, 0, 2, 3, 250, 4, 248, 247, 6, 10, 246, 11, 14, 243, 13, 15, 238, 239])
    assert list(bytes.fromhex(KAT_CIPHERTEXTS[-1][-1])) == [0, 40, 80, 135, 95, 200]
