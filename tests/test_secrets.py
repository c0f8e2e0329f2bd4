"""Nothing secret leaks into outputs: not the key (raw, hex, or any subkey), not source file
or folder names. The manifest names the key only by its key id."""

import json

import pytest
from conftest import encrypt, ppencrypt, tree_bytes, write_imagefolder

from ppencrypt.keys import KeyRing, mac_key
from ppencrypt.keys import load_key

SECRET_NAME = "patient_jane_doe_1987"
SECRET_DIR = "hospital_xq_records"


def key_material(key_file, salts_used=(), shapes=((32, 32, 3), (28, 28, 1))) -> list[bytes]:
    """The key's raw bytes, its hex both cases, and every subkey a job may derive."""
    secret = load_key(key_file).secret
    salts = [bytes.fromhex(s) for s in salts_used]
    rings = [KeyRing(secret, m, "dataset") for m in ("pe", "np")]
    rings += [KeyRing(secret, m, "image", s, salt) for m in ("pe", "np") for s in ("train", "test") for salt in salts]
    rings += [KeyRing(secret, m, "image", None, salt, query=True) for m in ("pe", "np") for salt in salts]
    purposes = ("np-bits-c0", "np-bits-c1", "np-bits-c2", "colour-codes", "query-nonce")
    subkeys = [r.bind(shape, {}).subkey(p) for r in rings for shape in shapes for p in purposes]
    subkeys.append(mac_key(secret))
    return [secret, secret.hex().encode(), secret.hex().upper().encode(), *subkeys, *(k.hex().encode() for k in subkeys)]


def assert_clean(root, forbidden: list[bytes]):
    files = tree_bytes(root)
    assert files
    for name, data in files.items():
        for secret in forbidden:
            assert secret not in data, f"{name} holds a secret"
            assert secret.decode("latin-1") not in name


@pytest.fixture
def src(tmp_path, cifar10):
    root = write_imagefolder(tmp_path / SECRET_DIR, *cifar10, splits={"train": 15, "test": 5})
    victim = next((root / "train").rglob("*.png"))
    victim.rename(victim.with_name(f"{SECRET_NAME}.png"))
    return root


@pytest.mark.parametrize("storage", ["wds", "zarr"])
@pytest.mark.parametrize("scope", ["dataset", "image"])
def test_no_secret_in_any_output(tmp_path, src, key_file, storage, scope):
    out, dest, picture, queries = (tmp_path / n for n in ("out", "dest", "preview.png", "queries"))
    outputs = [encrypt(src, out, key_file, "--format", storage, "--key-scope", scope)]
    salt = json.loads((out / "manifest.json").read_text())["cipher"]["salt"]
    forbidden = key_material(key_file, [salt] if salt else []) + [SECRET_NAME.encode(), SECRET_DIR.encode()]
    query = next(src.rglob(f"{SECRET_NAME}.png"))
    for args in (
        ("decrypt", out, dest, "--key", key_file, "--quiet"),
        ("preview", out, "-o", picture, "--key", key_file),
        ("image", query, "--like", out, "--key", key_file, "-o", queries, "--shared-mask"),
    ):
        r = ppencrypt(*args)
        assert r.exit_code == 0, r.output
        outputs.append(r)
    for root in (out, dest, queries):
        assert_clean(root, forbidden)
    assert not any(s in picture.read_bytes() for s in forbidden)
    secret = load_key(key_file).secret.hex()
    assert not any(secret in r.output for r in outputs)


def test_manifest_names_the_key_by_id_only(tmp_path, src, key_file):
    out = tmp_path / "out"
    encrypt(src, out, key_file)
    text = (out / "manifest.json").read_text()
    key = load_key(key_file)
    assert json.loads(text)["cipher"]["key_id"] == key.key_id
    assert key.secret.hex() not in text and key.secret.hex().upper() not in text
    assert str(tmp_path) not in text and "img_" not in text
