"""Adding a cipher method or a storage touches its own code and one registry line, nothing
else: a toy method and a toy storage, defined here, go through every command that reads
methods and storages — encryption, the manifest, decryption, verify, the audit, and pptrain,
which learns what the method is from the manifest alone."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CIFAR10_NAMES, SALT, load_vendored, ppencrypt, read_pngs
from ppencrypt.ciphers import METHODS, GatherXor, PixelGroup
from ppencrypt.ciphers.block import BlockCipher, block_layout
from ppencrypt.ciphers.pixel import GatherXorCipher
from ppencrypt.errors import ShardError
from ppencrypt.formats import STORAGES, SplitReader, SplitWriter, Storage, open_dataset
from ppencrypt.formats.batch import Batch
from ppencrypt.formats.checksum import sha256_file
from ppencrypt.formats.manifest import ShardInfo
from ppencrypt.sources.idx import FASHION_CLASSES
from pptrain.cli import cli as pptrain


class MonoNegation(GatherXorCipher):
    """One NP bit per pixel, applied to all of its components at once."""

    name = "mono-np"
    summary = "toy: negate whole pixels where a keyed bit is 1"
    family = "pixel"

    def purposes(self, channels):
        return ("pixel-bits",)

    def key_space_bits(self, shape):
        return shape[0] * shape[1]

    def pixel_group(self, channels):
        return PixelGroup(np.tile(np.arange(channels), (2, 1)), np.array([[0] * channels, [1] * channels], np.uint8))

    def build(self, ring, shape, indices):
        h, w, c = shape
        one = lambda i: np.repeat(ring.stream("pixel-bits", i).bits(h * w), c) * np.uint8(255)  # noqa: E731
        xor = one(None) if indices is None else np.stack([one(i) for i in indices])
        return GatherXor(None, xor)


class BlockNegation(BlockCipher):
    """One NP bit per B x B block."""

    name = "block-np"
    summary = "toy: negate whole blocks where a keyed bit is 1"

    def purposes(self, channels):
        return ("block-bits",)

    def key_space_bits(self, shape):
        return self.blocks(shape)

    def image_transform(self, ring, shape, index):
        layout, _ = self.layout(shape)
        bits = ring.stream("block-bits", index).bits(len(layout))
        xor = np.empty(layout.size, np.uint8)
        xor[layout.reshape(-1)] = np.repeat(bits * np.uint8(255), layout.shape[1])
        return GatherXor(None, xor)


@pytest.fixture
def toy_methods():
    with METHODS.temporarily(MonoNegation), METHODS.temporarily(BlockNegation):
        yield


def test_a_toy_pixel_method_goes_through_every_command(toy_methods, cifar10_dir, cifar10, key_file, tmp_path):
    out = tmp_path / "out"
    r = ppencrypt("dataset", cifar10_dir, out, "--key", key_file, "--method", "mono-np", "--key-scope", "dataset", "--quiet",
                  "--workers", 1, "--shard-size", 8)  # fmt: skip
    assert r.exit_code == 0, r.output
    cipher = json.loads((out / "manifest.json").read_text())["cipher"]
    assert {k: cipher[k] for k in ("method", "family", "adapt", "block", "pixel_group")} == {
        "method": "mono-np", "family": "pixel", "adapt": "pixel", "block": None, "pixel_group": "other"}  # fmt: skip
    # a method that reads its keystreams by purpose: a subkey each, the purpose last (v3)
    assert cipher["derivations"] == ["ppencrypt/v3|method=mono-np|scope=dataset|shape=32x32x3|purpose=pixel-bits"]
    # Every pixel is its plain value or its negative, whole.
    enc = open_dataset(out).split("train").read()
    images, labels = cifar10
    plain = images[5:]
    assert np.all((enc.images == plain).all(-1) | (enc.images == 255 - plain).all(-1))
    assert ppencrypt("verify", out).exit_code == 0
    assert ppencrypt("decrypt", out, tmp_path / "dec", "--key", key_file, "--quiet").exit_code == 0
    decrypted = read_pngs(tmp_path / "dec")
    assert all(np.array_equal(decrypted[f"test/{CIFAR10_NAMES[labels[i]]}/{i:08d}.png"], images[i]) for i in range(5))

    r = ppencrypt("audit", out, "--plain", cifar10_dir, "--split", "train", "-n", 10, "-o", tmp_path / "audit")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["key_space"]["bits"] == 32 * 32
    rows = {row["attack"]: row for row in report["attacks"]}
    assert "not_applicable" not in rows["fr-advanced"] and rows["fr-advanced"]["stats"]["candidates"] == 2
    # One known pair pins a shared per-pixel negation down everywhere but on mid-grey pixels.
    assert rows["known-plaintext"]["psnr"]["mean"] > 40

    run = CliRunner().invoke(pptrain, [str(out), "--width", "4", "--batch-size", "5", "--epochs", "4", "--stop-after", "1", "--quiet",
                                     "--run-dir", str(tmp_path / "run")])  # 4 epochs: augmented by default
    assert run.exit_code == 0, run.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["adapt"] == "pixel" and config["dataset"]["method"] == "mono-np"


def test_a_toy_block_method_gets_tanaka_and_its_block_side_from_the_manifest(toy_methods, cifar10_dir, key_file, tmp_path):
    out = tmp_path / "out"
    r = ppencrypt("dataset", cifar10_dir, out, "--key", key_file, "--method", "block-np", "--block-size", 8, "--quiet", "--workers", 1)
    assert r.exit_code == 0, r.output
    cipher = json.loads((out / "manifest.json").read_text())["cipher"]
    assert (cipher["family"], cipher["adapt"], cipher["block"], cipher["pixel_group"]) == ("block", "tanaka", 8, None)
    r = ppencrypt("audit", out, "--plain", cifar10_dir, "--split", "train", "-n", 10, "-o", tmp_path / "audit")
    assert r.exit_code == 0, r.output
    rows = {row["attack"]: row for row in json.loads((tmp_path / "audit.json").read_text())["attacks"]}
    assert rows["known-plaintext"]["not_applicable"] == "no key recovery for method 'block-np'"
    assert rows["fr-advanced"]["not_applicable"].startswith("not pixel-wise")
    run = CliRunner().invoke(pptrain, [str(out), "--width", "4", "--batch-size", "5", "--epochs", "4", "--stop-after", "1", "--quiet",
                                     "--run-dir", str(tmp_path / "run")])  # 4 epochs: augmented by default
    assert run.exit_code == 0, run.output
    assert "warning: method 'block-np' is not pixel-wise" in run.stderr
    model = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert (model["adapt"], model["adapt_block"]) == ("tanaka", 8)


ATTACKS_IN_ORDER = ["identity", "fr-basic", "fr-advanced", "fr-shared", "jigsaw", "known-plaintext", "learned", "learned-shared",
                    "learned-features"]


def test_the_audit_package_registers_every_attack_in_order():
    """The package's __init__ imports the attack modules (the registry's module imports none of
    them): whichever module a caller imports first, every attack is there, in one order — the
    order of the audit's rows. In a fresh interpreter, so that no other test's imports help."""
    probe = "from ppencrypt.audit.attacks import attacks; print(' '.join(a.name for a in attacks()))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ATTACKS_IN_ORDER
    from ppencrypt.audit.attacks import ATTACKS

    assert ATTACKS.names() == ATTACKS_IN_ORDER


@pytest.mark.parametrize(
    "method, channels, kind, size",
    [("pe", 3, "signed-permutations", 48), ("pe", 1, "negations", 2), ("np", 3, "negations", 8), ("plain", 3, "identity", 1)],
)
def test_the_pixel_group_is_what_the_cipher_does(method, channels, kind, size, cifar10, fmnist, master_key):
    """Under image-scope keys, one pixel encrypted as 3,000 images takes exactly the group's images."""
    from ppencrypt.ciphers import make_cipher
    from ppencrypt.keys import KeyRing

    cipher = make_cipher(method)
    group = cipher.pixel_group(channels)
    assert group.kind == kind and len(group) == size
    pixel = np.array([10, 70, 200][:channels], np.uint8)  # distinct components: every map gives another image
    images = np.broadcast_to(pixel, (3000, 1, 1, channels)).copy()
    ring = KeyRing(master_key.secret, method, "image", "train", SALT) if cipher.needs_key else None
    seen = {tuple(p) for p in cipher.encrypt(images, ring, np.arange(3000)).reshape(-1, channels).tolist()}
    predicted = {tuple(int(pixel[p] ^ (255 * f[p])) for p in perm) for perm, f in zip(group.perms, group.flips)}
    assert seen == predicted


def test_block_methods_have_no_pixel_group_and_state_their_block():
    from ppencrypt.ciphers import make_cipher

    for name in ("le", "ele", "etc"):
        c = make_cipher(name, {"block_size": 2})
        assert c.family == "block" and c.adapt == "tanaka" and c.block == 2 and c.pixel_group(3) is None
        assert c.facts(3) == {"family": "block", "adapt": "tanaka", "block": 2, "pixel_group": None}


def test_every_method_states_facts_the_manifest_and_trainer_accept():
    from ppencrypt.ciphers import make_cipher, method_names
    from ppencrypt.formats.manifest import FAMILIES
    from pptrain.settings import ADAPT_CHOICES

    for name in method_names():
        c = make_cipher(name)
        assert c.family in FAMILIES and c.adapt in ADAPT_CHOICES
        assert math.isfinite(c.key_space_bits((32, 32, 3))) and c.key_space_bits((32, 32, 3)) >= 0


# --- a third storage ----------------------------------------------------------------------


class NpySplitWriter(SplitWriter):
    """Toy storage: one pair of .npy files per shard."""

    def __init__(self, root, split, shape, shard_size):
        super().__init__(root, split, shape, shard_size)
        (root / split).mkdir(parents=True)
        self.pending, self.shards, self.index = [], [], 0

    def write(self, images, labels):
        for image, label in zip(images, labels):
            self.pending.append((image, label))
            if len(self.pending) == self.shard_size:
                self._flush()

    def _flush(self):
        rel = f"{self.split}/{len(self.shards):04d}.npy"
        images = np.stack([p[0] for p in self.pending])
        np.save(self.root / rel, images)
        np.save(self.root / f"{rel}.labels.npy", np.array([p[1] for p in self.pending], np.int64))
        path = self.root / rel
        self.shards.append(ShardInfo(rel, sha256_file(path), path.stat().st_size, len(images), self.index))
        self.index += len(images)
        self.pending = []

    def close(self):
        if self.pending:
            self._flush()
        return self.shards


class NpySplitReader(SplitReader):
    def most_samples(self, shard):
        return shard.bytes // self.sample_bytes

    def load_shard(self, shard):
        try:
            images = np.load(self.root / shard.path)
            labels = np.load(self.root / f"{shard.path}.labels.npy")
        except OSError as e:
            raise ShardError(f"{self.root / shard.path}: cannot read ({e})") from None
        return Batch(images, labels, np.arange(shard.first, shard.first + shard.count))


def test_a_third_storage_is_a_module_and_a_registry_line(monkeypatch, fmnist_dir, fmnist, key_file, tmp_path):
    monkeypatch.setitem(STORAGES, "npy", Storage("npy", "toy: .npy files", NpySplitWriter, NpySplitReader))
    out = tmp_path / "out"
    r = ppencrypt("dataset", fmnist_dir, out, "--key", key_file, "--format", "npy", "--quiet", "--workers", 1, "--shard-size", 4)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "test").iterdir())[:2] == ["0000.npy", "0000.npy.labels.npy"]
    assert ppencrypt("verify", out).exit_code == 0
    assert ppencrypt("decrypt", out, tmp_path / "dec", "--key", key_file, "--quiet").exit_code == 0
    images, labels = fmnist
    decrypted = read_pngs(tmp_path / "dec")
    assert len(decrypted) == 20 and np.array_equal(decrypted[f"test/{FASHION_CLASSES[labels[0]]}/00000000.png"], images[0])
    run = CliRunner().invoke(pptrain, [str(out), "--width", "4", "--batch-size", "5", "--epochs", "1", "--quiet",
                                       "--stream", "--workers", "0", "--run-dir", str(tmp_path / "run")])  # fmt: skip
    assert run.exit_code == 0, run.output


@pytest.mark.parametrize("storage", ["wds", "zarr"])
def test_both_storages_offer_the_reader_contract(storage, cifar10_dir, key_file, tmp_path):
    out = tmp_path / "out"
    r = ppencrypt("dataset", cifar10_dir, out, "--key", key_file, "--format", storage, "--quiet", "--workers", 1, "--shard-size", 4)
    assert r.exit_code == 0, r.output
    reader = open_dataset(out).split("train")
    assert isinstance(reader, SplitReader)
    whole = reader.read()
    chunks = list(reader.chunks())
    assert [len(c) for c in chunks] == [s.count for s in reader.shards] == [4, 4, 4, 3]
    assert np.array_equal(np.concatenate([c.images for c in chunks]), whole.images)
    head = reader.head(6)
    assert np.array_equal(head.images, whole.images[:6]) and head.indices.tolist() == list(range(6))
    assert all(Path(p).is_file() for p in reader.shard_paths()) and len(reader.shard_paths()) == 4
