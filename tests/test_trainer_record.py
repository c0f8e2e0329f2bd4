"""config.json as a typed record (trainer/pptrain/record.py) and Settings as the one source of the
options' defaults."""

from __future__ import annotations

import json
from dataclasses import fields

import click
import pytest

from test_trainer_cli import TINY, run
from pptrain.cli import cli as pptrain
from pptrain.record import RunRecord
from pptrain.settings import Settings, default, help_of
from trainer_fixtures import encrypt, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def one_epoch(shapes_pe, tmp_path_factory):
    r = tmp_path_factory.mktemp("record") / "r"
    run(shapes_pe, *TINY, "--epochs", 1, "--run-dir", r)  # unaugmented: the fast recipe's schedule, 3 epochs or fewer
    return r


def test_config_json_round_trips_through_the_record(one_epoch, shapes_pe):
    text = (one_epoch / "config.json").read_text()
    record = RunRecord.from_json(text, "config.json")
    assert record.to_json() == text
    assert record.settings.width == 4 and record.settings.epochs == 1 and record.settings.lr is None
    assert record.resolved.lr == pytest.approx(0.4 * (16 / 512) ** 0.5) and record.resolved.augment == [] and record.resolved.adapt == "invariant"
    assert record.dataset.method == "pe" and record.dataset.shape == [28, 28, 1] and record.model.adapt == "invariant"
    assert record.model.adapt_group == "negations" and record.model.stem == "cifar" and record.resolved.batch_size == 16


@pytest.mark.parametrize("section, field, value, message", [
    ("model", "width", "wide", "model: field 'width' has the wrong type"),
    ("model", "adapt", 3, "model: field 'adapt' has the wrong type"),
    ("dataset", "shape", [28, "28", 1], "dataset: field 'shape' has the wrong type"),
    ("dataset", "classes", None, "dataset: field 'classes' has the wrong type"),
    ("settings", "epochs", "ten", "settings: field 'epochs' has the wrong type"),
    ("resolved", "lr", True, "resolved: field 'lr' has the wrong type"),
])  # fmt: skip
def test_a_damaged_record_is_refused_in_one_line(one_epoch, shapes_pe, tmp_path, section, field, value, message):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    doc = json.loads((one_epoch / "config.json").read_text())
    doc[section][field] = value
    (damaged / "config.json").write_text(json.dumps(doc))
    (damaged / "checkpoint.pt").write_bytes((one_epoch / "checkpoint.pt").read_bytes())
    r = run("eval", damaged, shapes_pe, code=1)
    assert r.output == f"Error: {damaged / 'config.json'}: {message}\n"


def test_a_record_missing_a_field_is_refused(one_epoch, shapes_pe, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    doc = json.loads((one_epoch / "config.json").read_text())
    del doc["dataset"]["classes"]
    (damaged / "config.json").write_text(json.dumps(doc))
    r = run("eval", damaged, shapes_pe, code=1)
    assert r.output == f"Error: {damaged / 'config.json'}: dataset: missing field 'classes'\n"


def test_the_train_options_take_their_defaults_and_help_from_settings():
    train = pptrain.commands["train"]
    options = {p.name: p for p in train.params if isinstance(p, click.Option)}
    # Every field is a parameter of its own name (Settings.from_options takes them as they come).
    assert {f.name for f in fields(Settings)} <= {p.name for p in train.params}
    covered = 0
    for f in fields(Settings):
        if f.name in ("data", "augment"):  # OUT is an argument; --augment parses a list
            continue
        option = options[f.name]
        expected = None if f.name == "run_dir" else default(f.name)  # runs/<name of OUT> is derived
        assert option.default == expected, f.name
        assert help_of(f.name) in (option.help or ""), f.name
        covered += 1
    assert covered == len(fields(Settings)) - 2
    assert help_of("augment") in options["augment"].help


def version1(doc: dict) -> dict:
    """A config.json as pptrain wrote it before version 2: no stem, group, copies, scaled recipe."""
    doc = json.loads(json.dumps(doc))
    doc["version"] = 1
    for section, names in (("model", ("stem", "adapt_group")), ("dataset", ("copies",)),
                           ("resolved", ("warmup_steps", "scaled", "calibrate", "augment_from", "augment_until")),
                           ("settings", ("augment_from", "augment_until", "stem"))):  # fmt: skip
        for name in names:
            del doc[section][name]
    doc["resolved"]["warmup"] = 0.05
    doc["settings"]["augment"] = ["crop", "flip"]
    return doc


def test_older_run_directories_still_evaluate_but_do_not_resume(shapes_pe, tmp_path):
    one_epoch, old = tmp_path / "new", tmp_path / "old"  # version 1 knew [P]'s network, not the invariant one
    run(shapes_pe, *TINY, "--epochs", 1, "--adapt", "pixel", "--run-dir", one_epoch)
    old.mkdir()
    doc = json.loads((one_epoch / "config.json").read_text())
    assert doc["version"] == 3 and doc["model"]["stem"] == "cifar"
    (old / "config.json").write_text(json.dumps(version1(doc)))
    (old / "checkpoint.pt").write_bytes((one_epoch / "checkpoint.pt").read_bytes())
    (old / "metrics.jsonl").write_bytes((one_epoch / "metrics.jsonl").read_bytes())
    record = RunRecord.from_json((old / "config.json").read_text(), "c")
    assert (record.version, record.model.stem, record.dataset.copies, record.resolved.warmup) == (1, "cifar", 1, 0.05)
    got = json.loads(run("eval", old, shapes_pe, "--json").stdout)
    assert got["accuracy"] == pytest.approx(json.loads((one_epoch / "metrics.jsonl").read_text().splitlines()[-1])["test_acc"])
    r = run(shapes_pe, "--resume", "--epochs", 2, "--run-dir", old, code=1)
    assert r.output == (f"Error: {old / 'config.json'}: written by an older pptrain (run record version 1), whose defaults "
                        "differed; pptrain eval and predict read it, but resuming would not "
                        "continue it\n")  # fmt: skip
    two = json.loads(json.dumps(doc))  # version 2: no augmentation schedule; its default was every epoch
    two["version"] = 2
    del two["resolved"]["augment_until"], two["settings"]["augment_until"]
    (old / "config.json").write_text(json.dumps(two))
    assert RunRecord.from_json(json.dumps(two), "c").resolved.augment_until is None
    assert json.loads(run("eval", old, shapes_pe, "--json").stdout)["accuracy"] == pytest.approx(got["accuracy"])
    assert "(run record version 2), whose defaults differed" in run(shapes_pe, "--resume", "--epochs", 2, "--run-dir", old, code=1).output
    doc["version"] = 4
    (old / "config.json").write_text(json.dumps(doc))
    assert run("eval", old, shapes_pe, code=1).output == f"Error: {old / 'config.json'}: version 4, this pptrain reads 1, 2 and 3\n"
