"""Datasets in Google Cloud Storage: gcp-storage-emulator on 127.0.0.1 (tests/servers.py), driven
through gcsfs exactly as a user points it at an emulator or another endpoint — variables in the
environment of each command (STORAGE_EMULATOR_HOST, FSSPEC_GCS_TOKEN=anon,
GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: servers.gcs_env), nothing in our options. fsspec and
gcsfs read these when they are imported, so every command runs as its own process, as a user
runs it. A dataset is written there, verified, inspected, decrypted, pushed and pulled, trained
on in memory and streamed; a missing bucket and a corrupted shard fail in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import encrypt, expected_pngs, ppencrypt, read_pngs, tree_bytes
from ppencrypt.formats import open_dataset
from ppencrypt.formats.remote import classify
from ppencrypt.sources.idx import FASHION_CLASSES
from trainer_fixtures import TRAIN, loader_args, shard_sizes, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

gcsfs = pytest.importorskip("gcsfs")
pytest.importorskip("gcp_storage_emulator")
from gcsfs.retry import validate_response  # noqa: E402

from servers import GCSServer  # noqa: E402

MODULES = {"ppencrypt": "ppencrypt", "pptrain": "pptrain"}  # python -m NAME


@pytest.fixture(scope="module")
def gcs_server():
    server = GCSServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(gcs_server, tmp_path_factory) -> dict[str, str]:
    """The environment of a user whose gcsfs points at the emulator."""
    return {**os.environ, **gcs_server.env(tmp_path_factory.mktemp("fsspec-config")), "OMP_NUM_THREADS": "1"}


def cli(env: dict[str, str], prog: str, *args) -> subprocess.CompletedProcess:
    """``prog ARGS`` as its own process in ``env``. The timeout only catches a hang: a pptrain
    run took over 60 s on a 2-core machine whose cores were busy with other training jobs."""
    cmd = [sys.executable, "-m", MODULES[prog], *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def new_bucket(server: GCSServer) -> str:
    name = f"ppencrypt-{uuid.uuid4().hex[:12]}"
    server.make_bucket(name)
    return f"gs://{name}"


def storage(server: GCSServer):
    """gcsfs on the emulator, for the test's own looks (the plain JSON-API filesystem)."""
    return gcsfs.core.GCSFileSystem(endpoint_url=server.endpoint, token="anon", skip_instance_cache=True)


@pytest.fixture(scope="module")
def pushed(gcs_server, env, shapes_pe) -> str:
    """The three-shapes dataset, pushed to a new bucket."""
    url = f"{new_bucket(gcs_server)}/shapes"
    ok(cli(env, "ppencrypt", "push", shapes_pe, url, "--quiet"))
    return url


def test_the_client_commands_read_and_write_gs_urls(gcs_server, env, fmnist_dir, fmnist, key_file, tmp_path):
    bucket = new_bucket(gcs_server)
    url, local = f"{bucket}/datasets/fm", tmp_path / "local"
    encrypt(fmnist_dir, local, key_file)
    args = ("--key", key_file, "--quiet", "--workers", "1", "--shard-size", "4", "--reproduce", local)
    ok(cli(env, "ppencrypt", "dataset", fmnist_dir, url, *args))
    listed = {f.path for f in open_dataset(local).manifest.all_files()}
    fs = storage(gcs_server)
    assert sorted(k.removeprefix(url[5:] + "/") for k in fs.find(url)) == sorted(listed | {"manifest.json"})

    r = ok(cli(env, "ppencrypt", "verify", url, "--key", key_file))
    assert "authenticated with the key" in r.stdout and not r.stderr, r.stderr
    assert ok(cli(env, "ppencrypt", "inspect", url)).stdout == ppencrypt("inspect", local).stdout.replace(str(local), url)

    ok(cli(env, "ppencrypt", "decrypt", url, tmp_path / "plain", "--key", key_file, "--quiet"))
    assert ppencrypt("decrypt", local, tmp_path / "plain-local", "--key", key_file, "--quiet").exit_code == 0
    assert tree_bytes(tmp_path / "plain") == tree_bytes(tmp_path / "plain-local")  # byte for byte
    got, want = read_pngs(tmp_path / "plain"), expected_pngs(*fmnist, FASHION_CLASSES)
    assert sorted(got) == sorted(want) and all(np.array_equal(got[name], want[name]) for name in want)

    ok(cli(env, "ppencrypt", "push", local, f"{bucket}/pushed", "--quiet"))
    ok(cli(env, "ppencrypt", "pull", f"{bucket}/pushed", tmp_path / "pulled", "--quiet"))
    ok(cli(env, "ppencrypt", "pull", url, tmp_path / "pulled-written", "--quiet"))
    assert tree_bytes(tmp_path / "pulled") == tree_bytes(tmp_path / "pulled-written") == tree_bytes(local)


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_pptrain_reads_gcs(pushed, env, gcs_server, shapes_pe, tmp_path, loader):
    gcs_server.downloads.clear()
    ok(cli(env, "pptrain", pushed, *TRAIN, *loader_args(loader, tmp_path), "--run-dir", tmp_path / "run"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["path"] == pushed and config["resolved"]["stream"] is (loader == "stream")
    shards = shard_sizes(shapes_pe)
    assert {path: gcs_server.downloads[f"{pushed[5:]}/{path}"] for path in shards} == dict.fromkeys(shards, 1)


def test_clear_one_line_errors(gcs_server, env, fmnist_dir, key_file):
    missing = "gs://no-such-bucket-ppencrypt/ds"
    for r in (cli(env, "ppencrypt", "verify", missing), cli(env, "ppencrypt", "dataset", fmnist_dir, missing, "--key", key_file)):
        assert r.returncode == 1 and r.stderr.strip() == f"Error: {missing}: no such bucket", r.stderr
    empty = f"{new_bucket(gcs_server)}/empty"
    r = cli(env, "ppencrypt", "verify", empty)
    assert r.returncode == 1 and r.stderr.strip() == f"Error: {empty}: not a ppencrypt dataset (no manifest.json)", r.stderr


def test_a_corrupted_shard_object_fails_naming_it(gcs_server, env, shapes_pe, tmp_path):
    url = f"{new_bucket(gcs_server)}/shapes"
    ok(cli(env, "ppencrypt", "push", shapes_pe, url, "--quiet"))
    shard = open_dataset(shapes_pe).manifest.splits["train"].shards[1].path
    fs = storage(gcs_server)
    data = bytearray(fs.cat_file(f"{url}/{shard}"))
    data[1000] ^= 1
    fs.pipe_file(f"{url}/{shard}", bytes(data))
    message = f"{url}/{shard}: checksum mismatch (the file was altered or damaged) (4 tries)"
    for r in (cli(env, "ppencrypt", "verify", url), cli(env, "ppencrypt", "pull", url, tmp_path / "pulled")):
        assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].endswith(message), r.stderr
    assert not (tmp_path / "pulled").exists() and not list(tmp_path.glob(".pulled*"))


@pytest.mark.parametrize(("status", "kind"), [(401, "denied"), (403, "denied"), (404, "missing"), (400, "refused"),
                                              (408, None), (429, None), (500, None), (503, None)])  # fmt: skip
def test_gcsfs_errors_are_final_or_tried_again(status, kind):
    """What gcsfs raises for each answer (its own validate_response): a 4xx is final, a 5xx, a
    timeout or too many requests is tried again."""
    with pytest.raises(Exception) as raised:
        validate_response(status, json.dumps({"error": {"code": status, "message": "no"}}).encode(), "b/bkt/o/x")
    got = classify(raised.value)
    assert (got and got.kind) == kind, repr(raised.value)
