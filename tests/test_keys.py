"""Master keys: keygen, the key file format and permission check, the key id."""

import os
import re
import stat

import pytest
from conftest import ppencrypt

from ppencrypt.errors import KeyFileError, MissingKeyFileError
from ppencrypt.keys import HEADER, MasterKey, load_key


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keygen_writes_0600_and_prints_the_key_id(tmp_path):
    path = tmp_path / "keys" / "new.key"
    r = ppencrypt("keygen", path)
    assert r.exit_code == 0, r.output
    assert mode_of(path) == 0o600
    header, hexkey = path.read_text().split()
    assert header == HEADER and len(bytes.fromhex(hexkey)) == 32
    key = load_key(path)
    assert r.stdout.strip() == key.key_id
    assert hexkey not in r.output
    assert [p.name for p in path.parent.iterdir()] == ["new.key"]  # no temporary left


def test_keygen_refuses_to_overwrite(key_file):
    before = key_file.read_bytes()
    r = ppencrypt("keygen", key_file)
    assert r.exit_code == 1
    assert str(key_file) in r.stderr and "refusing to overwrite" in r.stderr
    assert key_file.read_bytes() == before


def test_keygen_refuses_a_dangling_symlink(tmp_path):
    link = tmp_path / "link.key"
    link.symlink_to(tmp_path / "elsewhere.key")
    assert ppencrypt("keygen", link).exit_code == 1
    assert not (tmp_path / "elsewhere.key").exists()


def test_two_keys_differ(tmp_path):
    runs = [ppencrypt("keygen", tmp_path / f"{i}.key") for i in range(2)]
    assert [r.exit_code for r in runs] == [0, 0], [r.output for r in runs]
    ids = [r.stdout.strip() for r in runs]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids  # a failed run prints no id
    assert ids[0] != ids[1]


def test_load_key_round_trip(tmp_path):
    path = tmp_path / "k.key"
    path.write_text(f"{HEADER} {bytes(range(32)).hex()}\n")
    path.chmod(0o600)
    assert load_key(path) == MasterKey(bytes(range(32)))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_open_permissions_refused_with_a_chmod_hint(key_file, mode):
    key_file.chmod(mode)
    with pytest.raises(KeyFileError, match=rf"permissions {mode:04o} are too open.*chmod 600 {key_file}"):
        load_key(key_file)


def test_a_missing_key_file_is_its_own_error_naming_the_path(tmp_path):
    """The advice (a new key, or the dataset's own) depends on the command: cli.py gives it
    (test_cli.py::test_a_missing_key_file_gets_advice_that_fits_the_command)."""
    path = tmp_path / "absent.key"
    with pytest.raises(MissingKeyFileError) as e:
        load_key(path)
    assert isinstance(e.value, KeyFileError) and str(e.value) == f"{path}: no such key file" and e.value.path == str(path)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ppencrypt-key-v1",
        f"ppencrypt-key-v2 {'00' * 32}",
        f"ppencrypt-key-v1 {'00' * 31}",
        f"ppencrypt-key-v1 {'zz' * 32}",
        f"ppencrypt-key-v1 {'00' * 32} extra",
    ],
    ids=["empty", "no-key", "wrong-header", "short", "not-hex", "trailing"],
)
def test_malformed_key_files_refused(tmp_path, text):
    path = tmp_path / "bad.key"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=f"{path}: not a ppencrypt key file"):
        load_key(path)


def test_directory_is_not_a_key(tmp_path):
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key(tmp_path / "d")


def test_master_key_length_checked():
    with pytest.raises(ValueError):
        MasterKey(bytes(31))


def test_repr_hides_the_secret():
    key = MasterKey(bytes(range(32)))
    assert bytes(range(32)).hex() not in repr(key) and key.key_id in repr(key)


def test_key_id_is_128_bit_hex_and_unrelated_to_the_key():
    key = MasterKey(bytes(range(32)))
    assert len(key.key_id) == 32 and int(key.key_id, 16) >= 0
    assert key.key_id not in key.secret.hex()
    assert MasterKey(bytes(32)).key_id != key.key_id


def test_a_loaded_key_names_its_file_in_messages_but_not_in_its_repr(key_file):
    key = load_key(str(key_file))
    assert key.origin == str(key_file) and str(key_file) not in repr(key)
    assert repr(key) == f"MasterKey(id={key.key_id})"
    assert MasterKey(bytes(range(32))).origin == "the key"
