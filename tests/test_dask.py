"""``--engine dask`` (issue 23): a real ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, no dashboard. The same OUT bytes as the local engine, folder and S3 alike; the
workers never receive the master key, the manifest's MAC subkey or the journal's (a worker
plugin inspects every task that arrives); a worker killed mid-job costs nothing but time."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
from conftest import encrypt, leftovers, ppencrypt, ppencrypt_process, tile_real, tree_bytes
from servers import S3Server, make_bucket
from streamed_fixtures import encode, write_folder, write_wds
from test_interrupt import alive, children, gone, photos  # noqa: F401  (photos: a fixture)
from test_resume import big_fmnist, finished, keys, kill_after, local_journal, summary

distributed = pytest.importorskip("distributed")

from ppencrypt import daskengine  # noqa: E402
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


def wait_for_shards(out, p, shards: int, seconds: float) -> None:
    """Until the running job ``p``'s local journal at ``out`` lists ``shards`` finished shards."""
    deadline = time.monotonic() + seconds
    while True:
        data = local_journal(out, p.pid)()
        try:
            if data is not None and finished(data) >= shards:
                return
        except ValueError:  # the journal caught mid-write
            pass
        assert p.poll() is None and time.monotonic() < deadline, p.communicate() if p.poll() is not None else "slow"
        time.sleep(0.01)


@pytest.mark.parametrize("storage", ["wds", "zarr"])
def test_dask_writes_the_local_engines_bytes(cluster, src, key_file, tmp_path, storage):
    encrypt(src, tmp_path / "local", key_file, "--format", storage, shard_size=SHARD)
    encrypt(src, tmp_path / "dask", key_file, "--format", storage, "--engine", "dask", "--scheduler", address(cluster),
            "--reproduce", tmp_path / "local", shard_size=SHARD)  # fmt: skip
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "local")
    assert ppencrypt("verify", tmp_path / "dask", "--key", key_file).exit_code == 0


def progress_events(client, since: float) -> list[dict]:
    """The train split's pieces that workers reported since ``since``."""
    return [msg for t, msg in client.get_events(daskengine.PROGRESS) if t >= since and msg["split"] == "train"]


def test_a_shard_task_encrypts_and_writes_a_piece_at_a_time(cluster, src, key_file, tmp_path, monkeypatch):
    """A worker holds one piece's encrypted images, never its shard's: the IDX source arrives
    as one 3,000-image chunk, and each 500-image shard is encrypted and written 96 images at a
    time (the pieces the workers report on the scheduler's progress topic), same bytes."""
    piece = 96
    monkeypatch.setattr(daskengine, "PIECE", piece)
    encrypt(src, tmp_path / "local", key_file, shard_size=SHARD)
    since = time.time()  # this job's events only (the cluster serves the whole module)
    encrypt(src, tmp_path / "dask", key_file, "--engine", "dask", "--scheduler", address(cluster), "--reproduce", tmp_path / "local",
            shard_size=SHARD)  # fmt: skip
    deadline = time.monotonic() + 30
    while sum(e["piece"] for e in progress_events(cluster, since)) < 3000:  # the workers' events arrive batched
        assert time.monotonic() < deadline, progress_events(cluster, since)
        time.sleep(0.1)
    events = progress_events(cluster, since)
    assert max(e["piece"] for e in events) == piece
    for k in range(3000 // SHARD):
        mine = sorted(e["images"] for e in events if e["shard"] == k)
        assert mine == [*range(piece, SHARD, piece), SHARD]  # 96, 192, ..., 480, 500: in order, nothing twice
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "local")


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
    staged_before = set(Path(tempfile.gettempdir()).glob("ppencrypt-shard-*"))
    wait_for_shards(out, p, 3, 120)
    victim = next(iter(cluster.run(os.getpid).values()))  # one worker process, by its pid
    os.kill(victim, signal.SIGKILL)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert tree_bytes(out) == tree_bytes(tmp_path / "local")
    cluster.wait_for_workers(2, timeout=120)  # the nanny starts it again for the next test
    # What the killed worker had staged lay in its own directory, which the new worker's start removed
    scratch = {Path(d).parent for d in cluster.run(lambda dask_worker: dask_worker.local_directory).values()}
    assert [f for d in scratch for f in d.glob("*/ppencrypt-shard-*")] == []
    assert set(Path(tempfile.gettempdir()).glob("ppencrypt-shard-*")) == staged_before


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


# --- both halves of issue 23 together: a streamed source in S3, streamed output, engines, --resume

STREAMED, PER_TAR, OUT_SHARD = 4000, 100, 150  # images, images per source tar, samples per output shard
FIRST = 1000  # the images of the first ten tars: the two engines' S3-to-S3 comparison


@pytest.fixture(scope="module")
def wds_in_s3(s3_server, cifar10, tmp_path_factory) -> str:
    """A brace pattern of webdataset shards in S3 (webdataset's TarWriter) of real-derived images,
    labelled by ``cls`` with no classes.txt — the class names are the label numbers, found as they
    come — and labels 10-19 only in images 950-999, so the classes grow as the job goes."""
    import webdataset

    images, labels = tile_real(*cifar10, STREAMED)
    late = (np.arange(STREAMED) >= FIRST - 50) & (np.arange(STREAMED) < FIRST)
    labels = np.where(late, labels % 10 + 10, labels)
    folder = tmp_path_factory.mktemp("wds")
    tars = STREAMED // PER_TAR
    for t in range(tars):
        with webdataset.TarWriter(str(folder / f"train-{t:04d}.tar")) as w:
            for i in range(t * PER_TAR, (t + 1) * PER_TAR):
                w.write({"__key__": f"s{i:06d}", "png": encode(images[i]), "cls": str(int(labels[i])).encode()})
    with pytest.MonkeyPatch.context() as mp:
        for name, value in s3_server.env(folder).items():
            mp.setenv(name, value)
        bucket = f"src-{uuid.uuid4().hex[:12]}"
        make_bucket(bucket)
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        for p in sorted(folder.glob("*.tar")):
            fs.pipe_file(f"{bucket}/wds/{p.name}", p.read_bytes())
    return f"s3://{bucket}/wds/train-{{0000..{tars - 1:04d}}}.tar"


@pytest.fixture
def s3_env(s3_server, tmp_path, monkeypatch):
    for name, value in s3_server.env(tmp_path).items():
        monkeypatch.setenv(name, value)


def test_a_streamed_source_in_s3_gives_the_same_s3_dataset_on_both_engines(cluster, wds_in_s3, s3_env, key_file, tmp_path):
    bucket = f"s3://ppencrypt-{uuid.uuid4().hex[:12]}"
    make_bucket(bucket.removeprefix("s3://"))
    split = ("--split", f"train={wds_in_s3.replace(f'..{STREAMED // PER_TAR - 1:04d}', f'..{FIRST // PER_TAR - 1:04d}')}")
    encrypt("-", f"{bucket}/local", key_file, *split, workers=2, shard_size=OUT_SHARD)
    encrypt("-", f"{bucket}/dask", key_file, *split, "--engine", "dask", "--scheduler", address(cluster),
            "--reproduce", f"{bucket}/local", shard_size=OUT_SHARD)  # fmt: skip
    assert keys(f"{bucket}/dask") == keys(f"{bucket}/local")
    for name in ("local", "dask"):
        assert ppencrypt("pull", f"{bucket}/{name}", tmp_path / name, "--quiet").exit_code == 0
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "local")
    m = open_dataset(f"{bucket}/dask").manifest
    assert m.classes == [str(i) for i in range(20)] and m.splits["train"].count == FIRST
    assert sum(m.splits["train"].per_class[10:]) == 50 and m.inputs["train"].files == FIRST // PER_TAR
    assert ppencrypt("verify", f"{bucket}/dask", "--key", key_file, "--quiet").exit_code == 0
    r = ppencrypt("decrypt", f"{bucket}/dask", tmp_path / "plain", "--key", key_file, "--quiet")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "plain" / "train").rglob("*.png"))) == FIRST
    # and the server trains on it where it lies: one epoch of pptrain, streamed from S3
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "pptrain", f"{bucket}/dask", "--epochs", "1", "--width", "4", "--batch-size", "100",
                              "--device", "cpu", "--workers", "0", "--run-dir", str(run), "--quiet"],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert [row["epoch"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1]


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_killed_job_from_a_streamed_source_resumes_to_the_same_bytes(cluster, wds_in_s3, s3_env, key_file, tmp_path, engine):
    """SIGKILLed mid-job (local engine, one worker): --resume with another --split source is
    refused with nothing changed; with the same one it keeps the finished shards and writes the
    rest on ``engine``, to the bytes of an uninterrupted run."""
    out = tmp_path / "out"
    args = ("--key", key_file, "--shard-size", OUT_SHARD, "--split", f"train={wds_in_s3}")
    p = ppencrypt_process("dataset", "-", out, *args, "--workers", 1, "--quiet")
    listed = kill_after(p, local_journal(out, p.pid), 3)
    partial = tmp_path / leftovers(out)[0]
    before = tree_bytes(partial)
    other = wds_in_s3.replace("{0000..", "{0001..")
    r = ppencrypt("dataset", "-", out, *args[:4], "--split", f"train={other}", "--resume", "--quiet")
    assert r.exit_code == 1 and "another --split sources" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert tree_bytes(partial) == before
    more = ("--engine", "dask", "--scheduler", address(cluster)) if engine == "dask" else ("--workers", 2)
    r = ppencrypt("dataset", "-", out, *args, *more, "--resume")
    assert r.exit_code == 0, r.output
    kept, total = summary(r)
    assert listed <= kept < total == -(-STREAMED // OUT_SHARD)
    encrypt("-", tmp_path / "whole", key_file, "--split", f"train={wds_in_s3}", "--reproduce", out, shard_size=OUT_SHARD)
    assert tree_bytes(tmp_path / "whole") == tree_bytes(out)
    assert open_dataset(out).manifest.classes == [str(i) for i in range(20)]


# --- Ctrl-C during a dask job: prompt, one line, nothing left behind, resumable ------------------


def descendants(pid: int) -> set[int]:
    found = children(pid)
    for c in list(found):
        found |= descendants(c)
    return found


def interrupt(p, within: float = 30) -> str:
    """Ctrl-C as a terminal sends it (SIGINT to the job's process group); its stderr."""
    os.killpg(p.pid, signal.SIGINT)
    try:
        _, err = p.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("hung after Ctrl-C")
    return err


def photo_job(photos, out, key_file, *more, resume=True):
    return ppencrypt_process("dataset", photos, out, "--key", key_file, "--size", 32, "--shard-size", 100, "--engine", "dask",
                             *more, *(("--resume",) if resume else ()), "--quiet", start_new_session=True)  # fmt: skip


@pytest.mark.parametrize("moment, resume", [("starting", False), ("encrypting", False), ("encrypting", True)])
def test_ctrl_c_ends_a_dask_job_and_its_local_cluster(photos, key_file, tmp_path, moment, resume):
    """The driver's own LocalCluster: interrupted while its workers start (they import for
    seconds) or mid-job, it exits at once with 'Aborted!' alone, its worker processes reaped;
    without --resume nothing is left at OUT, with it the rerun completes byte-identically."""
    out = tmp_path / "out"
    p = photo_job(photos, out, key_file, "--workers", 2, resume=resume)
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline:
        seen |= descendants(p.pid)
        if moment == "starting" and seen:
            break
        if moment == "encrypting" and (data := local_journal(out, p.pid)()) is not None:
            try:
                if finished(data) >= 1:
                    break
            except ValueError:
                pass
        time.sleep(0.01)
    assert p.poll() is None, f"finished before it could be interrupted: {p.communicate()}"
    seen |= descendants(p.pid)
    started = time.monotonic()
    err = interrupt(p)
    assert time.monotonic() - started < 15
    assert p.returncode == 1 and err.strip() == "Aborted!", err  # one line, no traceback, no Dask log
    assert seen and gone(seen, 10), "a worker outlived its job"
    time.sleep(2)  # a shard task still running when the driver ended writes nothing now
    if not resume:
        assert leftovers(out) == []
        return
    assert len(leftovers(out)) == 1 and leftovers(out)[0].startswith(".out.partial-")
    r = ppencrypt("dataset", photos, out, "--key", key_file, "--size", 32, "--shard-size", 100, "--engine", "dask", "--workers", 2,
                  "--resume")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert 1 <= summary(r)[0] < summary(r)[1]
    encrypt(photos, tmp_path / "whole", key_file, "--size", 32, "--reproduce", out, shard_size=100)
    assert tree_bytes(tmp_path / "whole") == tree_bytes(out)


def test_a_killed_dask_driver_takes_its_local_cluster_with_it(photos, key_file, tmp_path):
    """SIGKILL runs no cleanup: the LocalCluster's worker processes (and the WorkerPool's) see
    their parent gone and exit, none left under PID 1."""
    p = photo_job(photos, tmp_path / "out", key_file, "--workers", 2)
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while len(seen) < 3 and time.monotonic() < deadline:  # two dask workers and the resource tracker at least
        assert p.poll() is None, p.communicate()
        seen |= descendants(p.pid)
        time.sleep(0.01)
    time.sleep(1)
    seen |= descendants(p.pid)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    try:
        assert gone(seen, 20), "processes orphaned under PID 1"
    finally:
        for pid in seen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_on_an_external_cluster_cancels_the_jobs_tasks_and_resumes(cluster, photos, key_file, tmp_path):
    """--scheduler: the workers are not the driver's to end, so its tasks are cancelled on the
    scheduler; the interrupted --resume job's partial is kept, and rerun it completes to the
    bytes of an uninterrupted run."""
    out = tmp_path / "out"
    more = ("--scheduler", address(cluster))
    p = photo_job(photos, out, key_file, *more)
    kill_after_shards = 2
    wait_for_shards(out, p, kill_after_shards, 180)
    err = interrupt(p)
    assert p.returncode == 1 and err.strip() == "Aborted!", err

    def ours(dask_scheduler):
        return [str(k) for k in dask_scheduler.tasks if str(k).startswith(("decode-", "count-", "shard-"))]

    deadline = time.monotonic() + 30
    while cluster.run_on_scheduler(ours):
        assert time.monotonic() < deadline, f"tasks left on the scheduler: {cluster.run_on_scheduler(ours)}"
        time.sleep(0.2)
    assert len(leftovers(out)) == 1 and leftovers(out)[0].startswith(".out.partial-")  # kept for --resume
    r = ppencrypt("dataset", photos, out, "--key", key_file, "--size", 32, "--shard-size", 100, "--engine", "dask", *more, "--resume")
    assert r.exit_code == 0, r.output
    kept, total = summary(r)
    assert kill_after_shards <= kept < total
    encrypt(photos, tmp_path / "whole", key_file, "--size", 32, "--reproduce", out, shard_size=100)
    assert tree_bytes(tmp_path / "whole") == tree_bytes(out)


# --- --copies on dask: the local engine's bytes, from an ImageFolder and from a stream ----------


@pytest.mark.parametrize("layout", ["imagefolder", "wds"])
def test_copies_on_dask_are_the_local_engines_bytes(cluster, cifar10, key_file, tmp_path, layout):
    """Copy k of image j is sample k x N + j, shifted and flipped by draw j of copy k, on a
    worker as locally; shards of 4 span the copies' boundaries (15 train images a copy)."""
    src = (write_folder if layout == "imagefolder" else write_wds)(tmp_path / layout, *cifar10)
    copies = ("--copies", 3, "--pad", 3, "--augment-seed", 5)
    encrypt(src, tmp_path / "local", key_file, *copies)
    encrypt(src, tmp_path / "dask", key_file, *copies, "--engine", "dask", "--scheduler", address(cluster), "--reproduce",
            tmp_path / "local")  # fmt: skip
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "local")
    m = open_dataset(tmp_path / "dask").manifest
    assert m.splits["train"].count == 3 * 15 and m.augment.copies == 3
    assert ppencrypt("verify", tmp_path / "dask", "--key", key_file, "--quiet").exit_code == 0


def test_copies_of_a_wds_source_in_s3_on_both_engines(cluster, wds_in_s3, s3_env, key_file, tmp_path):
    """A stream at a URL is counted first by reading its shards' headers through; then both
    engines write the same copies."""
    two = wds_in_s3.replace(f"..{STREAMED // PER_TAR - 1:04d}", "..0001")  # 200 images in two tars
    split = ("--split", f"train={two}", "--copies", 2)
    encrypt("-", tmp_path / "local", key_file, *split, workers=2, shard_size=OUT_SHARD)
    encrypt("-", tmp_path / "dask", key_file, *split, "--engine", "dask", "--scheduler", address(cluster),
            "--reproduce", tmp_path / "local", shard_size=OUT_SHARD)  # fmt: skip
    assert tree_bytes(tmp_path / "dask") == tree_bytes(tmp_path / "local")
    assert open_dataset(tmp_path / "dask").manifest.splits["train"].count == 2 * 2 * PER_TAR


def test_a_killed_copies_job_resumes_mid_copy_on_dask(cluster, fmnist, key_file, tmp_path):
    """Killed in its second copy (local engine), resumed on dask: the journal's copy, task,
    offset and draw position are the dask engine's too; the bytes an uninterrupted run's."""
    src = big_fmnist(tmp_path / "fm", fmnist, 20_000)
    out = tmp_path / "out"
    args = ("--key", key_file, "--shard-size", SHARD, "--copies", 3, "--pad", 2)
    p = ppencrypt_process("dataset", src, out, *args, "--quiet")
    listed = kill_after(p, local_journal(out, p.pid), 20_000 // SHARD + 5)  # five shards into copy 1
    r = ppencrypt("dataset", src, out, *args, "--resume", "--engine", "dask", "--scheduler", address(cluster))
    assert r.exit_code == 0, r.output
    kept, total = summary(r)
    assert listed <= kept < total == 3 * 20_000 // SHARD + 1
    encrypt(src, tmp_path / "whole", key_file, *args[2:], "--reproduce", out, shard_size=SHARD)
    assert tree_bytes(tmp_path / "whole") == tree_bytes(out)


def test_a_ctrl_c_swallowed_by_a_finalizer_is_kept_for_the_driver():
    """A Ctrl-C that lands in a Dask future's __del__ is ignored by Python (a traceback, and the
    job went on to finish once in a fresh-clone run); while a job runs it is noted instead, with
    nothing printed, and raised at the driver's next step; other unraisable errors pass on."""
    from ppencrypt.daskengine import _KeptInterrupt

    seen = []
    previous, sys.unraisablehook = sys.unraisablehook, seen.append

    class Finalized:
        def __init__(self, error):
            self.error = error

        def __del__(self):
            raise self.error

    try:
        with _KeptInterrupt() as kept:
            Finalized(KeyboardInterrupt())  # collected at once: its __del__ raises
            assert kept.interrupted and seen == []
            Finalized(ValueError("other"))
            assert [type(u.exc_value) for u in seen] == [ValueError]
        assert sys.unraisablehook == seen.append
    finally:
        sys.unraisablehook = previous
