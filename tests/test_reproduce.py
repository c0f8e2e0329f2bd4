"""The reproduction harness (experiments/, `make reproduce-smoke`) end to end on a tiny real
dataset: every row of [P]'s Tables 2 and 3 and the image-scope rows trains, is evaluated and
lands in the tables; the client's augmentation is a crop + flip of the plain images; the key
stays out of every output."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from experiments.cli import cli as harness
from experiments.report import ANCHOR, render, section
from experiments.rows import BEYOND, BY_ID, ROWS, TABLE2, TABLE3
from experiments.sections import update_doc
from ppencrypt.formats import open_dataset
from ppencrypt.keys import load_key, open_keyed
from test_experiments_record import finish
from trainer_fixtures import write_three_shapes


def invoke(*args, code=0):
    result = CliRunner().invoke(harness, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def shapes_src(tmp_path_factory):
    """The three-shapes images (tests/trainer_fixtures.py): 38 train (each twice), 19 test."""
    return write_three_shapes(tmp_path_factory.mktemp("repro-src") / "src", repeat=2)


@pytest.fixture(scope="module")
def smoke(shapes_src, tmp_path_factory):
    """`make reproduce-smoke` in-process, on a budget smaller still: 2 steps of 16 per row."""
    root = tmp_path_factory.mktemp("repro")
    doc = root / "results.md"
    doc.write_text(f"# Accuracy record\n\nKept.\n\n{ANCHOR}\n\n## Older record\n\nAlso kept.\n")
    work, key = root / "work", root / "keys" / "k.key"
    out = invoke("reproduce", shapes_src, "--smoke", "--in-process", "--batch-size", 16, "--workers", 1,
                 "--work", work, "--key", key, "--doc", doc)  # fmt: skip
    record = json.loads((work / "results.json").read_text())
    return {"out": out.stdout, "record": record, "work": work, "key": key, "doc": doc, "src": shapes_src}


def test_every_row_trains_and_is_evaluated(smoke):
    rows = {r["id"]: r for r in smoke["record"]["rows"]}
    assert list(rows) == [r.id for r in ROWS]
    for rid, r in rows.items():
        assert r["error"] is None, r
        assert 0 <= r["accuracy"] <= 100 and r["accuracy"] == pytest.approx(r["last_epoch_acc"])
        assert r["adapt_resolved"] == BY_ID[rid].adapt and r["test_images"] == 19
        assert f"--adapt {BY_ID[rid].adapt}" in r["train_command"]
        client = BY_ID[rid].where == "client"
        assert ("--augment none" if client else "--augment crop,flip") in r["train_command"]
        assert r["train_images"] == 38  # the smoke budget's 1 epoch: one augmented copy in the client
    c = smoke["record"]["config"]
    assert (c["epochs"], c["width"], c["batch_size"], c["client_copies"]) == (1, 4, 16, 1)


def cells(table: str, first: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_the_tables_hold_every_row_next_to_the_papers_numbers(smoke):
    text, rows = smoke["out"], {r["id"]: r for r in smoke["record"]["rows"]}
    for rid in TABLE2 + BEYOND:
        row = cells(text, f"`{rid}`")
        assert row[3] == f"**{rows[rid]['accuracy']:.2f}**"
        if rid in TABLE2:
            assert row[4] == (f"{BY_ID[rid].paper:.2f}" if BY_ID[rid].paper else "—")
    for client, cloud in TABLE3:
        row = [r for r in text.splitlines() if r.startswith(f"| {BY_ID[client].label} | ") and r.count("**") == 4]
        assert len(row) == 1
        got = [c.strip() for c in row[0].strip("|").split("|")]
        assert got[2:6] == [f"**{rows[client]['accuracy']:.2f}**", f"**{rows[cloud]['accuracy']:.2f}**",
                            f"{BY_ID[client].paper:.2f}", f"{BY_ID[cloud].paper:.2f}"]  # fmt: skip
    for r in rows.values():
        assert r["train_command"] in text and r["eval_command"] in text
    assert "| — | pixel-based cipher of Gaata & Hantoosh (chaotic map + RC4) | — | not implemented | 58.59 | — |" in text
    assert "- **budget**: 1 epochs of the `fast` recipe, batch 16, width 4" in text
    assert "- **device**: CPU, " in text and " cores; Python " in text


def test_the_doc_section_is_written_once_and_the_rest_kept(smoke):
    doc = smoke["doc"]
    update_doc(doc, section(smoke["record"]), render(smoke["record"]))  # a second run replaces its section
    text = doc.read_text()
    assert text.startswith("# Accuracy record\n\nKept.\n\n" + ANCHOR + "\n\n<!-- reproduce:")
    assert text.count("<!-- reproduce:") == 3 and text.count("#### Table 2") == 1
    assert text.endswith("<!-- reproduce:src-cpu:end -->\n\n## Older record\n\nAlso kept.\n")


def crops_and_flips(image: np.ndarray, pad: int, fill: int) -> list[np.ndarray]:
    """Every shift by up to ``pad`` (border ``fill``) of ``image``, mirrored or not."""
    h, w = image.shape[:2]
    big = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = big[dy : dy + h, dx : dx + w]
            out += [crop, crop[:, ::-1]]
    return out


def test_the_client_augments_plain_images_by_crop_and_flip(smoke):
    """The client rows' data: ppencrypt dataset --copies, decrypted, is the plain train split
    shifted (border 128) and flipped, image by image."""
    from test_copies import decrypt_split

    work = smoke["work"]
    plain = open_dataset(str(work / "data" / "plain")).split("train").read()
    keyed = open_keyed(str(work / "data" / "np-dataset-client"), load_key(smoke["key"]))
    assert keyed.manifest.augment.copies == 1 and "--copies 1 --pad 4 --augment-seed 0" in smoke["record"]["steps"]["data:np-dataset-client"]["command"]
    enc, augmented = decrypt_split(keyed, "train")
    assert np.array_equal(enc.labels, plain.labels) and len(augmented) == len(plain.images)
    moved = 0
    for x, a in zip(plain.images, augmented):
        assert any(np.array_equal(a, c) for c in crops_and_flips(x, 4, 128))
        moved += not np.array_equal(a, x)
    assert moved > len(augmented) * 0.9  # 1 in 162 draws is the identity


def test_client_rows_train_on_encrypted_augmented_images_and_test_on_the_same_ciphertext(smoke):
    data = smoke["work"] / "data"
    for method in ("np", "le"):
        cloud, client = open_dataset(str(data / f"{method}-dataset")), open_dataset(str(data / f"{method}-dataset-client"))
        assert cloud.manifest.cipher.key_id == client.manifest.cipher.key_id
        assert np.array_equal(cloud.split("test").read().images, client.split("test").read().images)
        assert not np.array_equal(cloud.split("train").read().images, client.split("train").read().images)


def test_the_key_stays_out_of_every_output(smoke):
    key = load_key(smoke["key"])
    assert (smoke["key"].stat().st_mode & 0o777) == 0o600 and smoke["work"] not in smoke["key"].parents
    for f in [*smoke["work"].rglob("*"), smoke["doc"]]:
        if f.is_file():
            data = f.read_bytes()
            assert key.secret not in data and key.secret.hex().encode() not in data, f


def test_a_failed_row_is_reported_and_the_others_still_run(shapes_src, tmp_path):
    r = invoke("reproduce", shapes_src, "--rows", "plain,le", "--block-size", 5, "--epochs", 1, "--width", 4, "--batch-size", 16,
               "--in-process", "--workers", 1, "--work", tmp_path / "w", "--key", tmp_path / "k.key", code=1)  # fmt: skip
    assert r.output.endswith(f"Error: 1 row(s) failed: le (see {tmp_path / 'w' / 'results.md'})\n")
    text = (tmp_path / "w" / "results.md").read_text()
    assert cells(text, "`le`")[3] == "failed" and cells(text, "`plain`")[3].startswith("**")
    assert cells(text, "`np`")[3] == "not run"
    assert "is not divisible by the block size 5" in text


def test_harness_usage_errors_exit_2_and_data_errors_exit_1(tmp_path, shapes_src):
    r = invoke("reproduce", shapes_src, "--epochs", 3, "--copies", 0, "--work", tmp_path / "w", code=2)
    assert "Invalid value for '--copies': --copies must be at least 1, not 0" in r.output
    r = invoke("reproduce", shapes_src, "--rows", "plain,nope", "--work", tmp_path / "w", code=2)
    assert "Invalid value for '--rows': unknown row 'nope' (choose from plain, np, np-adapt," in r.output
    missing = tmp_path / "none"
    assert invoke("subset", missing, tmp_path / "s", "--train", 5, code=1).output == f"Error: {missing}: no such directory\n"
    r = invoke("augment", shapes_src, tmp_path / "a", "--copies", 1, "--pad", 28, code=1)
    assert r.output == "Error: --pad 28 must be in 0..27 for 28x28 images\n"


def test_a_gpu_sized_budget_on_the_cpu_is_warned_about():
    from experiments.reproduce import Config, cpu_warning

    assert cpu_warning(Config(), cuda=False).startswith("warning: width 64 on the CPU takes hours per row")
    assert cpu_warning(Config(device="cpu"), cuda=True) is not None
    assert cpu_warning(Config(), cuda=True) is None and cpu_warning(Config(device="cuda"), cuda=False) is None
    assert cpu_warning(Config(width=8), cuda=False) is None


def test_a_colour_cifar10_folder_runs_through_the_harness(tmp_path, cifar10_dir, cifar10):
    """`make reproduce CIFAR10=path`: the staged subset keeps the RGB images (IDX N x H x W x 3),
    the client's copies too, and the colour rows train with both adaptation networks."""
    from experiments.staging import read_split

    work = tmp_path / "w"
    invoke("reproduce", cifar10_dir, "--rows", "pe-adapt,le,le-client", "--train-subset", 12, "--epochs", 1, "--width", 4,
           "--batch-size", 4, "--in-process", "--workers", 1, "--work", work, "--key", tmp_path / "k.key")  # fmt: skip
    record = json.loads((work / "results.json").read_text())
    assert record["source_name"] == "CIFAR-10" and [r["error"] for r in record["rows"]] == [None] * 3
    assert [r["test_images"] for r in record["rows"]] == [5] * 3
    images, _ = cifar10
    staged, _, classes = read_split(str(work / "plain-subset"), "train")
    assert staged.shape == (12, 32, 32, 3) and np.array_equal(staged, images[5:17])
    client = open_dataset(str(work / "data" / "le-dataset-client"))
    assert client.manifest.channels == 3 and client.manifest.augment.copies == 1 and client.manifest.splits["train"].count == 12


def test_experiments_augment_writes_the_copies_ppencrypt_encrypts(shapes_src, tmp_path):
    """`python -m experiments augment` (plain IDX) and `ppencrypt dataset --copies` share pipeline/ppencrypt/augment.py."""
    from experiments.staging import read_split
    from ppencrypt.augment import draws, shift_flip

    invoke("augment", shapes_src, tmp_path / "a", "--copies", 2, "--pad", 3, "--seed", 5)
    plain, labels, _ = read_split(str(shapes_src), "train")
    got, got_labels, _ = read_split(str(tmp_path / "a"), "train")
    expected = np.concatenate([shift_flip(plain, draws(len(plain), 3, 5, k)) for k in range(2)])
    assert np.array_equal(got, expected) and np.array_equal(got_labels, np.tile(labels, 2))


def test_the_recipe_record_renders_its_cells_from_the_run_directories(tmp_path):
    """`python -m experiments record` (docs/results.md): cells, commands, and the table read
    back from metrics.jsonl, with the largest test-loss jump."""
    from experiments import record as rec

    lay = rec.Layout(work=tmp_path / "w", key="keys/k.key", before="/tmp/before")
    cell = rec.Cell("after", "8k", "pe-image", 3)
    assert cell in rec.select(("after-8k-*",)) and all(c.variant == "after" for c in rec.select(("after-8k-*",)))
    finish(lay, cell)  # metrics.jsonl as pptrain writes it: 50, 60, 80 %; losses 1.0, 3.5, 0.5
    text = rec.tables(lay)
    assert "| 8,000 | 3 | pe, image keys | not yet measured | not yet measured | **80.00** (loss ×3.5) |" in text
    assert "| `after-8k-pe-image-e3` | 50.0, 60.0, 80.0 | 1.00, 3.50, 0.50 | 30 s |" in text
    assert rec.shown(cell, lay) in text and "--copies" not in rec.shown(cell, lay)
    copies = rec.Cell("pixel-copies", "8k", "pe-dataset", 10)
    assert copies.dataset == "fm8k-pe-dataset-copies10" and "--adapt pixel" in rec.shown(copies, lay)
    made = dict(rec.preparation([copies], lay))
    assert "--copies 10" in made[lay.data(copies)].shown and "--train 8000 --test 2000" in made[tmp_path / "w" / "src-8k"].shown
    before = rec.Cell("before", "60k", "plain", 10)
    assert rec.shown(before, lay).startswith("PYTHONPATH=/tmp/before OMP_NUM_THREADS=1 ")
    assert invoke("record", "--cells", "nothing-*", "--work", tmp_path / "w", code=2).output.endswith("no cell matches nothing-*\n")


def test_the_records_after_cells_are_the_levers_the_defaults_resolve_to(tmp_path):
    """The after cell stands for the lever its defaults amount to (not run twice): the until
    lever's last augmented epoch must be the fast recipe's, the noaug lever its short runs'."""
    from experiments import record as rec
    from pptrain.recipe import RECIPES

    fast = RECIPES["fast"]
    for size, epochs in rec.BUDGETS:
        for method in rec.METHODS:
            lever = rec.default_lever(method, epochs)
            if lever is None:
                assert fast.augment_until(epochs) not in (0, epochs * 7 // 10)
                continue
            assert lever.startswith("pixel-" if method == "plain" else "invariant-")
            if lever.endswith("-until"):
                assert fast.augment_until(epochs) == epochs * 7 // 10
            else:
                assert lever.endswith("-noaug") and fast.augment_until(epochs) == 0
            assert rec.Cell(lever, size, method, epochs) not in rec.all_cells()


def test_the_harness_modules_import_one_another_without_a_cycle():
    """Every import in experiments/, at the top or inside a function: no module reaches itself
    (the programs' click entries are named in commands.PROGRAMS, resolved when one runs)."""
    import ast
    from pathlib import Path

    import experiments

    package = Path(experiments.__file__).parent
    graph = {}
    for path in package.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                deps |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments."):
                deps.add(node.module.split(".", 1)[1])
        graph[path.stem] = {d.split(".")[0] for d in deps} & {p.stem for p in package.glob("*.py")}

    def cycle_from(start):
        todo, seen = list(graph[start]), set()
        while todo:
            m = todo.pop()
            if m == start:
                return True
            if m not in seen:
                seen.add(m)
                todo += graph[m]
        return False

    assert graph["commands"] == {"errors"}
    assert [m for m in graph if cycle_from(m)] == []


# --- the run directory is read as the server may have left it --------------------------------


def hostile_metrics(run_dir, kind: str, victim) -> str:
    """metrics.jsonl replaced as a server could; the error the harness must report."""
    path = run_dir / "metrics.jsonl"
    good = path.read_text()
    path.unlink()
    if kind == "symlink":  # to a file of metrics elsewhere: read through the link before
        victim.write_text(good)
        path.symlink_to(victim)
        return f"{path}: is a symbolic link; refusing to follow it"
    if kind == "inf":  # Python's json read 1e400 as inf: a row of "inf %" before
        path.write_text(good.replace('"test_acc": ', '"test_acc": 1e400, "was": '))
        return f"{path}:1: not valid JSON (the number 1e400 is beyond a float's range)"
    path.write_text(good + "[1]\n")  # not a record of the metrics: a traceback (TypeError) before
    return f"{path}:2: not the metrics of epoch 2 as pptrain writes them"


@pytest.mark.parametrize("kind", ["symlink", "inf", "not-a-record"])
def test_the_harness_reads_metrics_jsonl_as_the_server_may_have_left_it(shapes_src, tmp_path, kind):
    """issue 22 (hardening): reproduce read a row's metrics.jsonl with read_text and json.loads,
    through any link and whatever it held. Now it is read as pptrain reads config.json (no link
    followed, a regular file, bounded, strict JSON) and checked line by line; a bad one fails
    its row with one line naming the file, and the other rows still run."""
    from experiments.commands import Runner
    from experiments.reproduce import Config, Harness

    cfg = Config(src=str(shapes_src), work=str(tmp_path / "w"), key=str(tmp_path / "k.key"), epochs=1, width=4, batch_size=16,
                 workers=1, rows=("plain",), in_process=True)  # fmt: skip
    h = Harness(cfg, log=lambda line: None)
    expected = []

    def server_edits_after_eval(cmd):  # the run directory as the server hands it back
        done = Runner(True, lambda line: None)(cmd)
        if cmd.args[0] == "eval":
            expected.append(hostile_metrics(h.paths.run("plain"), kind, tmp_path / "elsewhere.jsonl"))
        return done

    h.run = server_edits_after_eval
    h.prepare()
    rec = h.train_row(h.rows[0])
    assert rec["error"] == expected[0] and rec["last_epoch_acc"] is None


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "too-large", "nan"])
def test_read_metrics_takes_only_what_pptrain_writes(tmp_path, kind):
    """The reader under the harness: a link to /dev/zero, a FIFO (which would block for ever),
    a file larger than any run's metrics are refused before reading; a NaN loss — what a
    diverged run logs — is read."""
    import math

    from pptrain.errors import RunDirError
    from pptrain.metrics import MAX_METRICS, read_metrics, write_metrics
    from test_experiments_record import epoch_metrics

    path = tmp_path / "metrics.jsonl"
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "too-large":
        path.write_bytes(b" " * (MAX_METRICS + 1))
    else:
        write_metrics(path, [epoch_metrics(0, 0.1, float("nan"))])
        (row,) = read_metrics(path)
        assert math.isnan(row["train_loss"]) and row["train_acc"] == 0.1
        return
    why = {"dev-zero": "is a symbolic link; refusing to follow it", "fifo": "is not a regular file",
           "too-large": f"{MAX_METRICS + 1} bytes, more than the {MAX_METRICS} a file of this kind may have"}[kind]  # fmt: skip
    with pytest.raises(RunDirError) as e:
        read_metrics(path)
    assert str(e.value) == f"{path}: {why}"


def test_the_record_refuses_a_run_directorys_bad_metrics_with_one_line(tmp_path):
    """`python -m experiments record` copies finished cells from their run directories: a
    metrics.jsonl it cannot take is one line naming it, exit 1."""
    from experiments import record as rec

    lay = rec.Layout(work=tmp_path / "w", key="keys/k.key", before="/tmp/before")
    cell = rec.Cell("after", "8k", "pe-image", 3)
    finish(lay, cell)
    path = lay.run(cell) / "metrics.jsonl"
    path.write_text(path.read_text().replace('"epoch": 2', '"epoch": 7'))
    r = invoke("record", "--cells", "after-8k-pe-image-e3", "--list", "--work", tmp_path / "w", "--store", tmp_path / "s.jsonl", code=1)
    assert r.output == f"Error: {path}:2: not the metrics of epoch 2 as pptrain writes them\n"


def test_report_reads_a_results_json_sent_back_as_hostile_input(shapes_src, tmp_path):
    """`experiments report RESULTS` renders a results.json that a GPU machine sent back: before,
    read_text and json.loads took it through any link, whatever its size, 1e400 as inf, and a
    record of another shape ended in a KeyError traceback. Now: the run directory's rules and
    one line naming the file."""
    work = tmp_path / "w"
    invoke("reproduce", shapes_src, "--rows", "plain", "--epochs", 1, "--width", 4, "--batch-size", 16, "--in-process",
           "--workers", 1, "--work", work, "--key", tmp_path / "k.key")  # fmt: skip
    results = work / "results.json"
    assert "| `plain` |" in invoke("report", results).stdout  # what reproduce wrote renders
    link = tmp_path / "link.json"
    link.symlink_to(results)
    assert invoke("report", link, code=1).output == f"Error: {link}: is a symbolic link; refusing to follow it\n"
    edited = tmp_path / "edited.json"
    edited.write_text(results.read_text().replace('"total_s": ', '"total_s": 1e400, "was": '))
    assert invoke("report", edited, code=1).output == f"Error: {edited}: not valid JSON (the number 1e400 is beyond a float's range)\n"
    edited.write_text(json.dumps({"rows": 5}))
    assert invoke("report", edited, code=1).output.startswith(f"Error: {edited}: not a results.json of `experiments reproduce` (")
