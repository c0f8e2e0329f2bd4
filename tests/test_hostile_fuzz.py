"""Generated hostile inputs (hypothesis): manifests, tar members and zarr metadata mutated at
random, fed to everything that reads a dataset — verify, inspect, preview, decrypt, audit's
reader and pptrain's loaders. Each either works or raises the library's typed error (which the
CLIs print as one line, exit 1): never another exception, never an allocation of more than a
few tens of MiB, never a file written outside the output folder.

The values include JSON's edge cases, which Python's json reads into values that crash a later
step: numbers that are not finite (NaN, Infinity, ``1e400``), lone surrogates in strings and
keys, and nesting from just under the readers' limit to ~1200 levels (written as raw text by
:func:`dump`: json.dumps cannot write some of them, and deep Python lists would recurse here)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import tempfile
import tracemalloc
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA, write_cifar10
from ppencrypt.decrypt import decrypt_dataset
from ppencrypt.inspect import summary
from ppencrypt.errors import PipelineError
from ppencrypt.formats import open_dataset
from ppencrypt.keys import MasterKey
from ppencrypt.preview import preview
from ppencrypt.verify import verify_dataset
from pptrain.distributed import Dist
from pptrain.errors import TrainerError
from pptrain.memory import MemoryLoader
from pptrain.stream import StreamLoader

V1_KEY = MasterKey(bytes(range(32)))
PEAK_MIB = 64  # no hostile input may make a reader allocate more than this
CPU = torch.device("cpu")
ODD_STRINGS = ["../x", "/etc/passwd", "a/../b", "\x00", "\x1b[2J", "..", "", "x" * 600, "train/000000.tar", "0" * 64]
SURROGATES = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2)  # json.dumps escapes them
# Raw JSON text in a document, as a marker string that dump() replaces: what json.dumps will not
# write (1e400, a surrogate escape in a key written by hand) and nesting too deep to build here.
RAW_TEXT = ["1e400", "-1e400", "NaN", "-Infinity", '"\\ud800"', '{"\\udfff": 1}']
RAW = (st.sampled_from(range(len(RAW_TEXT))).map(lambda i: f"\x00raw:{i}\x00")
       | st.integers(30, 1200).map(lambda n: f"\x00deep:{n}\x00"))  # fmt: skip
MARKER = re.compile(r'"\\u0000(raw|deep):(\d+)\\u0000"')
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, -1, 2**31, 2**63, 10**12])
    | st.floats() | st.sampled_from([float("inf"), float("-inf"), float("nan")]) | st.text(max_size=12)
    | st.sampled_from(ODD_STRINGS) | SURROGATES | RAW,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6) | SURROGATES, inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
MUTATION = st.tuples(st.integers(0, 10**6), st.sampled_from(["replace", "delete", "add"]), JSON)
EDGE = (st.sampled_from([float("inf"), float("-inf"), float("nan")]) | SURROGATES | RAW
        | st.dictionaries(SURROGATES, JSON, min_size=1, max_size=2))  # fmt: skip
EDGE_MUTATION = st.tuples(st.integers(0, 10**6), st.sampled_from(["replace", "add"]), EDGE)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def nodes(obj, path=()):
    """Every path into a JSON document, root excluded."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path + (k,)
            yield from nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield path + (i,)
            yield from nodes(v, path + (i,))


def mutate(doc, mutations):
    doc = copy.deepcopy(doc)
    for pick, how, value in mutations:
        paths = list(nodes(doc))
        if not paths:
            return value
        *parent_path, last = paths[pick % len(paths)]
        parent = doc
        for p in parent_path:
            parent = parent[p]
        if how == "delete":
            del parent[last]
        elif how == "add" and isinstance(parent, dict):
            parent[f"{last}-extra"] = value
        elif how == "add":
            parent.append(value)
        else:
            parent[last] = value
    return doc


def dump(doc) -> str:
    """JSON text of ``doc`` (non-finite floats as NaN and Infinity, as json.dumps writes them),
    each RAW marker replaced by its raw text."""
    def raw(m: re.Match) -> str:
        n = int(m[2])
        return RAW_TEXT[n] if m[1] == "raw" else "[" * n + "]" * n

    return MARKER.sub(raw, json.dumps(doc))


def restamp(root: Path, rel: str) -> None:
    path = root / "manifest.json"
    d, data = json.loads(path.read_text()), (root / rel).read_bytes()
    for entry in [sh for s in d["splits"].values() for sh in s["shards"]] + d["files"]:
        if entry["path"] == rel:
            entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    path.write_text(json.dumps(d))


def read_everything(root: Path, work: Path) -> None:
    """Everything that reads a dataset; PipelineError and TrainerError are the clean failures."""
    ds = open_dataset(root)
    summary(ds)
    verify_dataset(root)
    preview(root, work / "p.png")
    for split in ds.splits:
        ds.split(split).head(3)
        for loader in (MemoryLoader(ds, split, 2, Dist(), CPU, 0, train=False),
                       StreamLoader(ds, split, 2, Dist(), CPU, 0, False, workers=0, buffer=4)):  # fmt: skip
            for _ in loader.epoch(0):
                pass


def check(root: Path, work: Path, key: MasterKey | None = None) -> None:
    before = sorted(p for p in work.parent.rglob("*") if not p.is_relative_to(work) and not p.is_relative_to(root))
    tracemalloc.start()
    try:
        read_everything(root, work)
        if key is not None:
            decrypt_dataset(root, work / "dest", key)
    except (PipelineError, TrainerError):
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < PEAK_MIB << 20, f"a reader allocated {peak >> 20} MiB"
    after = sorted(p for p in work.parent.rglob("*") if not p.is_relative_to(work) and not p.is_relative_to(root))
    assert before == after, "a file was written outside the output folder"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A small wds and zarr dataset (version 2, pe, image scope) and a version 1 one."""
    from ppencrypt.dataset import EncryptOptions, encrypt_dataset

    base = tmp_path_factory.mktemp("fuzz-base")
    import numpy as np
    from PIL import Image

    files = sorted((DATA / "cifar10").glob("*.png"))
    images = np.stack([np.asarray(Image.open(f)) for f in files])
    labels = np.array([int(f.stem.rsplit("_", 1)[1]) for f in files])
    src = write_cifar10(base / "cifar-10-batches-py", images, labels)
    out = {}
    for storage in ("wds", "zarr"):
        out[storage] = base / storage
        encrypt_dataset(str(src), str(out[storage]), V1_KEY, EncryptOptions(storage=storage, shard_size=4, workers=1))
    out["v1"] = DATA / "v1" / "cifar10-pe-image-zarr"
    return out


def fresh(src: Path) -> tuple[Path, Path]:
    top = Path(tempfile.mkdtemp(prefix="fuzz-"))
    root = Path(shutil.copytree(src, top / "data"))
    (top / "work").mkdir()
    return root, top / "work"


@pytest.mark.parametrize("which", ["wds", "zarr", "v1"])
@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_manifests(datasets, which, mutations):
    root, work = fresh(datasets[which])
    try:
        d = json.loads((root / "manifest.json").read_text())
        (root / "manifest.json").write_text(dump(mutate(d, mutations)))
        check(root, work, V1_KEY if which == "v1" else None)  # a v1 manifest has no MAC: decrypt reads it
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


@FUZZ
@given(cuts=st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "size"]), st.integers(0, 10**6), st.integers(0, 255)),
                     min_size=1, max_size=4))  # fmt: skip
def test_garbled_tar_members(datasets, cuts):
    """Byte flips, truncations, insertions and rewritten tar size fields, with the manifest made
    to agree (a server writes both)."""
    root, work = fresh(datasets["wds"])
    try:
        rel = "train/000001.tar"
        data = bytearray((root / rel).read_bytes())
        for how, at, value in cuts:
            at %= max(len(data), 1)
            if how == "flip":
                if data:  # an earlier cut may have left nothing to flip
                    data[at] ^= value or 1
            elif how == "cut":
                del data[at:]
            elif how == "insert":
                data[at:at] = bytes([value]) * (value + 1)
            else:  # a member's size field (octal, 12 bytes at 124 of a 512-byte header)
                header = (at // 512) * 512
                data[header + 124 : header + 136] = b"%011o\0" % (value * 10**9)
        (root / rel).write_bytes(bytes(data))
        restamp(root, rel)
        check(root, work)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3), which=st.sampled_from(["images", "labels"]))
def test_mutated_zarr_metadata(datasets, mutations, which):
    root, work = fresh(datasets["zarr"])
    try:
        rel = f"train/{which}/zarr.json"
        meta = json.loads((root / rel).read_text())
        (root / rel).write_text(dump(mutate(meta, mutations)))
        restamp(root, rel)
        check(root, work)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


@pytest.mark.parametrize("which, rel", [("wds", "manifest.json"), ("v1", "manifest.json"), ("zarr", "train/images/zarr.json")])
@FUZZ
@given(mutations=st.lists(EDGE_MUTATION, min_size=1, max_size=2))
def test_json_edge_cases_anywhere(datasets, which, rel, mutations):
    """Only JSON's edge cases, anywhere in a manifest or in zarr metadata — an unknown extra field
    included, which no field check looks at (the manifest's canonical form did, and crashed)."""
    root, work = fresh(datasets[which])
    try:
        d = json.loads((root / rel).read_text())
        (root / rel).write_text(dump(mutate(d, mutations)))
        if rel != "manifest.json":
            restamp(root, rel)
        check(root, work, V1_KEY if which == "v1" else None)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
