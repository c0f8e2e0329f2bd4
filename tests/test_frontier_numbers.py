"""Issue 25, part 3: the frontier's numbers said where users choose a method. One source of
truth — the cells kept in docs/frontier.jsonl — reaches ppencrypt's package data
(ppencrypt/frontier.json), ``ppencrypt dataset --help`` and README.md's method table; each is
checked against the kept cells here, the help also without the package data."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ppencrypt

from experiments import frontier as fr
from experiments.cli import cli as harness
from ppencrypt import frontier as numbers

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "docs" / "frontier.jsonl"
PACKAGE = ROOT / "pipeline" / "ppencrypt" / numbers.FILE
README = ROOT / "README.md"
WORDS = {"image": "key per image", "dataset": "dataset key", None: "no key"}


def shipped() -> dict:
    return json.loads(PACKAGE.read_text(encoding="utf-8"))


def kept() -> dict[str, fr.Outcome]:
    """The cells docs/frontier.jsonl keeps at the budget the package ships."""
    budget = shipped()["budget"]
    lines = [line for line in STORE.read_text(encoding="utf-8").splitlines() if line.strip()]
    found = [fr.Outcome.parse(t, f"{STORE}:{i}") for i, t in enumerate(lines, 1)]
    return {o.cell: o for o in found if o.budget == budget}


def said(o: fr.Outcome) -> str:
    """The phrase for a kept cell, formatted here from the store, not by the module under test;
    chance is the plain cell's, one figure for the page (a dataset-scope cell scores the images
    after its 8 known pairs, whose largest class share differs in the third digit)."""
    _, best = o.best()
    chance = kept()["plain"].chance
    return f"acc {100 * o.accuracy:.1f} %, recognised {100 * best.recognition:.1f} % (chance {100 * chance:.1f} %)"


def test_the_package_ships_the_kept_cells():
    """ppencrypt/frontier.json is what the frontier writes from docs/frontier.jsonl at its budget:
    a cell measured again (or a budget changed) without rewriting it fails here."""
    lay = fr.Layout(budget=fr.Budget(**shipped()["budget"]), kept=STORE)
    assert shipped() == fr.shipped(lay).to_dict()
    cells = kept()
    assert len(cells) >= 4 and {f"{p['method']}-{p['scope']}" if p["scope"] else p["method"] for p in shipped()["points"]} == set(cells)


def test_dataset_help_shows_every_kept_cell_and_its_budget():
    r = ppencrypt("dataset", "--help")
    assert r.exit_code == 0, r.output
    help_text = " ".join(r.stdout.split())  # click wraps the paragraph; the cells' lines are kept whole
    assert "Measured on Fashion-MNIST" in help_text and " ".join(fr.Budget(**shipped()["budget"]).shown().split()) in help_text
    lines = r.stdout.splitlines()
    cells = kept()
    for c in fr.all_cells():
        line = next(line for line in lines if line.strip().startswith(f"{c.method}, {WORDS[c.scope]} "))
        expected = f"{said(cells[c.id])}, by {cells[c.id].best()[0]}" if c.id in cells else "not measured"
        assert line.strip().endswith(expected), (line, expected)
    assert sum("not measured" not in line for line in lines if line.startswith("    ") and " acc " in line) == len(cells)


@pytest.mark.parametrize("file", ["absent.json", "__init__.py"])  # none, and a file that is not the numbers
def test_dataset_help_without_the_numbers_says_not_measured(monkeypatch, file):
    monkeypatch.setattr(numbers, "FILE", file)
    r = ppencrypt("dataset", "--help")
    assert r.exit_code == 0, r.output
    assert "this installation has no ppencrypt/frontier.json" in " ".join(r.stdout.split())
    cells = [line for line in r.stdout.splitlines() if line.strip().startswith(("pe, ", "plain, ", "bsm, "))]
    assert len(cells) == 5 and all(line.strip().endswith("not measured") for line in cells)
    assert " acc " not in r.stdout


def readme_section(text: str) -> str:
    return text.split(fr.METHODS.begin + "\n", 1)[1].split(fr.METHODS.end, 1)[0]


def test_readme_method_table_is_the_kept_cells():
    """README.md's method table is generated from the same numbers: each kept cell's row says what
    the store says, and the section is what the frontier would write now."""
    section = readme_section(README.read_text(encoding="utf-8"))
    assert section == numbers.method_table(numbers.load())
    rows = {tuple(c.strip(" `") for c in line.split("|")[1:3]): line for line in section.splitlines() if line.startswith("| `") and "--method" not in line}
    for cell_id, o in kept().items():
        method, _, scope = cell_id.partition("-")
        row = rows[(method, scope or "—")]
        assert said(o) in row and f"`{o.best()[0]}`" in row
    assert len(rows) == len(fr.all_cells())


def test_the_frontier_writes_the_numbers_and_the_readme_table(tmp_path):
    """``experiments frontier --numbers --readme`` from a store whose cells are all kept: nothing
    is trained, and it writes what the package and README.md hold."""
    store = tmp_path / "frontier.jsonl"
    store.write_text(STORE.read_text(encoding="utf-8"), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n\n{fr.METHODS.begin}\nstale\n{fr.METHODS.end}\n\nafter\n", encoding="utf-8")
    b = fr.Budget(**shipped()["budget"])
    (tmp_path / "w" / "src").mkdir(parents=True)  # a subset (if the budget has one) is made already: nothing to prepare
    subsets = [*(("--train-subset", b.train) if b.train else ()), *(("--test-subset", b.test) if b.test else ())]
    args = ["frontier", "--cells", ",".join(kept()), "--epochs", b.epochs, "--width", b.width, *subsets,
            "--audit-n", b.audit_n, "--public-n", b.public_n, "--train-steps", b.train_steps,
            "--work", tmp_path / "w", "--key", tmp_path / "k.key", "--store", store, "--numbers", tmp_path / "n.json", "--readme", readme]  # fmt: skip
    r = CliRunner().invoke(harness, [str(a) for a in args])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "$ " not in r.stderr and not (tmp_path / "k.key").exists()  # nothing ran
    assert json.loads((tmp_path / "n.json").read_text(encoding="utf-8")) == shipped()
    text = readme.read_text(encoding="utf-8")
    assert readme_section(text) == readme_section(README.read_text(encoding="utf-8")) and "stale" not in text
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert asdict(b) == shipped()["budget"]
