"""The recipe record (`python -m experiments record`, docs/results.md): a finished cell is kept
in the repository's measurements (docs/record.jsonl) and outlives its run directory, a kept
cell is not run again, and the `before` cells run the old commit's code on datasets the old
commit's ppencrypt wrote."""

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from experiments import record as rec
from experiments.cli import cli as harness
from experiments.commands import Runner, launcher
from experiments.measurements import Measurement, Store
from ppencrypt.formats.manifest import VERSION
from pptrain.metrics import write_metrics

REPO = Path(__file__).resolve().parents[1]
CELL = rec.Cell("after", "8k", "pe-image", 3)


def invoke(*args, code=0):
    result = CliRunner().invoke(harness, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def finish(lay: rec.Layout, cell: rec.Cell, accs=(0.5, 0.6, 0.8), losses=(1.0, 3.5, 0.5)) -> None:
    """A run directory holding every epoch of ``cell``, as pptrain writes metrics.jsonl."""
    lay.run(cell).mkdir(parents=True)
    write_metrics(lay.run(cell) / "metrics.jsonl", [epoch_metrics(e, a, v) for e, (a, v) in enumerate(zip(accs, losses))])


def epoch_metrics(e: int, acc: float, loss: float) -> dict:
    """One epoch's record, every field pptrain's metrics.jsonl has (pptrain.metrics.FIELDS)."""
    return {"epoch": e + 1, "lr": 0.1, "train_loss": loss, "train_acc": acc, "test_loss": loss, "test_acc": acc,
            "images_per_s": 1000.0, "seconds": 10.0}  # fmt: skip


@pytest.fixture
def record_dirs(tmp_path):
    work, store = tmp_path / "w", tmp_path / "record.jsonl"
    args = ("--work", work, "--key", tmp_path / "k.key", "--before", tmp_path / "old", "--store", store)
    return rec.Layout(work=work, key=str(tmp_path / "k.key"), before=str(tmp_path / "old"), store=Store(store)), args


def test_a_finished_cell_is_kept_and_outlives_its_run_directory(record_dirs):
    lay, args = record_dirs
    finish(lay, CELL)
    listed = invoke("record", "--list", "--cells", CELL.id, *args)
    assert f"{lay.store.path}: kept {CELL.id}" in listed.stderr and listed.stdout.startswith(f"done  {rec.shown(CELL, lay)}")
    kept = lay.store.load()[CELL.id]
    assert kept.test_acc == (0.5, 0.6, 0.8) and kept.test_loss == (1.0, 3.5, 0.5) and kept.seconds == 30.0
    assert kept.command == rec.shown(CELL, lay) and not kept.rounded

    shutil.rmtree(lay.work)  # the scratch directory is gone (a new machine)
    text = invoke("record", *args).stdout
    assert "| 8,000 | 3 | pe, image keys | not yet measured | not yet measured | **80.00** (loss ×3.5) |" in text
    assert f"| `{CELL.id}` | 50.0, 60.0, 80.0 | 1.00, 3.50, 0.50 | 30 s |" in text and rec.shown(CELL, lay) in text
    assert invoke("record", "--list", "--cells", CELL.id, *args).stdout.startswith("done  ")
    assert "kept" not in invoke("record", "--list", "--cells", CELL.id, *args).stderr  # kept once


def test_a_kept_line_is_not_rewritten_from_another_work_directory(record_dirs, tmp_path):
    """The same run directory seen through another --work shows another command: the line stays."""
    lay, args = record_dirs
    finish(lay, CELL)
    invoke("record", "--list", *args)
    kept = lay.store.path.read_bytes()
    elsewhere = tmp_path / "elsewhere"
    shutil.move(lay.work, elsewhere)
    listed = invoke("record", "--list", "--cells", CELL.id, *args[2:], "--work", elsewhere)
    assert listed.stdout.startswith("done  ") and "kept" not in listed.stderr
    assert lay.store.path.read_bytes() == kept


def test_a_kept_cell_is_not_run_again(record_dirs):
    lay, args = record_dirs
    finish(lay, CELL)
    invoke("record", "--list", *args)
    shutil.rmtree(lay.work)
    before = lay.store.path.read_bytes()
    ran = invoke("record", "--run", "--cells", CELL.id, *args)
    # nothing prepared (no key made, no subset written) and nothing trained
    assert "$ " not in ran.stderr and not Path(lay.key).exists() and not lay.work.exists()
    assert lay.store.path.read_bytes() == before


def test_a_rerun_cell_replaces_its_line_and_lines_keep_the_records_order(tmp_path):
    store = Store(tmp_path / "record.jsonl")
    order = [c.id for c in rec.all_cells()]
    late, early = (Measurement(cell=c, command=f"pptrain {c}", test_acc=(0.9,), test_loss=(0.3,), seconds=5.0)
                   for c in ("after-60k-plain-e10", "after-8k-plain-e3"))
    assert store.save(late, order) and store.save(early, order)
    assert [json.loads(t)["cell"] for t in store.path.read_text().splitlines()] == [early.cell, late.cell]
    assert not store.save(early, order)  # the same outcome again: nothing to write
    again = Measurement(cell=early.cell, command=early.command, test_acc=(0.91,), test_loss=(0.29,), seconds=6.0)
    assert store.save(again, order) and store.load() == {early.cell: again, late.cell: late}
    assert store.path.stat().st_mode & 0o777 == 0o644 and [p.name for p in tmp_path.iterdir()] == ["record.jsonl"]


def test_a_malformed_store_line_is_named_and_exits_1(record_dirs):
    lay, args = record_dirs
    good = Measurement(cell=CELL.id, command="pptrain", test_acc=(0.5,), test_loss=(1.0,), seconds=1.0).line()
    lay.store.path.write_text(good + "\n" + '{"cell": "x", "test_acc": [0.5]}\n')
    out = invoke("record", "--list", *args, code=1).output
    assert out == f"Error: {lay.store.path}:2: not a record measurement (KeyError: 'command')\n"
    lay.store.path.write_text('{"cell": "x", "command": "c", "test_acc": [0.5, 0.6], "test_loss": [1.0], "seconds": 1}\n')
    assert invoke("record", "--list", *args, code=1).output == f"Error: {lay.store.path}:1: x has 2 accuracies and 1 losses\n"


def test_before_cells_run_the_old_code_on_datasets_the_old_ppencrypt_wrote(record_dirs, fmnist_dir, tmp_path):
    """The old commit reads manifest version 1 only: its cells' datasets are its own ppencrypt's.
    Its packages were named pipeline and trainer: its cells run its own entry modules, with its
    checkout first on PYTHONPATH (this environment's console scripts import ppencrypt and pptrain)."""
    lay, _ = record_dirs
    before = rec.Cell("before", "8k", "plain", 30)
    assert lay.data(before) == lay.work / f"data-{rec.BEFORE}" / "fm8k-plain" and lay.data(CELL).parent == lay.work / "data"
    made = dict(rec.preparation([before, rec.Cell("after", "8k", "plain", 30)], lay))
    old, new = made[lay.data(before)], made[lay.work / "data" / "fm8k-plain"]
    assert old.code.path == lay.before and new.code is None and rec.training(before, lay).code.path == lay.before
    python = shlex.quote(launcher("experiments")[0])  # this environment's interpreter, as shown
    assert old.shown.startswith(f"PYTHONPATH={lay.before} {python} -m pipeline.cli dataset ")
    assert new.shown.startswith(f"{shlex.join(launcher('ppencrypt'))} dataset ")
    assert rec.shown(before, lay).startswith(f"PYTHONPATH={lay.before} OMP_NUM_THREADS=1 {python} -m trainer.cli ")

    if subprocess.run(["git", "-C", REPO, "cat-file", "-e", f"{rec.BEFORE}^{{commit}}"], capture_output=True).returncode:
        pytest.skip(f"commit {rec.BEFORE} is not in this clone")
    old = Path(lay.before)
    old.mkdir()
    archive = subprocess.run(["git", "-C", REPO, "archive", rec.BEFORE, "pipeline"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
    for code, version in ((lay.code(before), 1), (None, VERSION)):
        out = tmp_path / f"out-{version}"
        cmd = rec.command("ppencrypt", "dataset", fmnist_dir, out, "--method", "plain", "--quiet", code=code)
        Runner(log=lambda line: None)(cmd)
        assert json.loads((out / "manifest.json").read_text())["version"] == version
