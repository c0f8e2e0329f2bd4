"""``python -m experiments``: the harness's command line. The only module that knows exit
codes: :class:`UsageError` is a usage error (exit 2), any other :class:`ExperimentError` a
one-line message with exit 1."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import click

from ppencrypt.formats.jsonsafe import read_json_file
from ppencrypt.frontier import method_table

from . import frontier as fr
from . import record as rec
from .commands import Runner, launcher
from .errors import ExperimentError, UsageError
from .measurements import Store
from .report import render, section
from .reproduce import Config, reproduce as run_reproduce, smoke
from .rows import ROWS
from .sections import update_doc
from .staging import FMNIST, write_client_augmented, write_subset


class Command(click.Command):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as e:
            raise click.BadParameter(str(e), ctx=ctx, param_hint=f"'{e.option}'") from None
        except ExperimentError as e:
            raise click.ClickException(str(e)) from None


class Group(click.Group):
    command_class = Command


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli():
    """The experiment harness: plays client (key, augmentation, ppencrypt) and server (pptrain)
    to reproduce [P]'s Tables 2 and 3."""


def _rows(ctx, param, value) -> tuple[str, ...]:
    return tuple(n.strip() for v in value for n in v.split(",") if n.strip())


@cli.command()
@click.argument("src", default=FMNIST, type=click.Path(file_okay=False))
@click.option("--epochs", type=int, help="Epochs of every row [30; smoke: 1].")
@click.option("--width", type=int, help="ResNet base width [64; smoke: 4].")
@click.option("--device", default="auto", show_default=True, help="pptrain --device.")
@click.option("--batch-size", type=int, help="pptrain --batch-size [the recipe's; smoke: 64].")
@click.option("--copies", type=int, help="Client augmentation: augmented copies of the train split; must divide --epochs [= epochs].")
@click.option("--train-subset", type=int, help="Use the first N training images [all; smoke: 300].")
@click.option("--test-subset", type=int, help="Use the first N test images [all; smoke: 200].")
@click.option("--rows", multiple=True, callback=_rows, metavar="IDS", help=f"Rows to run, comma-separated [all]: {', '.join(r.id for r in ROWS)}.")
@click.option("--block-size", type=int, default=4, show_default=True, help="ppencrypt --block-size for le, ele, etc.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, help="ppencrypt --workers.")
@click.option("--key", default="keys/reproduce.key", show_default=True, help="The client's key file (created when missing).")
@click.option("--work", default="out/reproduce", show_default=True, help="Staged sources, datasets, runs, results.json and results.md.")
@click.option("--doc", type=click.Path(dir_okay=False), help="Also write the tables into this markdown file's section (docs/results.md).")
@click.option("--smoke", "is_smoke", is_flag=True, help="A tiny budget that checks the harness, not accuracy.")
@click.option("--in-process", is_flag=True, help="Run ppencrypt and pptrain inside this process instead of as subprocesses.")
def reproduce(src, epochs, width, device, batch_size, copies, train_subset, test_subset, rows, block_size, seed, workers, key,
              work, doc, is_smoke, in_process):  # fmt: skip
    """Every row of [P]'s Tables 2 and 3 and the image-scope rows on dataset SRC
    [default: Fashion-MNIST]; writes WORK/results.json and WORK/results.md."""
    given = {k: v for k, v in dict(epochs=epochs, width=width, batch_size=batch_size, train_subset=train_subset,
                                   test_subset=test_subset).items() if v is not None}  # fmt: skip
    cfg = Config(src=src, work=work, key=key, device=device, copies=copies, block_size=block_size, seed=seed, workers=workers,
                 rows=rows, in_process=in_process, **given)  # fmt: skip
    cfg = smoke(cfg) if is_smoke else cfg
    # The command as typed; in-process (tests), sys.argv is the caller's, not ours.
    invocation = None if in_process else shlex.join([*launcher("experiments"), *sys.argv[1:]])
    record = run_reproduce(cfg, lambda line: click.echo(line, err=True), invocation)
    text = render(record)
    (Path(work) / "results.md").write_text(text, encoding="utf-8")
    if doc:
        update_doc(Path(doc), section(record), text)
    click.echo(text)
    failed = [r["id"] for r in record["rows"] if r["error"]]
    if failed:
        raise ExperimentError(f"{len(failed)} row(s) failed: {', '.join(failed)} (see {Path(work) / 'results.md'})")


MAX_RESULTS = 1 << 24  # bytes of a results.json: a few KiB per row


def read_results(path: Path) -> dict:
    """A results.json that may come from another machine (a GPU server sent it back): read as
    pptrain reads a run directory — no link followed, a regular file (a FIFO is not waited on), at
    most MAX_RESULTS bytes, strict JSON (ppencrypt.formats.jsonsafe) — or one line naming it."""
    record = read_json_file(path, MAX_RESULTS, ExperimentError)
    if not isinstance(record, dict):
        raise ExperimentError(f"{path}: not a results.json of `experiments reproduce` (not a JSON object)")
    return record


@cli.command()
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--doc", type=click.Path(dir_okay=False), help="Write the tables into this markdown file's section.")
def report(results, doc):
    """Render RESULTS (a results.json of `reproduce`, e.g. one a GPU machine sent back) as
    markdown on stdout, and into DOC's section for its dataset and device."""
    record = read_results(Path(results))
    try:
        text = render(record)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:  # valid JSON, not what reproduce writes
        raise ExperimentError(f"{results}: not a results.json of `experiments reproduce` ({type(e).__name__}: {e})"[:300]) from None
    if doc:
        update_doc(Path(doc), section(record), text)
    click.echo(text)


@cli.command()
@click.option("--cells", multiple=True, callback=_rows, metavar="PATTERNS",
              help="Cells to run, comma-separated shell patterns on their ids (e.g. 'after-8k-*') [all].")
@click.option("--run", "do_run", is_flag=True, help="Run the selected cells that are not measured yet (not in --store, no complete run directory).")
@click.option("--list", "do_list", is_flag=True, help="Print the selected cells' commands and whether they ran.")
@click.option("--work", default="out/record", show_default=True, help="Sources, datasets and run directories.")
@click.option("--key", default="keys/record.key", show_default=True, help="The client's key file (created when missing).")
@click.option("--before", default="out/before-8a2c592", show_default=True, help="A checkout of commit 8a2c592 (the 'before' cells).")
@click.option("--store", default="docs/record.jsonl", show_default=True, type=click.Path(dir_okay=False),
              help="The measurements kept: every finished cell, copied from its run directory; what the tables show.")
@click.option("--doc", type=click.Path(dir_okay=False), help="Write the tables into this file's record section (docs/results.md).")
def record(cells, do_run, do_list, work, key, before, store, doc):
    """The recipe record: pptrain's defaults before and after issue 10, the reference recipe
    and the levers, on Fashion-MNIST (8,000 and 60,000 images, width 16, CPU)."""
    lay = rec.Layout(work=Path(work), key=key, before=before, store=Store(Path(store)))
    chosen = rec.select(cells)
    if not chosen:
        raise UsageError("--cells", f"no cell matches {', '.join(cells)}")
    for cell_id in rec.keep_finished(rec.all_cells(), lay):
        click.echo(f"{store}: kept {cell_id}", err=True)
    if do_list:
        kept = lay.store.load()
        for c in chosen:
            click.echo(f"{'done' if rec.result(c, lay, kept) else 'todo'}  {rec.shown(c, lay)}")
    failed = rec.run_cells(chosen, lay, Runner(log=lambda line: click.echo(line, err=True))) if do_run else []
    text = rec.tables(lay)
    if doc:
        update_doc(Path(doc), rec.SECTION, text)
    if not do_list:
        click.echo(text)
    if failed:
        raise ExperimentError(f"{len(failed)} cell(s) failed: {', '.join(failed)}")


@cli.command()
@click.argument("src", default=FMNIST, type=click.Path(file_okay=False))
@click.option("--cells", multiple=True, callback=_rows, metavar="IDS",
              help=f"Cells to run, comma-separated [all]: {', '.join(c.id for c in fr.all_cells())}; a block-wise method "
                   "at another --block-size: METHOD<B>-SCOPE, e.g. bsm7-image.")
@click.option("--list", "do_list", is_flag=True, help="Print every selected cell's commands and whether it ran; run nothing.")
@click.option("--epochs", type=click.IntRange(min=1), help=f"pptrain --epochs [{fr.FULL.epochs}; smoke: {fr.SMOKE.epochs}].")
@click.option("--width", type=click.IntRange(min=1), help=f"pptrain --width [{fr.FULL.width}; smoke: {fr.SMOKE.width}].")
@click.option("--batch-size", type=click.IntRange(min=1), help="pptrain --batch-size [the recipe's; smoke: 64].")
@click.option("--train-subset", type=click.IntRange(min=1), help=f"Use the first N training images [all; smoke: {fr.SMOKE.train}].")
@click.option("--test-subset", type=click.IntRange(min=1), help=f"Use the first N test images [all; smoke: {fr.SMOKE.test}].")
@click.option("--audit-n", type=click.IntRange(min=1), help=f"ppencrypt audit -n [{fr.FULL.audit_n}; smoke: {fr.SMOKE.audit_n}].")
@click.option("--public-n", type=click.IntRange(min=1), help=f"ppencrypt audit --public-n [{fr.FULL.public_n}; smoke: {fr.SMOKE.public_n}].")
@click.option("--train-steps", type=click.IntRange(min=1), help=f"ppencrypt audit --train-steps [{fr.FULL.train_steps}; smoke: {fr.SMOKE.train_steps}].")
@click.option("--work", default="out/frontier", show_default=True, help="Key-less scratch: source subset, datasets, runs, audits, frontier.jsonl (the kept cells).")
@click.option("--key", default="keys/frontier.key", show_default=True, help="The client's key file (created when missing).")
@click.option("--store", type=click.Path(dir_okay=False), help="The finished cells kept, with their budgets (docs/frontier.jsonl) [WORK/frontier.jsonl].")
@click.option("--doc", type=click.Path(dir_okay=False), help="Write the table into this file's frontier section (docs/privacy.md) and frontier.png beside it.")
@click.option("--numbers", type=click.Path(dir_okay=False), help="Write every kept cell's accuracy and recognition at this budget "
              "into this JSON file: ppencrypt's package data (pipeline/ppencrypt/frontier.json), which `ppencrypt dataset --help` shows.")
@click.option("--readme", type=click.Path(dir_okay=False), help="Write the same numbers as the method table between this file's "
              "<!-- methods:begin/end --> markers (README.md).")
@click.option("--smoke", "is_smoke", is_flag=True, help="A tiny budget that checks the harness, not the frontier.")
@click.option("--audit-again", is_flag=True, help="Audit the selected cells already kept again, keeping their training (their runs must "
              "be in --work): for an attack added to the audit. The cells not kept run as usual.")
@click.option("--in-process", is_flag=True, help="Run ppencrypt and pptrain inside this process instead of as subprocesses.")
def frontier(src, cells, do_list, epochs, width, batch_size, train_subset, test_subset, audit_n, public_n, train_steps, work, key, store,
             doc, numbers, readme, is_smoke, audit_again, in_process):  # fmt: skip
    """The privacy–accuracy frontier on dataset SRC [default: Fashion-MNIST]: every method x key
    scope trained at one budget and audited with every attack that applies (--learned); the
    table on stdout, WORK/frontier.md and WORK/frontier.png. Resumable: a cell kept in the
    store at the same budget is not run again."""
    given = {k: v for k, v in dict(epochs=epochs, width=width, batch_size=batch_size, train=train_subset, test=test_subset,
                                   audit_n=audit_n, public_n=public_n, train_steps=train_steps).items() if v is not None}  # fmt: skip
    budget = fr.Budget(**{**(fr.asdict(fr.SMOKE) if is_smoke else fr.asdict(fr.FULL)), **given})
    if budget.test is not None and budget.audit_n + fr.DATASET_KNOWN > budget.test:
        raise UsageError("--audit-n", f"--audit-n {budget.audit_n} leaves fewer than {fr.DATASET_KNOWN} known pairs among {budget.test} test images")
    lay = fr.Layout(src=src, work=Path(work), key=key, budget=budget, in_process=in_process, kept=Path(store) if store else None)
    chosen = fr.select(cells)
    if do_list:
        kept = fr.load(lay)
        for c in chosen:
            click.echo(f"{'done' if c.id in kept else 'todo'}  {c.id}: {fr.training(c, lay).shown} && {fr.auditing(c, lay).shown}")
        return
    runner = Runner(in_process, log=lambda line: click.echo(line, err=True))
    failed = (fr.audit_again(chosen, lay, runner) if audit_again else []) + fr.run_cells(chosen, lay, runner)
    picture = lay.work / "frontier.png"
    plotted = fr.plot(lay, chosen, picture)
    text = fr.table(lay, chosen, "frontier.png" if plotted else None)
    (lay.work / "frontier.md").write_text(text, encoding="utf-8")
    if doc:
        update_doc(Path(doc), fr.SECTION, text)
        if plotted:
            shutil.copyfile(picture, Path(doc).parent / "frontier.png")
    if numbers:
        fr.write_numbers(lay, Path(numbers))
    if readme:
        update_doc(Path(readme), fr.METHODS, method_table(fr.shipped(lay)))
    click.echo(text)
    if failed:
        raise ExperimentError(f"{len(failed)} cell(s) failed: {', '.join(failed)}")


@cli.command()
@click.argument("src", type=click.Path(file_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--copies", type=int, required=True, help="Augmented copies of the train split.")
@click.option("--pad", type=int, default=4, show_default=True, help="Largest shift, in pixels (border value 128).")
@click.option("--seed", type=int, default=0, show_default=True)
def augment(src, dest, copies, pad, seed):
    """The client's augmentation: COPIES crop + flip copies of SRC's plain train split, and its
    test split unchanged, as IDX files in DEST (for ppencrypt dataset)."""
    counts = write_client_augmented(src, dest, copies, pad, seed)
    click.echo(f"{dest}: {counts['train']} augmented training images, {counts['test']} test images")


@cli.command()
@click.argument("src", type=click.Path(file_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--train", type=click.IntRange(min=1), help="The first N training images [all].")
@click.option("--test", type=click.IntRange(min=1), help="The first N test images [all].")
def subset(src, dest, train, test):
    """The first images of SRC's train and test splits as IDX files in DEST."""
    counts = write_subset(src, dest, train, test)
    click.echo(f"{dest}: {counts['train']} training images, {counts['test']} test images")


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="python -m experiments")
