"""torchrun: two CPU processes over gloo train on disjoint data with equal batch counts, and
only rank 0 writes metrics, checkpoints and the summary."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer_fixtures import encrypt, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

BATCH = 16  # both ranks together


@pytest.fixture(scope="module")
def shapes_one_shard(shapes_src, session_key, tmp_path_factory) -> Path:
    return encrypt(shapes_src, tmp_path_factory.mktemp("one") / "out", session_key, storage="zarr", shard_size=1000)


def torchrun(data: Path, run_dir: Path, *extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pptrain",
           str(data), "--width", "4", "--epochs", "2", "--batch-size", str(BATCH), "--run-dir", str(run_dir),
           "--trace", "--quiet", "--device", "cpu", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_two_process_gloo_run(request, tmp_path, loader):
    data = request.getfixturevalue("shapes_pe" if loader == "memory" else "shapes_one_shard")
    extra = ["--stream", "--workers", "1"] if loader == "stream" else []
    run_dir = tmp_path / "run"
    done = torchrun(data, run_dir, *extra)
    summaries = [line for line in done.stdout.splitlines() if line.startswith(f"{run_dir}: ")]
    assert len(summaries) == 1 and "done, 2/2 epochs" in summaries[0]

    traces = [[json.loads(line) for line in (run_dir / f"trace-rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [len(t) for t in traces] == [2, 2]
    count = 114  # three-shapes train split
    for epoch in range(2):
        a, b = traces[0][epoch]["batches"], traces[1][epoch]["batches"]
        assert len(a) == len(b) == count // BATCH  # equal batch counts: no rank waits on the all-reduce
        assert all(len(x) == BATCH // 2 for x in a + b)
        seen_a, seen_b = {i for x in a for i in x}, {i for x in b for i in x}
        assert not seen_a & seen_b  # disjoint data per rank
        assert len(seen_a) == sum(map(len, a)) and len(seen_b) == sum(map(len, b))
    assert traces[0][0]["batches"] != traces[0][1]["batches"]  # a new order each epoch

    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["checkpoint.pt", "config.json", "curves.png", "metrics.jsonl", "trace-rank0.jsonl", "trace-rank1.jsonl"]
    )
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["runtime"]["world"] == 2 and config["runtime"]["device"] == "cpu"
