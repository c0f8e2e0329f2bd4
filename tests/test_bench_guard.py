"""bench/guard.py, the regression guard of `make bench`: key ratios written by the bench scripts'
own writer (bench/ratios.py), recorded into a small benchmarks document in tmp_path with --record,
read back and compared, the guard always run as a subprocess (its exit status is the contract)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUARD = ROOT / "bench" / "guard.py"
sys.path.insert(0, str(ROOT / "bench"))
from ratios import Ratios  # noqa: E402

DOC = """# Benchmarks

Prose before the record.

## Recorded ratios

How to read the record (kept as it is by --record).

## Later section

Prose after the record.
"""

# script -> (metric, value, better, goal, unit); values have four significant digits at most,
# as the record keeps them
RUN = {
    "alpha": [("speed", 2.5, "higher", 2.0, "x"), ("time", 0.4, "lower", 0.5, "x")],
    "beta": [("rss", 300, "lower", 512, "MiB"), ("seconds", 4.0, "lower", None, "s")],
}


def write_results(folder: Path, run: dict = RUN, quick: bool = False) -> Path:
    """The --json files of a run, written as a bench script writes them."""
    for script, metrics in run.items():
        ratios = Ratios(f"bench/{script}.py", argparse.Namespace(quick=quick, json=folder / f"{script}.json"))
        for name, value, better, goal, unit in metrics:
            ratios.add(name, value, better, f"{script} {name}: ours / the baseline's", goal, unit)
        ratios.report()
    return folder


def changed(metric: str, factor: float) -> dict:
    """RUN with one metric's value multiplied by ``factor``."""
    script, name = metric.split(".")
    return {s: [(n, v * factor if (s, n) == (script, name) else v, *rest) for n, v, *rest in ms] for s, ms in RUN.items()}


def guard(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GUARD), *map(str, args)], capture_output=True, text=True, timeout=120)


def line_of(out: str, metric: str) -> str:
    """The guard's line on ``metric``, its alignment spaces squeezed."""
    lines = [" ".join(line.split()) for line in out.splitlines() if line.startswith(metric + ":")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.fixture
def doc(tmp_path) -> Path:
    """A benchmarks document holding a record of RUN (full run)."""
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    r = guard("--record", "--doc", path, write_results(tmp_path / "recorded"))
    assert r.returncode == 0, r.stderr
    return path


def test_record_is_written_into_its_section_and_read_back(doc, tmp_path):
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nProse before the record.\n\n## Recorded ratios\n\nHow to read the record")
    assert text.endswith("## Later section\n\nProse after the record.\n")
    block = text[text.index("<!-- recorded-ratios full") : text.index("<!-- /recorded-ratios full -->")]
    assert text.index("How to read") < text.index(block) < text.index("## Later section")
    assert "**Full run** (`make bench-record`)" in block and "Load average" in block
    assert "| `alpha.speed` | 2.5 | x | higher | >= 2x |" in block
    assert "| `alpha.time` | 0.4 | x | lower | <= 0.5x |" in block
    assert "| `beta.rss` | 300 | MiB | lower | <= 512 MiB |" in block
    assert "| `beta.seconds` | 4 | s | lower | none |" in block

    r = guard("--doc", doc, write_results(tmp_path / "again"))
    assert r.returncode == 0, r.stdout + r.stderr
    for metric in ("alpha.speed", "alpha.time", "beta.rss", "beta.seconds"):
        line = line_of(r.stdout, metric)
        assert "(unchanged)" in line and line.endswith(": OK"), line
    assert line_of(r.stdout, "beta.rss") == "beta.rss: 300 MiB (lower is better), recorded 300 MiB (unchanged), goal <= 512 MiB: OK"
    assert "4 metrics checked, all as recorded: passed" in r.stdout


def test_each_kind_of_run_has_its_own_record(doc, tmp_path):
    full = doc.read_text()
    r = guard("--doc", doc, write_results(tmp_path / "quick", quick=True))
    assert r.returncode == 2 and "has no record of a quick run" in r.stderr and "make bench-record BENCH_QUICK=1" in r.stderr

    quick = {"alpha": [("speed", 1.5, "higher", 2.0, "x")]}
    assert guard("--record", "--doc", doc, write_results(tmp_path / "quick-record", quick, quick=True)).returncode == 0
    text = doc.read_text()
    assert text.count("<!-- recorded-ratios full") == 1 and text.count("<!-- recorded-ratios quick") == 1
    full_block = full[full.index("<!-- recorded-ratios full") : full.index("<!-- /recorded-ratios full -->")]
    assert full_block in text  # untouched
    assert "| `alpha.speed` | 1.5 | x | higher |" in text[text.index("<!-- recorded-ratios quick") :]

    r = guard("--doc", doc, write_results(tmp_path / "quick2", quick, quick=True))
    assert r.returncode == 0 and line_of(r.stdout, "alpha.speed").startswith("alpha.speed: 1.5x") and "(unchanged)" in r.stdout
    assert "not run" not in r.stdout  # beta has no quick record

    mixed = write_results(tmp_path / "mixed")
    write_results(mixed, {"gamma": [("speed", 1.0, "higher", None, "x")]}, quick=True)
    r = guard("--doc", doc, mixed)
    assert r.returncode == 2 and "mix full and quick" in r.stderr


def test_recording_again_replaces_the_record(doc, tmp_path):
    r = guard("--record", "--doc", doc, write_results(tmp_path / "new", {"alpha": [("speed", 3.25, "higher", 2.0, "x")]}))
    assert r.returncode == 0 and "no longer recorded (not in this run): alpha.time, beta.rss, beta.seconds" in r.stdout
    text = doc.read_text()
    assert text.count("<!-- recorded-ratios full") == 1 and "| `alpha.speed` | 3.25 |" in text and "alpha.time" not in text


def test_the_full_record_stands_before_the_quick_one(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    assert guard("--record", "--doc", doc, write_results(tmp_path / "quick", quick=True)).returncode == 0
    assert guard("--record", "--doc", doc, write_results(tmp_path / "full")).returncode == 0
    text = doc.read_text()
    assert text.index("How to read") < text.index("<!-- recorded-ratios full") < text.index("<!-- recorded-ratios quick")
    assert text.index("<!-- /recorded-ratios quick -->") < text.index("## Later section")


@pytest.mark.parametrize("metric, factor", [("alpha.speed", 0.7), ("alpha.time", 1.3), ("beta.rss", 1.3)])
def test_a_30_percent_regression_fails_and_names_the_metric(doc, tmp_path, metric, factor):
    r = guard("--doc", doc, write_results(tmp_path / "run", changed(metric, factor)))
    assert r.returncode == 1, r.stdout
    line = line_of(r.stdout, metric)
    assert "(30% worse)" in line and "REGRESSED" in line, line
    others = [m for m in ("alpha.speed", "alpha.time", "beta.rss", "beta.seconds") if m != metric]
    assert all(line_of(r.stdout, m).endswith(": OK") for m in others)
    assert "1 regressed" in r.stdout and "FAILED" in r.stdout


@pytest.mark.parametrize("metric, factor", [("alpha.speed", 0.8), ("alpha.time", 1.2), ("alpha.speed", 1.5), ("alpha.time", 0.5)])
def test_a_20_percent_change_either_way_passes(doc, tmp_path, metric, factor):
    r = guard("--doc", doc, write_results(tmp_path / "run", changed(metric, factor)))
    assert r.returncode == 0, r.stdout
    line = line_of(r.stdout, metric)
    assert re.search(r"\((20|50)% (worse|better)\)", line) and line.endswith(": OK"), line


def test_short_of_goal_is_reported_but_fails_only_if_it_regressed(doc, tmp_path):
    r = guard("--doc", doc, write_results(tmp_path / "run", changed("alpha.speed", 0.78)))  # 1.95 < goal 2, 22 % worse
    assert r.returncode == 0
    assert line_of(r.stdout, "alpha.speed").endswith("goal >= 2x: OK, short of goal")
    r = guard("--doc", doc, write_results(tmp_path / "run2", changed("alpha.time", 1.5)))  # 0.6 > goal 0.5, 50 % worse
    assert r.returncode == 1
    assert line_of(r.stdout, "alpha.time").endswith("goal <= 0.5x: REGRESSED, short of goal")


def test_a_missing_metric_is_reported_and_fails(doc, tmp_path):
    run = {"alpha": [("speed", 2.5, "higher", 2.0, "x"), ("renamed", 0.4, "lower", 0.5, "x")]}  # alpha.time is gone
    r = guard("--doc", doc, write_results(tmp_path / "run", run))
    assert r.returncode == 1
    assert line_of(r.stdout, "alpha.time").startswith("alpha.time: MISSING: recorded, but bench/alpha.py no longer reports it")
    assert line_of(r.stdout, "alpha.renamed").endswith("not recorded, goal <= 0.5x: NEW")
    assert "not run (their recorded metrics are not checked): beta (2)" in r.stdout  # beta did not run: not a failure
    assert "1 missing" in r.stdout


def test_a_script_not_run_is_listed_not_failed(doc, tmp_path):
    r = guard("--doc", doc, write_results(tmp_path / "run", {"alpha": RUN["alpha"]}) / "alpha.json")
    assert r.returncode == 0, r.stdout
    assert "not run (their recorded metrics are not checked): beta (2)" in r.stdout


def test_a_changed_direction_fails(doc, tmp_path):
    run = {**RUN, "alpha": [("speed", 2.5, "lower", None, "x"), RUN["alpha"][1]]}
    r = guard("--doc", doc, write_results(tmp_path / "run", run))
    assert r.returncode == 1 and "CHANGED" in line_of(r.stdout, "alpha.speed")


def test_unreadable_inputs_exit_2(doc, tmp_path):
    doc.write_text(doc.read_text().replace("| `alpha.time` | 0.4 |", "| `alpha.time` | fast |"))
    r = guard("--doc", doc, write_results(tmp_path / "run"))
    assert r.returncode == 2 and "alpha.time" in r.stderr and "cannot be read" in r.stderr
    (tmp_path / "empty").mkdir()
    r = guard("--doc", doc, tmp_path / "empty")
    assert r.returncode == 2 and "no results" in r.stderr
    (tmp_path / "junk.json").write_text('{"not": "ours"}')
    r = guard("--doc", doc, tmp_path / "junk.json")
    assert r.returncode == 2 and "not a bench script's --json file" in r.stderr


def test_a_real_bench_script_feeds_the_guard(tmp_path):
    """bench/cipher_throughput.py on a few images: its --json file is recorded and checked."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    out = tmp_path / "run" / "cipher_throughput.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "cipher_throughput.py"), "--n", "256", "--photos", "2", "--json", str(out)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    assert guard("--record", "--doc", doc, out).returncode == 0
    assert "| `cipher_throughput.pe_dataset_key_speed` |" in doc.read_text()
    r = guard("--doc", doc, out)
    assert r.returncode == 0, r.stdout
    assert "cipher_throughput.pe_dataset_key_speed:" in r.stdout and "higher is better" in r.stdout
