"""The frontier (`python -m experiments frontier`, issue 25): every method x key scope of the
registry is a cell; a tiny budget trains and audits real Fashion-MNIST images through the real
CLIs, writes the table (with every command), frontier.png and the doc section; a kept cell is
not run again at the same budget, and is not taken for another budget."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from experiments import frontier as fr
from experiments.cli import cli as harness
from experiments.staging import FMNIST

CELLS = "plain,pe-image,bsm-image"
TINY = ("--smoke", "--train-subset", "200", "--test-subset", "30", "--audit-n", "20", "--public-n", "100", "--train-steps", "3")


def invoke(*args, code=0):
    result = CliRunner().invoke(harness, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_every_registered_method_and_scope_is_a_cell():
    ids = [c.id for c in fr.all_cells()]
    assert ids.count("plain") == 1 and "plain-dataset" not in ids
    for m in ("pe", "np", "le", "ele", "etc", "bsm"):
        assert f"{m}-dataset" in ids and f"{m}-image" in ids
    assert [c.id for c in fr.select(("bsm-image", "plain"))] == ["plain", "bsm-image"]


def test_a_block_wise_cell_at_another_block_size(tmp_path):
    """bsm7-image: bsm with --block-size 7 (issue 25's one parameter of bsm), its own data, run
    and audit, a row of its own; not a block-wise method, or no such scope, is refused."""
    cells = fr.select(("bsm-image", "bsm7-image", "etc2-dataset"))
    assert [c.id for c in cells] == ["bsm-image", "bsm7-image", "etc2-dataset"]
    lay = fr.Layout(work=tmp_path / "w", key=str(tmp_path / "k.key"), budget=fr.SMOKE)
    made = dict(fr.preparation(cells, lay))
    assert "--block-size 7" in made[lay.data(cells[1])].shown and "--block-size" not in made[lay.data(cells[0])].shown
    assert lay.data(cells[1]) != lay.data(cells[0]) and "--augment none" in fr.training(cells[1], lay).shown
    assert "| `bsm` 7×7 | image | not yet measured" in fr.table(lay, cells)
    for bad in ("pe7-image", "bsm7-nothing", "bsm-7-image", "bsm0-image"):
        with pytest.raises(fr.ExperimentError, match="METHOD<B>-SCOPE"):
            fr.select((bad,))


def test_a_dataset_key_is_audited_with_the_pairs_an_attacker_may_hold(tmp_path):
    """One key for every image: each image the attacker knows is a pair against all of them, so
    a dataset-scope cell's known-plaintext attack gets 8 (one left ele looking private); under a
    key per image another image's pair tells nothing, and the audit's default stays."""
    lay = fr.Layout(work=tmp_path / "w", key=str(tmp_path / "k.key"), budget=fr.FULL)
    for cell in fr.all_cells():
        shown = fr.auditing(cell, lay).shown
        assert (f" -k {fr.DATASET_KNOWN} " in shown) == (cell.scope == "dataset"), shown
    assert fr.DATASET_KNOWN == 8


@pytest.mark.skipif(not Path(FMNIST).exists(), reason="Fashion-MNIST is not installed")
def test_smoke_frontier_runs_keeps_and_resumes(tmp_path):
    doc = tmp_path / "privacy.md"
    doc.write_text("# Privacy\n\n## The privacy–accuracy frontier\n\nprose\n\n## Results\n", encoding="utf-8")
    store = tmp_path / "kept" / "frontier.jsonl"
    args = ("frontier", "--cells", CELLS, *TINY, "--work", tmp_path / "w", "--key", tmp_path / "k.key", "--store", store, "--in-process")
    first = invoke(*args, "--doc", doc)
    text = first.stdout
    for cell, method, scope in (("plain", "plain", "—"), ("pe-image", "pe", "image"), ("bsm-image", "bsm", "image")):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{method}` | {scope} |"))
        accuracy, recognition = row.split("|")[3], row.split("|")[7]
        assert 0.0 <= float(accuracy.strip(" *")) <= 100.0 and 0.0 <= float(recognition.strip(" *")) <= 100.0
        assert f"--run-dir {tmp_path / 'w' / 'runs' / cell}" in text and f"-o {tmp_path / 'w' / 'audits' / cell}" in text
    assert "| `plain` | — |" in text and "`identity`" in text  # plain: the best attack is the image itself
    assert "Plain images recognised:" in text and "chance" in text
    kept = [json.loads(line) for line in store.read_text().splitlines()]
    assert sorted(k["cell"] for k in kept) == sorted(CELLS.split(","))
    bsm = next(k for k in kept if k["cell"] == "bsm-image")
    assert {"jigsaw", "known-plaintext", "learned", "learned-features", "identity"} <= set(bsm["attacks"])  # every attack that applies ran
    with Image.open(tmp_path / "w" / "frontier.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    written = doc.read_text(encoding="utf-8")
    assert written.index("## The privacy–accuracy frontier") < written.index("<!-- frontier:begin -->") < written.index("## Results")
    assert "![accuracy against" in written and (tmp_path / "frontier.png").exists()

    # an attack added to the audit: the kept cell is audited again, not trained again
    before = {k["cell"]: k for k in kept}
    report = tmp_path / "w" / "audits" / "bsm-image.json"
    report.unlink()
    redone = invoke(*args[:2], "bsm-image", *args[3:], "--audit-again")
    assert "ppencrypt audit" in redone.stderr and "pptrain" not in redone.stderr and report.is_file()
    after = {k["cell"]: k for k in map(json.loads, store.read_text().splitlines())}
    assert sorted(after) == sorted(before)
    assert after["bsm-image"]["train_seconds"] == before["bsm-image"]["train_seconds"]
    assert after["bsm-image"]["accuracy"] == before["bsm-image"]["accuracy"]
    assert after["pe-image"] == before["pe-image"]

    shutil.rmtree(tmp_path / "w" / "runs")  # scratch lost: the store still holds every cell
    lost = invoke(*args, "--audit-again", code=1)  # nothing to audit again: one line, nothing run
    assert "no trained run of kept cell" in lost.output and "$ " not in lost.output
    again = invoke(*args)  # resumed: everything kept, nothing runs
    assert "$ " not in again.stderr and again.stdout == text
    listed = invoke(*args, "--list").stdout.splitlines()
    assert len(listed) == 3 and all(line.startswith("done  ") for line in listed)
    other = invoke(*args, "--epochs", "2", "--list").stdout.splitlines()  # another budget: nothing kept for it
    assert all(line.startswith("todo  ") for line in other)


def test_usage_errors(tmp_path):
    invoke("frontier", "--cells", "rot13-image", "--work", tmp_path, "--list", code=1)
    invoke("frontier", "--smoke", "--audit-n", "60", "--work", tmp_path, "--list", code=2)
