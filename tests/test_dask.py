"""``--engine dask`` (issue 23): a real ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, no dashboard. The same OUT bytes as the local engine, folder and S3 alike; the
workers never receive the master key, the manifest's MAC subkey or the journal's (a worker
plugin inspects every task that arrives); a worker killed mid-job costs nothing but time."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import encrypt, ppencrypt, ppencrypt_process, tree_bytes
from servers import S3Server, make_bucket
from test_resume import big_fmnist, finished, keys, kill_after, local_journal, summary

distributed = pytest.importorskip("distributed")

from ppencrypt.formats import open_dataset  # noqa: E402
from ppencrypt.ciphers import make_cipher  # noqa: E402
from ppencrypt.keys import KeyUse, load_key, mac_key  # noqa: E402
from ppencrypt.keys.mac import journal_key  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARD = 500


@pytest.fixture(scope="module")
def s3_server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    """A client of a scheduler with two single-threaded workers (each its own process), whose
    environment points s3fs at the S3 server as a user's cluster points it at AWS."""
    tmp = tmp_path_factory.mktemp("dask")
    file = tmp / "scheduler.json"
    env = {**os.environ, **s3_server.env(tmp), "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("pipeline", "trainer", "tests"))}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", file],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    deadline = time.monotonic() + 60
    while not file.exists():
        assert time.monotonic() < deadline, "the scheduler did not start"
        time.sleep(0.1)
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", file, "--host", "127.0.0.1",
              "--nthreads", "1", "--no-dashboard", "--local-directory", tmp]  # fmt: skip
    procs += [subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    client = distributed.Client(scheduler_file=str(file), timeout="60s")
    client.wait_for_workers(2, timeout=120)
    try:
        yield client
    finally:
        client.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def src(tmp_path_factory, fmnist):
    return big_fmnist(tmp_path_factory.mktemp("src") / "fashion-mnist", fmnist, 3000)


def address(client) -> str:
    return client.scheduler.address


@pytest.mark.parametrize("storage", ["wds", "zarr"])
def test_dask_writes_the_local_engines_bytes(cluster, src, key_file, tmp_path, storage):
    encrypt(src, tmp_path / "local", key_file, "--format", storage, shard_size=SHARD)
    encrypt(src, tmp_path / "dask", key_file, "--format", storage, "--engine", "dask", "--scheduler", address(cluster),
            "--reproduce", tmp_path / "local", shard_size=SHARD)  # fmt: skip
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "local")
    assert ppencrypt("verify", tmp_path / "dask", "--key", key_file).exit_code == 0


class Inspect(distributed.WorkerPlugin):
    """On each worker: every task that starts, as it arrived (its run_spec, pickled), saved."""

    def __init__(self, folder: str):
        self.folder = folder

    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):
        ts = self.worker.state.tasks.get(key) if finish == "executing" else None
        if ts is not None:
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(key))
            Path(self.folder, f"{name}.pickle").write_bytes(pickle.dumps(ts.run_spec))


def test_workers_receive_no_master_key_and_no_mac_key(cluster, src, key_file, tmp_path):
    seen = tmp_path / "seen"
    seen.mkdir()
    cluster.register_plugin(Inspect(str(seen)), name="inspect")
    try:
        encrypt(src, tmp_path / "out", key_file, "--engine", "dask", "--scheduler", address(cluster), shard_size=SHARD)
    finally:
        cluster.unregister_worker_plugin("inspect")
    key = load_key(key_file)
    m = open_dataset(tmp_path / "out").manifest
    ring = KeyUse.of(m.cipher).ring(make_cipher(m.cipher.method, m.cipher.params), key, "train").bind(m.shape, m.cipher.params)
    blobs = {p.name: p.read_bytes() for p in seen.iterdir()}
    shards = {name: blob for name, blob in blobs.items() if "shard-train" in name}
    assert len(shards) == 3000 // SHARD  # every shard task of the train split was inspected
    assert all(ring.subkey() in blob for blob in shards.values())  # what they need arrived: the check can see a key
    for secret in (key.secret, mac_key(key.secret), journal_key(key.secret)):
        assert not any(secret in blob for blob in blobs.values())


def test_a_worker_killed_mid_job_changes_nothing(cluster, src, key_file, tmp_path):
    encrypt(src, tmp_path / "local", key_file, shard_size=100)
    out = tmp_path / "dask"
    p = ppencrypt_process("dataset", src, out, "--key", key_file, "--shard-size", 100, "--engine", "dask",
                          "--scheduler", address(cluster), "--reproduce", tmp_path / "local", "--quiet")  # fmt: skip
    kill_after_shards = 3
    deadline = time.monotonic() + 120
    while True:
        data = local_journal(out, p.pid)()
        try:
            if data is not None and finished(data) >= kill_after_shards:
                break
        except ValueError:
            pass
        assert p.poll() is None and time.monotonic() < deadline, p.communicate() if p.poll() is not None else "slow"
        time.sleep(0.01)
    victim = next(iter(cluster.run(os.getpid).values()))  # one worker process, by its pid
    os.kill(victim, signal.SIGKILL)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert tree_bytes(out) == tree_bytes(tmp_path / "local")
    cluster.wait_for_workers(2, timeout=120)  # the nanny starts it again for the next test


def test_dask_to_s3_is_the_local_engines_dataset(cluster, s3_server, src, key_file, tmp_path, monkeypatch):
    for name, value in s3_server.env(tmp_path).items():
        monkeypatch.setenv(name, value)
    bucket = f"s3://ppencrypt-{uuid.uuid4().hex[:12]}"
    make_bucket(bucket.removeprefix("s3://"))
    encrypt(src, f"{bucket}/local", key_file, shard_size=SHARD)
    encrypt(src, f"{bucket}/dask", key_file, "--engine", "dask", "--scheduler", address(cluster), "--reproduce", f"{bucket}/local",
            shard_size=SHARD)  # fmt: skip
    assert keys(f"{bucket}/dask") == keys(f"{bucket}/local")  # the dataset's files and the manifest: no marker, no journal
    for name in ("local", "dask"):
        assert ppencrypt("pull", f"{bucket}/{name}", tmp_path / name, "--quiet").exit_code == 0
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "local")
    r = ppencrypt("decrypt", f"{bucket}/dask", tmp_path / "plain", "--key", key_file, "--quiet")
    assert r.exit_code == 0, r.output


def test_a_killed_local_job_resumes_on_dask(cluster, fmnist, key_file, tmp_path):
    """The engine is not part of the job's identity: shards the local engine finished are
    kept, the dask engine writes the rest, and the bytes are an uninterrupted run's."""
    src = big_fmnist(tmp_path / "fm", fmnist, 20_000)
    out = tmp_path / "out"
    args = ("--key", key_file, "--shard-size", SHARD)
    p = ppencrypt_process("dataset", src, out, *args, "--quiet")
    listed = kill_after(p, local_journal(out, p.pid), 4)
    r = ppencrypt("dataset", src, out, *args, "--resume", "--engine", "dask", "--scheduler", address(cluster))
    assert r.exit_code == 0, r.output
    kept, total = summary(r)
    assert listed <= kept < total == 20_000 // SHARD + 1
    encrypt(src, tmp_path / "whole", key_file, "--reproduce", out, shard_size=SHARD)
    assert tree_bytes(tmp_path / "whole") == tree_bytes(out)
