"""The recipe record (``python -m experiments record``): pptrain's defaults before and after
issue 10, against a reference recipe and with each lever on its own, on Fashion-MNIST at two
sizes and several budgets — every cell one ``pptrain`` command, the table in docs/results.md.

    preparation   key, the 8,000-image subset, one ``ppencrypt dataset`` per dataset
    cells         (variant, size, method, epochs) -> one pptrain run directory under WORK/runs
    table         per cell: final test accuracy, the largest test-loss jump between epochs,
                  the accuracy per epoch, and the command

Variants: ``before`` — the defaults of commit 8a2c592 (the fast recipe with batch 512 at any
size, [P]'s network, shift + flip from the first epoch), run from a checkout of that commit
(``--before DIR``: ``python -m pipeline.cli`` and ``python -m trainer.cli``, its own entry
modules, BEFORE_ENTRIES), on datasets that commit's ppencrypt made (it reads manifest version 1
only); ``after`` — this pptrain's defaults; ``reference`` — the usual CIFAR recipe
(``--recipe reference``: SGD momentum 0.9, batch 128, lr 0.1, cosine decay) with [P]'s network
and crop + flip, nothing else; and the levers, each the defaults with one choice forced:
the adaptation network, no augmentation, augmentation from a later epoch or until an earlier
one, client copies. When the defaults changed, the runs of the old ones were kept as the lever
cells they had amounted to (the same settings as resolved, config.json), and the lever runs
the new defaults amount to became the ``after`` cells (runs are bit-reproducible on the CPU).

Cells run one at a time, in the order listed, and ``--cells`` picks the ones to run (shell
patterns on the cell ids): the record is built up over several sittings. A cell whose run
directory holds every epoch is copied into the measurements kept in the repository
(docs/record.jsonl, experiments/measurements.py), and a cell found there is not run again;
rendering reads those measurements.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from pptrain.errors import TrainerError
from pptrain.metrics import read_metrics
from pptrain.recipe import RECIPES
from pptrain.run import METRICS

from .commands import Checkout, Command, CommandFailed, Runner, command
from .errors import ExperimentError
from .measurements import Measurement, Store
from .sections import Section
from .staging import FMNIST

BEFORE = "8a2c592"  # the commit whose defaults issue 10 replaced
# Its programs' entry modules, run with `python -m` from its checkout (first on PYTHONPATH): its
# packages were still named pipeline and trainer, and this environment's console scripts import
# ppencrypt.cli and pptrain.cli, which would run this checkout's code instead.
BEFORE_ENTRIES = {"ppencrypt": "pipeline.cli", "pptrain": "trainer.cli"}
SIZES = {"8k": (8_000, 2_000), "60k": (None, None)}  # train / test images (None: all)
METHODS = ("plain", "pe-dataset", "pe-image")
BUDGETS = (("8k", 3), ("8k", 10), ("8k", 30), ("60k", 3), ("60k", 10))
WIDTH, SEED = 16, 0
# One thread per run: on a 2-core machine shared with other jobs, torch's two OpenMP threads
# spin-wait for each other and a width-16 step ran at 25 images/s, against 250 with one thread.
THREADS = "1"
# The levers: each cell forces the adaptation network and the augmentation explicitly, so its
# command means the same whatever the defaults are. Name: network-augmentation. ``later``:
# crop + flip from epoch E // 3 + 1 (the first third unaugmented); ``copies``: trained on
# ``ppencrypt dataset --copies E`` (one client-augmented copy per epoch, nothing in pptrain);
# ``until``: crop + flip through epoch 7E // 10 (the last 30 % unaugmented).
AUGMENTS = {"cropflip": ("--augment", "crop,flip"), "noaug": ("--augment", "none"), "flip": ("--augment", "flip"),
            "later": ("--augment", "crop,flip", "--augment-from", "{later}"),
            "until": ("--augment", "crop,flip", "--augment-until", "{until}"), "copies": ()}  # fmt: skip
SMALL = (("8k", 3), ("8k", 10))
LARGE = (("60k", 3), ("60k", 10))
ALL = ("plain", "pe-dataset", "pe-image")
LONG = (("8k", 30),) + LARGE
LEVERS = {  # name -> ((methods, budgets), ...): where it is measured
    "pixel-cropflip": ((ALL, SMALL + LARGE), (("plain",), (("8k", 30),))),
    "pixel-noaug": ((ALL, SMALL), (("plain",), LONG)),
    "pixel-flip": ((("plain",), SMALL),),
    "pixel-later": ((("pe-dataset",), SMALL),),
    "pixel-until": ((("plain",), SMALL + (("8k", 30), ("60k", 10))),),
    "pixel-copies": ((("pe-dataset",), SMALL),),
    "invariant-cropflip": ((("pe-dataset",), SMALL + LARGE + (("8k", 30),)),),
    "invariant-noaug": ((("pe-dataset",), SMALL + LONG),),
    "invariant-flip": ((("pe-dataset",), SMALL),),
    "invariant-later": ((("pe-dataset",), SMALL + (("8k", 30),)),),
    "invariant-until": ((("pe-dataset",), SMALL + (("8k", 30), ("60k", 10))),),
    "invariant-copies": ((("pe-dataset",), SMALL),),
}


def measured(lever: str, method: str, budget: tuple[str, int]) -> bool:
    return any(method in methods and budget in budgets for methods, budgets in LEVERS[lever])


def until_epoch(epochs: int) -> int:
    """The ``until`` lever's last augmented epoch: the last 30 % of the run unaugmented."""
    return epochs * 7 // 10


def default_lever(method: str, epochs: int) -> str | None:
    """The lever the defaults amount to, if any — its cell is the ``after`` cell, not run twice:
    [P]'s network for plain images, the invariant one for pe, and the default recipe's own
    augmentation schedule (trainer/pptrain/recipe.py): none for 3 epochs, through epoch 7 of 10
    (the ``until`` lever), through 27 of 30 (no lever)."""
    network = "pixel" if method == "plain" else "invariant"
    until = RECIPES["fast"].augment_until(epochs)
    if until == 0:
        return f"{network}-noaug"
    return f"{network}-until" if until == until_epoch(epochs) else None
# With the invariant network (the default for pe) a dataset key and image keys give the network
# bit-identical inputs (the statistic of the plain image), hence bit-identical runs: run for
# both on the smallest budget (the check), on pe with a dataset key alone elsewhere.
SAME_INPUT = {"pe-image": "pe-dataset"}
CHECKED = (("8k", 3),)


@dataclass(frozen=True)
class Cell:
    variant: str  # before | after | reference | a lever
    size: str  # 8k | 60k
    method: str  # plain | pe-dataset | pe-image
    epochs: int

    @property
    def id(self) -> str:
        return f"{self.variant}-{self.size}-{self.method}-e{self.epochs}"

    @property
    def copies(self) -> int | None:
        """Client copies of the dataset the cell trains on: one fresh copy per epoch."""
        return self.epochs if self.variant.endswith("-copies") else None

    @property
    def adapt(self) -> str | None:
        """The network a lever forces (None: the variant's default)."""
        return self.variant.split("-")[0] if self.variant in LEVERS else None

    @property
    def dataset(self) -> str:
        name = "plain" if self.method == "plain" else self.method
        return f"fm{self.size}-{name}" + (f"-copies{self.copies}" if self.copies else "")


def all_cells() -> list[Cell]:
    """In the order they are worth running: the small budgets first."""
    cells = []
    for size, epochs in BUDGETS:
        for variant in ("after", "reference", "before"):
            cells += [Cell(variant, size, m, epochs) for m in METHODS
                      if not (variant == "after" and m in SAME_INPUT and (size, epochs) not in CHECKED)]
        for lever in LEVERS:
            cells += [Cell(lever, size, m, epochs) for m in METHODS
                      if measured(lever, m, (size, epochs)) and default_lever(m, epochs) != lever]
    return cells


def select(patterns: tuple[str, ...]) -> list[Cell]:
    cells = all_cells()
    return [c for c in cells if not patterns or any(fnmatch.fnmatch(c.id, p) for p in patterns)]


@dataclass(kw_only=True)
class Layout:
    work: Path
    key: str
    before: str  # a checkout of BEFORE
    store: Store | None = None  # the measurements kept (None: the run directories alone)

    def source(self, size: str) -> str:
        return FMNIST if SIZES[size][0] is None else str(self.work / f"src-{size}")

    def data(self, cell: Cell) -> Path:
        """The dataset ``cell`` trains on: ``before`` cells read what the old ppencrypt wrote."""
        return self.work / (f"data-{BEFORE}" if cell.variant == "before" else "data") / cell.dataset

    def run(self, cell: Cell) -> Path:
        return self.work / "runs" / cell.id

    def code(self, cell: Cell) -> Checkout | None:
        """The checkout whose code runs ``cell``'s commands (None: this one)."""
        return Checkout(self.before, BEFORE_ENTRIES) if cell.variant == "before" else None


def preparation(cells: list[Cell], lay: Layout) -> list[tuple[Path, Command]]:
    """(what it makes, the command) for every input the cells need, each once."""
    steps: dict[Path, Command] = {}
    if any(c.method != "plain" for c in cells):
        steps[Path(lay.key)] = command("ppencrypt", "keygen", lay.key)
    for c in cells:
        train, test = SIZES[c.size]
        if train is not None:
            src = Path(lay.source(c.size))
            steps.setdefault(src, command("experiments", "subset", FMNIST, src, "--train", train, "--test", test))
        out = lay.data(c)
        method, scope = ("plain", "dataset") if c.method == "plain" else c.method.split("-")
        key = ("--key", lay.key) if method != "plain" else ()
        copies = ("--copies", c.copies) if c.copies else ()
        steps.setdefault(out, command("ppencrypt", "dataset", lay.source(c.size), out, *key, "--method", method,
                                      "--key-scope", scope, *copies, "--quiet", code=lay.code(c)))  # fmt: skip
    return list(steps.items())


def train_args(cell: Cell, lay: Layout) -> tuple[str, ...]:
    """pptrain's arguments for ``cell``."""
    extra: tuple = ()
    if cell.variant == "reference":
        extra = ("--recipe", "reference", "--adapt", "pixel", "--augment", "crop,flip")
    elif cell.variant in LEVERS:
        augment = AUGMENTS[cell.variant.split("-", 1)[1]]
        extra = ("--adapt", cell.adapt, *(a.format(later=cell.epochs // 3 + 1, until=until_epoch(cell.epochs)) for a in augment))
    return (str(lay.data(cell)), "--width", str(WIDTH), "--epochs", str(cell.epochs), *extra, "--seed", str(SEED),
            "--device", "cpu", "--run-dir", str(lay.run(cell)), "--quiet")  # fmt: skip


def training(cell: Cell, lay: Layout) -> Command:
    return command("pptrain", *train_args(cell, lay), code=lay.code(cell), env=(("OMP_NUM_THREADS", THREADS),))


def shown(cell: Cell, lay: Layout) -> str:
    """The cell's command as the record shows it; ``before`` runs the old commit's code."""
    return training(cell, lay).shown


def finished_run(cell: Cell, lay: Layout) -> Measurement | None:
    """The cell's run directory's metrics, or None unless every epoch is there."""
    path = lay.run(cell) / METRICS
    if not path.exists() and not path.is_symlink():
        return None
    try:  # as the server may have left it: a regular file, bounded, strict JSON, one record per epoch
        rows = read_metrics(path)
    except TrainerError as e:
        raise ExperimentError(str(e)) from None
    return Measurement.from_metrics(cell.id, shown(cell, lay), rows) if len(rows) == cell.epochs else None


def keep_finished(cells: list[Cell], lay: Layout) -> list[str]:
    """Copy every finished run directory among ``cells`` that the store lacks into it; the ids
    it added. A kept line is never rewritten from a run directory: the same run seen from
    another working directory or --work would show another command."""
    if lay.store is None:
        return []
    order, kept = [c.id for c in all_cells()], lay.store.load()
    return [c.id for c in cells if c.id not in kept and (m := finished_run(c, lay)) is not None and lay.store.save(m, order)]


def result(cell: Cell, lay: Layout, kept: dict[str, Measurement] | None = None) -> Measurement | None:
    """The cell's outcome: the store's line, else its finished run directory, else None."""
    found = None
    if lay.store is not None:
        found = (lay.store.load() if kept is None else kept).get(cell.id)
    return found if found is not None else finished_run(cell, lay)


def run_cells(cells: list[Cell], lay: Layout, runner: Runner) -> list[str]:
    """Prepare what is missing, then run every cell that has no outcome yet, keeping each in the
    store as it finishes; the ids of the cells that failed (their error logged; the others still run)."""
    import shutil

    kept = lay.store.load() if lay.store is not None else {}
    todo = [c for c in cells if result(c, lay, kept) is None]
    runner.prepare(preparation(todo, lay))
    failed = []
    for cell in todo:
        shutil.rmtree(lay.run(cell), ignore_errors=True)
        try:
            runner(training(cell, lay))
        except CommandFailed as e:
            runner.log(f"  failed: {e}")
            failed.append(cell.id)
            continue
        keep_finished([cell], lay)
    return failed


# --- the tables ------------------------------------------------------------------------------

SECTION = Section("record")  # of docs/results.md
TITLES = {"plain": "plain", "pe-dataset": "pe, dataset key", "pe-image": "pe, image keys"}


def worst_jump(loss: tuple[float, ...]) -> float:
    """The largest ratio of an epoch's test loss to the previous epoch's (1.0 for one epoch)."""
    return max([b / a for a, b in zip(loss, loss[1:])] or [1.0])


def _cell(m: Measurement | None) -> str:
    if m is None:
        return "not yet measured"
    jump = worst_jump(m.test_loss)
    return f"**{100 * m.test_acc[-1]:.2f}**" + (f" (loss ×{jump:.1f})" if jump > 1.5 else "")


def _size(size: str) -> str:
    train, _ = SIZES[size]
    return "60,000" if train is None else f"{train:,}"


def tables(lay: Layout, cells: list[Cell] | None = None) -> str:
    """The record's section of docs/results.md: the tables of ``cells`` (all) and their commands."""
    cells = all_cells() if cells is None else cells
    kept = lay.store.load() if lay.store is not None else {}
    done = {c.id: r for c in cells if (r := result(c, lay, kept)) is not None}
    def get(v, size, m, e) -> Measurement | None:
        if (v.startswith("invariant-") or (v == "after" and (size, e) not in CHECKED)) and m in SAME_INPUT:
            m = SAME_INPUT[m]
        v = "after" if default_lever(m, e) == v else v  # the defaults' lever is the after cell
        return done.get(f"{v}-{size}-{m}-e{e}")

    out = ["Test accuracy (%) after the last epoch; `(loss ×r)` where an epoch's test loss was r times the previous "
           "epoch's (shown from 1.5; the goal is below 3). ‡: the dataset key's run — with the invariant network "
           "image keys give bit-identical inputs and runs (checked on 8,000 images for 3 epochs).", "",
           "| train images | epochs | method | before (8a2c592 defaults) | reference recipe | after (defaults) |",
           "|---|---|---|---|---|---|"]  # fmt: skip
    for size, epochs in BUDGETS:
        for m in METHODS:
            row = [_cell(get(v, size, m, epochs)) for v in ("before", "reference", "after")]
            if m in SAME_INPUT and (size, epochs) not in CHECKED and row[2] != "not yet measured":
                row[2] += " ‡"
            out.append(f"| {_size(size)} | {epochs} | {TITLES[m]} | {' | '.join(row)} |")
    out += ["", "The levers: adaptation network and augmentation forced, everything else the defaults (the "
            "defaults' own combination is the `after` cell; `later`: crop + flip from epoch E // 3 + 1; `until`: crop + flip through epoch 7E // 10; `copies`: "
            "`ppencrypt dataset --copies E`, one client-augmented copy per epoch, nothing in pptrain; with the "
            "invariant network image keys give the same inputs as a dataset key, so those cells are the dataset "
            "key's; —: not part of the record):", "",
            "| train images | epochs | method | " + " | ".join(f"`{v}`" for v in LEVERS) + " |",
            "|---|---|---|" + "---|" * len(LEVERS)]  # fmt: skip
    for size, epochs in BUDGETS:
        for m in METHODS:
            shown_m = lambda v: SAME_INPUT.get(m, m) if v.startswith("invariant-") else m  # noqa: E731
            row = [_cell(get(v, size, m, epochs)) if measured(v, shown_m(v), (size, epochs)) else "—" for v in LEVERS]
            if any(r != "—" for r in row):
                out.append(f"| {_size(size)} | {epochs} | {TITLES[m]} | " + " | ".join(row) + " |")
    out += ["", "Test accuracy per epoch (%), test loss per epoch, wall time (training and evaluation; the CPU "
            "was shared with other jobs, so times are noisy; °: the run directory was lost before the measurements "
            "were kept in docs/record.jsonl, and these numbers were read back from this table as rendered from it):",
            "", "| cell | accuracy per epoch | test loss per epoch | wall |", "|---|---|---|---|"]  # fmt: skip
    for c in cells:
        if (r := done.get(c.id)) is not None:
            acc = ", ".join(f"{100 * a:.1f}" for a in r.test_acc)
            loss = ", ".join(f"{v:.2f}" for v in r.test_loss)
            out.append(f"| `{c.id}`{' °' if r.rounded else ''} | {acc} | {loss} | {r.seconds:.0f} s |")
    out += ["", "Commands (`before` cells run the code of a checkout of commit 8a2c592, "
            f"`git worktree add {lay.before} {BEFORE}`, on datasets its ppencrypt made):", "", "```"]  # fmt: skip
    out += [cmd.shown for made, cmd in preparation(cells, lay)]
    out += [r.command for c in cells if (r := done.get(c.id)) is not None]
    out += ["```"]
    return "\n".join(out) + "\n"
