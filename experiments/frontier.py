"""The privacy–accuracy frontier (``python -m experiments frontier [SRC]``, issue 25): every
shipped method × key scope trained at one budget and audited with every attack that applies,
on one page — accuracy against what the best attack's reconstructions let a classifier
recognise, with plain images and chance for scale.

    preparation   key, the source subset (when the budget takes one), one ``ppencrypt dataset``
                  per cell
    cell          (method, scope) -> ``pptrain`` (its accuracy) and ``ppencrypt audit --learned``
                  (every attack's PSNR, SSIM and recognition)
    table         per cell: accuracy, the attack recognised most (its PSNR / SSIM / recognition),
                  the times; plain images' recognition and chance; every command
    frontier.png  accuracy against recognition, one labelled point per cell

The methods and their scopes come from the cipher registry, so a method added there is a new
row here; a block-wise method at another block size is a cell asked for by name (``bsm7-image``). Block-wise methods train with ``--augment none`` (shifts move block boundaries);
every other choice is the method's default (its adaptation network, the recipe). Cells run one
at a time and each is kept in the store (``--store``: docs/frontier.jsonl in the repository, the
measurements the docs show; WORK/frontier.jsonl by default) as soon as it finishes, with the
budget it ran at: a kept cell at the same budget is not run again, whatever became of its run
directory, so the table is built up over several sittings and machines.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field  # noqa: F401  (asdict: cli.py builds budgets with it)
from pathlib import Path

from ppencrypt import frontier as shipped_frontier
from ppencrypt.ciphers import cipher_class, method_names
from ppencrypt.formats.jsonsafe import read_json_file
from pptrain.errors import TrainerError
from pptrain.metrics import evaluated, read_metrics
from pptrain.run import METRICS

from .commands import Command, CommandFailed, Runner, command
from .errors import ExperimentError
from .sections import Section
from .staging import FMNIST

SECTION = Section("frontier", anchor="## The privacy–accuracy frontier")  # of docs/privacy.md
METHODS = Section("methods")  # README.md's method table, between its markers
DATASETS = {FMNIST: "Fashion-MNIST"}  # how the shipped numbers name a source (else by its folder's name)
THREADS = "1"  # one OpenMP thread per run on a shared CPU (record.py: many times faster there)


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What every cell is trained and audited at; part of what a kept cell is kept for."""

    train: int | None = None  # first N training images (None: all)
    test: int | None = None
    epochs: int = 10
    width: int = 16
    batch_size: int | None = None  # None: the recipe's
    audit_n: int = 1000  # images the audit scores
    public_n: int = 5000  # the learned attacker's public images
    train_steps: int = 1000  # per learned model

    def shown(self) -> str:
        size = "all" if self.train is None else f"{self.train:,}"
        test = "all" if self.test is None else f"{self.test:,}"
        batch = f", batch {self.batch_size}" if self.batch_size else ""
        return (f"{size} training / {test} test images × {self.epochs} epochs, ResNet-18 width {self.width}{batch}, CPU; "
                f"audit of {self.audit_n:,} test images, learned attacker on {self.public_n:,} public images, "
                f"{self.train_steps:,} steps per model")  # fmt: skip


FULL = Budget(epochs=10, width=16, audit_n=1000, public_n=5000, train_steps=1000)
SMOKE = Budget(train=300, test=60, epochs=1, width=4, batch_size=64, audit_n=40, public_n=200, train_steps=5)


@dataclass(frozen=True)
class Cell:
    method: str
    scope: str | None  # None: plain
    block: int | None = None  # a block-wise method at this --block-size instead of its default

    @property
    def id(self) -> str:
        name = self.method if self.block is None else f"{self.method}{self.block}"
        return name if self.scope is None else f"{name}-{self.scope}"

    @property
    def blockwise(self) -> bool:
        return cipher_class(self.method).family == "block"

    @property
    def shown(self) -> str:
        return f"`{self.method}`" if self.block is None else f"`{self.method}` {self.block}×{self.block}"


def all_cells() -> list[Cell]:
    """Every registered method under every key scope it supports (plain once), registry order."""
    return [Cell(m, s) for m in method_names() for s in (cipher_class(m).scopes or (None,))]


def sized(name: str) -> Cell | None:
    """``bsm7-image``: a block-wise method's cell at another block size (issue 25: the block size
    is bsm's one parameter, and it moves the cell along the frontier); None when ``name`` is not one."""
    for m in method_names():
        rest = name[len(m) :] if name.startswith(m) else ""
        block, _, scope = rest.partition("-")
        if block.isdigit() and int(block) > 0 and cipher_class(m).family == "block" and scope in cipher_class(m).scopes:
            return Cell(m, scope, int(block))
    return None


def select(names: tuple[str, ...]) -> list[Cell]:
    cells = all_cells()
    extra = {n: sized(n) for n in names if n not in {c.id for c in cells}}
    unknown = [n for n, c in extra.items() if c is None]
    if unknown:
        raise ExperimentError(f"no frontier cell {', '.join(sorted(unknown))} (cells: {', '.join(c.id for c in cells)}; "
                              "a block-wise method at another block size: METHOD<B>-SCOPE, e.g. bsm7-image)")  # fmt: skip
    return [c for c in cells if not names or c.id in names] + [c for c in extra.values() if c is not None]


@dataclass(kw_only=True)
class Layout:
    src: str = FMNIST
    work: Path = Path("out/frontier")
    key: str = "keys/frontier.key"
    budget: Budget = FULL
    in_process: bool = False  # tests: the CLIs inside this process (no environment of their own)
    kept: Path | None = None  # the store of finished cells (None: WORK/frontier.jsonl)

    @property
    def source(self) -> str:
        return self.src if self.budget.train is None and self.budget.test is None else str(self.work / "src")

    def data(self, cell: Cell) -> Path:
        return self.work / "data" / cell.id

    def run(self, cell: Cell) -> Path:
        return self.work / "runs" / cell.id

    def report(self, cell: Cell) -> Path:
        return self.work / "audits" / cell.id  # the audit's -o prefix: .json and .png (plain pixels: private)

    @property
    def store(self) -> Path:
        return self.kept if self.kept is not None else self.work / "frontier.jsonl"


def preparation(cells: list[Cell], lay: Layout) -> list[tuple[Path, Command]]:
    steps: dict[Path, Command] = {}
    if any(c.scope is not None for c in cells):
        steps[Path(lay.key)] = command("ppencrypt", "keygen", lay.key)
    b = lay.budget
    if lay.source != lay.src:
        steps[Path(lay.source)] = command("experiments", "subset", lay.src, lay.source,
                                          *(("--train", b.train) if b.train else ()), *(("--test", b.test) if b.test else ()))  # fmt: skip
    for c in cells:
        key = ("--key", lay.key, "--key-scope", c.scope) if c.scope else ()
        block = ("--block-size", c.block) if c.block else ()
        steps[lay.data(c)] = command("ppencrypt", "dataset", lay.source, lay.data(c), *key, "--method", c.method, *block, "--quiet")
    return list(steps.items())


def training(cell: Cell, lay: Layout) -> Command:
    b = lay.budget
    batch = ("--batch-size", b.batch_size) if b.batch_size else ()
    augment = ("--augment", "none") if cell.blockwise else ()
    env = () if lay.in_process else (("OMP_NUM_THREADS", THREADS),)
    return command("pptrain", lay.data(cell), "--width", b.width, "--epochs", b.epochs, *batch, *augment, "--seed", 0,
                   "--device", "cpu", "--run-dir", lay.run(cell), "--quiet", env=env)  # fmt: skip


# Known pairs for a cell with a dataset-scope key: one key serves every image, so each image the
# attacker happens to know is a pair against all of them. One pair left `ele` with a dataset key
# looking private (a 17 % best attack); 8 (the privacy table's largest k) reconstruct it at
# 31 dB / SSIM 0.98. Under a key per image another image's pair tells nothing: the default, 1.
DATASET_KNOWN = 8


def auditing(cell: Cell, lay: Layout) -> Command:
    b = lay.budget
    known = ("-k", DATASET_KNOWN) if cell.scope == "dataset" else ()
    return command("ppencrypt", "audit", lay.data(cell), "--plain", lay.source, "--split", "test", "-n", b.audit_n, *known, "--learned",
                   "--public-n", b.public_n, "--train-steps", b.train_steps, "-o", lay.report(cell))  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Attack:
    psnr: float
    ssim: float
    recognition: float | None


@dataclass(kw_only=True)
class Outcome:
    """One finished cell, as the store keeps it."""

    cell: str
    budget: dict
    accuracy: float  # final test accuracy, fraction
    attacks: dict[str, Attack]  # the applicable ones
    plain_recognition: float | None
    chance: float | None
    train_seconds: float
    audit_seconds: float
    commands: list[str] = field(default_factory=list)

    def best(self) -> tuple[str, Attack]:
        """The attack whose reconstructions were recognised most (PSNR without recognition)."""
        return max(self.attacks.items(), key=lambda kv: (kv[1].recognition or 0.0, kv[1].psnr))

    def line(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def parse(cls, text: str, where: str) -> Outcome:
        try:
            d = json.loads(text)
            d["attacks"] = {k: Attack(**v) for k, v in d["attacks"].items()}
            return cls(**d)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ExperimentError(f"{where}: not a frontier cell ({type(e).__name__}: {e})") from None


def load(lay: Layout) -> dict[str, Outcome]:
    """The kept cells measured at this budget."""
    if not lay.store.exists():
        return {}
    lines = lay.store.read_text(encoding="utf-8").splitlines()
    found = [Outcome.parse(t, f"{lay.store}:{i}") for i, t in enumerate(lines, 1) if t.strip()]
    return {o.cell: o for o in found if o.budget == asdict(lay.budget)}


def save(o: Outcome, lay: Layout) -> None:
    """Add ``o``, replacing the line of its cell at its budget; atomically."""
    kept = []
    if lay.store.exists():
        kept = [t for t in lay.store.read_text(encoding="utf-8").splitlines() if t.strip()]
        kept = [t for t in kept if not ((d := json.loads(t))["cell"] == o.cell and d["budget"] == o.budget)]
    replace(lay.store, "".join(t + "\n" for t in [*kept, o.line()]))


def replace(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


NEAR = 2.0  # percentage points on both axes within which frontier.png shares one label


def reference(outcomes) -> Outcome | None:
    """The cell whose plain recognition and chance the page states: ``plain`` where it ran (the
    cells score slightly different images: a dataset-scope cell's first 8 are its known pairs),
    else the first that has them; one choice for the table, the plot and the help."""
    scored = [o for o in outcomes if o.plain_recognition is not None]
    return next((o for o in scored if o.cell == "plain"), scored[0] if scored else None)


def shipped(lay: Layout) -> shipped_frontier.Frontier:
    """What ppencrypt ships of the kept cells at this budget (ppencrypt/frontier.json): per cell
    its accuracy and best attack, every cell the store holds (not only those run now), so a
    partial run never drops a measured cell from the help."""
    done = load(lay)
    points = []
    for c in all_cells():
        if (o := done.get(c.id)) is not None:
            name, a = o.best()
            points.append(shipped_frontier.Point(method=c.method, scope=c.scope, accuracy=o.accuracy, attack=name,
                                                 recognition=a.recognition))  # fmt: skip
    ref = reference(done.values())
    return shipped_frontier.Frontier(
        dataset=DATASETS.get(lay.src, Path(lay.src).name), budget=asdict(lay.budget), shown=lay.budget.shown(),
        plain_recognition=ref.plain_recognition if ref else None, chance=ref.chance if ref else None, points=tuple(points),
    )  # fmt: skip


def write_numbers(lay: Layout, path: Path) -> None:
    replace(path, json.dumps(shipped(lay).to_dict(), indent=1, ensure_ascii=False) + "\n")


MAX_REPORT = 1 << 24  # bytes of an audit's report.json


def read_report(path: Path) -> dict:
    """An audit's report.json: a regular file (no link followed) of at most MAX_REPORT bytes,
    strict JSON, or one line naming it."""
    return read_json_file(path, MAX_REPORT, ExperimentError, missing=f"{path}: no such file (the audit wrote no report)")


def outcome(cell: Cell, lay: Layout, train_seconds: float, audit_seconds: float) -> Outcome:
    """The cell's outcome from its run directory and its audit's report.json."""
    try:  # the run directory and the report are read as the server may have left them
        rows = read_metrics(lay.run(cell) / METRICS)
    except TrainerError as e:
        raise ExperimentError(str(e)) from None
    if len(rows) != lay.budget.epochs:
        raise ExperimentError(f"{lay.run(cell)}: {len(rows)} of {lay.budget.epochs} epochs")
    report = read_report(lay.report(cell).with_suffix(".json"))
    attacks = {r["attack"]: Attack(psnr=r["psnr"]["mean"], ssim=r["ssim"]["mean"], recognition=r.get("recognition_accuracy"))
               for r in report["attacks"] if "not_applicable" not in r}  # fmt: skip
    rec = report.get("recognition") or {}
    shown = [training(cell, lay).shown, auditing(cell, lay).shown]
    return Outcome(cell=cell.id, budget=asdict(lay.budget), accuracy=evaluated(rows[-1])[1], attacks=attacks,
                   plain_recognition=rec.get("plain_accuracy"), chance=rec.get("chance"), train_seconds=round(train_seconds, 1),
                   audit_seconds=round(audit_seconds, 1), commands=shown)  # fmt: skip


def run_cells(cells: list[Cell], lay: Layout, runner: Runner) -> list[str]:
    """Prepare what is missing, then train and audit every cell not kept yet, keeping each as it
    finishes; the ids of the cells that failed (the others still run)."""
    import shutil

    kept = load(lay)
    todo = [c for c in cells if c.id not in kept]
    runner.prepare(preparation(todo, lay))
    failed = []
    for cell in todo:
        shutil.rmtree(lay.run(cell), ignore_errors=True)
        lay.report(cell).parent.mkdir(parents=True, exist_ok=True)
        try:
            trained = runner(training(cell, lay))
            audited = runner(auditing(cell, lay))
        except CommandFailed as e:
            runner.log(f"  failed: {e}")
            failed.append(cell.id)
            continue
        save(outcome(cell, lay, trained.seconds, audited.seconds), lay)
    return failed


def audit_again(cells: list[Cell], lay: Layout, runner: Runner) -> list[str]:
    """Audit the kept ones among ``cells`` again and keep the new audit beside the kept training
    (its run directory must still be in the work folder): for when the audit gains an attack,
    so that no cell is trained twice for it; the ids of the cells whose audit failed."""
    kept = load(lay)
    again = [c for c in cells if c.id in kept]
    for cell in again:  # all checked before any audit runs: a missing run is one line, not a lost hour
        if not (lay.run(cell) / METRICS).is_file():
            raise ExperimentError(f"{lay.run(cell)}: no trained run of kept cell {cell.id} to audit again (--audit-again reads it from --work)")
    failed = []
    for cell in again:
        try:
            audited = runner(auditing(cell, lay))
        except CommandFailed as e:
            runner.log(f"  failed: {e}")
            failed.append(cell.id)
            continue
        save(outcome(cell, lay, kept[cell.id].train_seconds, audited.seconds), lay)
    return failed


# --- the page -------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def table(lay: Layout, cells: list[Cell], picture: str | None = None) -> str:
    done = load(lay)
    rows = [done[c.id] for c in cells if c.id in done]
    ref = reference(rows)
    out = [f"Budget: {lay.budget.shown()}; source `{lay.src}`. Accuracy: final test accuracy (%). Best attack: the one "
           "whose reconstructions the audit's classifier recognised most (PSNR without a recognition score); its mean "
           "PSNR (dB), SSIM and recognition (%). Times: training, and the whole audit with its learned attacks.", ""]  # fmt: skip
    if ref is not None:
        out += [f"Plain images recognised: **{_pct(ref.plain_recognition)} %**; chance (largest class share): "
                f"**{_pct(ref.chance)} %**.", ""]  # fmt: skip
    out += ["| method | key scope | accuracy | best attack | PSNR | SSIM | recognition | train | audit |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in cells:
        o = done.get(c.id)
        if o is None:
            out.append(f"| {c.shown} | {c.scope or '—'} | not yet measured | | | | | | |")
            continue
        name, a = o.best()
        out.append(f"| {c.shown} | {c.scope or '—'} | **{_pct(o.accuracy)}** | `{name}` | {a.psnr:.1f} | {a.ssim:.2f} | "
                   f"**{_pct(a.recognition)}** | {o.train_seconds:.0f} s | {o.audit_seconds:.0f} s |")  # fmt: skip
    if picture:
        out += ["", f"![accuracy against the best attack's recognition, per method and key scope]({picture})"]
    out += ["", "Commands (preparation, then per cell: training and audit):", "", "```"]
    out += [cmd.shown for _, cmd in preparation(cells, lay)]
    out += [line for c in cells if (o := done.get(c.id)) is not None for line in o.commands]
    out += ["```"]
    return "\n".join(out) + "\n"


def plot(lay: Layout, cells: list[Cell], path: Path) -> bool:
    """frontier.png: accuracy against the best attack's recognition, one labelled point per
    measured cell, plain images' recognition and chance as vertical lines; False when no cell
    has a recognition score to plot."""
    done = load(lay)
    points = [(c.id, o.best()[1].recognition, o.accuracy) for c in cells if (o := done.get(c.id)) is not None]
    points = [p for p in points if p[1] is not None]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    ref = reference(done.values())
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.axvline(100 * ref.chance, color="grey", linestyle=":", label=f"chance {_pct(ref.chance)} %")
    ax.axvline(100 * ref.plain_recognition, color="black", linestyle="--", label=f"plain images {_pct(ref.plain_recognition)} %")
    where: dict[tuple[float, float], list[str]] = {}  # cells on one point share one label
    for name, recognition, accuracy in points:
        x, y = 100 * recognition, 100 * accuracy
        ax.scatter(x, y, color="tab:red" if name.startswith("bsm") else "tab:blue")
        # points within NEAR of a labelled one join its label: overlapping words help nobody
        anchor = next((a for a in where if abs(a[0] - x) <= NEAR and abs(a[1] - y) <= NEAR), (x, y))
        where.setdefault(anchor, []).append(name)
    right = 100 * ref.plain_recognition - 5  # points near plain's line: labels drawn leftwards and below, inside the axes
    for (x, y), names in where.items():
        left = x > right
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(-6, -11) if left else (4, 3), fontsize=8,
                    ha="right" if left else "left")  # fmt: skip
    ax.set_xlabel("best attack's reconstructions recognised (%)  — lower is more private")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("privacy–accuracy frontier: upper left is better", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return True
