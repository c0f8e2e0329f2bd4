"""[P]'s Tables 2 and 3 end to end: stage plain sources, encrypt, train, evaluate, record.

    key (ppencrypt keygen, once) -> [subset] -> ppencrypt dataset per encrypted dataset
    (client rows: --copies K) -> per row: pptrain (cloud rows: --augment crop,flip; client
    rows: --augment none) -> pptrain eval --json -> results.json and the tables (report.py)

Client augmentation ("in client"): ``ppencrypt dataset --copies K`` encrypts K augmented
copies of the plain training images (pipeline/ppencrypt/augment.py: the cloud's own crop + flip draws,
border 128) under the client's key, and the server trains on them with no further
augmentation. pptrain counts an epoch as one pass over the originals, so a client row runs
the cloud row's epochs, batches and learning-rate curve; with the default ``K = epochs`` every
image is seen ``epochs`` times under ``epochs`` independent draws. A smaller K bounds the
client's disk and encryption work for long schedules (CIFAR-10 x 300 epochs would be 46 GB);
each draw is then seen about epochs / K times.

The key lives under keys/ (or where ``--key`` says), never in the work directory.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from ppencrypt.ciphers import cipher_class
from pptrain.errors import TrainerError
from pptrain.metrics import evaluated, read_metrics
from pptrain.run import METRICS, RunDir

from .commands import Command, CommandFailed, Runner, command
from .errors import UsageError
from .rows import ROWS, Row, select
from .staging import FMNIST

# make reproduce-smoke: the harness end to end in a few minutes on 2 CPU cores, not accuracy.
SMOKE = {"epochs": 1, "width": 4, "batch_size": 64, "train_subset": 300, "test_subset": 200}


@dataclass(frozen=True, kw_only=True)
class Config:
    src: str = FMNIST  # a dataset folder ppencrypt reads: Fashion-MNIST IDX, cifar-10-batches-py, ...
    work: str = "out/reproduce"  # staged sources, encrypted datasets, runs, results.json, results.md
    key: str = "keys/reproduce.key"  # the client's key (made by ppencrypt keygen when missing)
    epochs: int = 30  # the fast recipe's
    width: int = 64  # ResNet-18
    device: str = "auto"
    batch_size: int | None = None  # None: the recipe's (512)
    copies: int | None = None  # client augmentation: augmented copies of the train split; None: epochs
    train_subset: int | None = None  # first N training images only
    test_subset: int | None = None  # first N test images only
    block_size: int = 4  # ppencrypt --block-size for le, ele, etc
    pad: int = 4  # largest shift, cloud and client alike
    seed: int = 0
    workers: int | None = None  # ppencrypt --workers; None: its default
    rows: tuple[str, ...] = ()  # row ids (rows.py); empty: every row
    in_process: bool = False  # run the CLIs inside this process (tests)

    @property
    def client_copies(self) -> int:
        return self.epochs if self.copies is None else self.copies


def check(cfg: Config) -> tuple[Row, ...]:
    """The rows ``cfg`` names, once its numbers fit together."""
    for name in ("epochs", "width", "batch_size", "copies", "train_subset", "test_subset", "block_size"):
        value, option = getattr(cfg, name), f"--{name.replace('_', '-')}"
        if value is not None and value < 1:
            raise UsageError(option, f"{option} must be at least 1, not {value}")
    try:
        return select(list(cfg.rows))
    except KeyError as e:
        raise UsageError("--rows", f"unknown row {e.args[0]!r} (choose from {', '.join(r.id for r in ROWS)})") from None


@dataclass
class Step:
    """One preparation step (key, subset, an encrypted dataset)."""

    command: str
    seconds: float | None = None
    error: str | None = None


@dataclass
class WorkDir:
    """Where the harness's files lie under ``--work``."""

    work: Path

    @property
    def subset(self) -> Path:
        return self.work / "plain-subset"

    def data(self, name: str) -> Path:
        return self.work / "data" / name

    def run(self, row_id: str) -> Path:
        return self.work / "runs" / row_id


def encrypt_command(cfg: Config, src: str, out: Path, row: Row) -> Command:
    cipher = cipher_class(row.method)
    key = ("--key", cfg.key) if cipher.needs_key else ()
    block = ("--block-size", cfg.block_size) if cipher.family == "block" else ()
    workers = ("--workers", cfg.workers) if cfg.workers else ()
    copies = ("--copies", cfg.client_copies, "--pad", cfg.pad, "--augment-seed", cfg.seed) if row.where == "client" else ()
    return command("ppencrypt", "dataset", src, out, *key, "--method", row.method, "--key-scope", row.scope,
                   *block, *copies, *workers, "--overwrite", "--quiet")  # fmt: skip


def augment_from(cfg: Config, row: Row) -> int | None:
    """A row with an augmentation schedule trains the first third of its epochs unaugmented."""
    return cfg.epochs // 3 + 1 if row.later else None


def train_command(cfg: Config, data: Path, run: Path, row: Row) -> Command:
    client = row.where == "client"
    batch = ("--batch-size", cfg.batch_size) if cfg.batch_size else ()
    later = ("--augment-from", augment_from(cfg, row)) if row.later else ()
    return command("pptrain", data, "--run-dir", run, "--epochs", cfg.epochs, "--width", cfg.width, *batch,
                   "--adapt", row.adapt, "--augment", "none" if client else "crop,flip", *later, "--pad", cfg.pad,
                   "--seed", cfg.seed, "--device", cfg.device, "--quiet")  # fmt: skip


class Harness:
    def __init__(self, cfg: Config, log: Callable[[str], None]):
        self.cfg, self.log = cfg, log
        self.rows = check(cfg)
        self.paths = WorkDir(Path(cfg.work))
        self.run = Runner(cfg.in_process, log)
        self.steps: dict[str, Step] = {}

    def step(self, name: str, cmd: Command, after: tuple[str, ...] = ()) -> Step:
        """Run a preparation step unless one it depends on failed."""
        failed = [a for a in after if self.steps.get(a) and self.steps[a].error]
        if failed:
            s = Step(cmd.shown, error=f"skipped: step {failed[0]!r} failed")
        else:
            try:
                done = self.run(cmd)
                s = Step(cmd.shown, seconds=done.seconds)
            except CommandFailed as e:
                self.log(f"  failed: {e}")
                s = Step(cmd.shown, error=str(e))
        self.steps[name] = s
        return s

    def prepare(self) -> None:
        cfg, rows = self.cfg, self.rows
        src, base = cfg.src, ()
        if any(cipher_class(r.method).needs_key for r in rows) and not Path(cfg.key).exists():
            self.step("key", command("ppencrypt", "keygen", cfg.key))
        if cfg.train_subset or cfg.test_subset:
            sizes = ("--train", cfg.train_subset) if cfg.train_subset else ()
            sizes += ("--test", cfg.test_subset) if cfg.test_subset else ()
            self.step("subset", command("experiments", "subset", src, self.paths.subset, *sizes))
            src, base = str(self.paths.subset), ("subset",)
        for r in rows:
            if f"data:{r.dataset}" in self.steps:
                continue
            self.step(f"data:{r.dataset}", encrypt_command(cfg, src, self.paths.data(r.dataset), r), ("key", *base))

    def train_row(self, r: Row) -> dict:
        data, run_dir = self.paths.data(r.dataset), self.paths.run(r.id)
        train, evaluate = train_command(self.cfg, data, run_dir, r), command("pptrain", "eval", run_dir, data, "--device", self.cfg.device, "--json")
        rec = {**asdict(r), "dataset": r.dataset, "train_command": train.shown, "eval_command": evaluate.shown,
               "accuracy": None, "loss": None, "last_epoch_acc": None, "train_s": None, "eval_s": None,
               "device_name": None, "error": None}  # fmt: skip
        prep = self.steps[f"data:{r.dataset}"]
        if prep.error:
            rec["error"] = f"dataset {r.dataset}: {prep.error}"
            return rec
        shutil.rmtree(run_dir, ignore_errors=True)  # the harness owns its work directory
        try:
            trained = self.run(train)
            scored = self.run(evaluate)
        except CommandFailed as e:
            self.log(f"  failed: {e}")
            rec["error"] = str(e)
            return rec
        result = json.loads(scored.stdout)  # pptrain eval --json: our own process's line
        try:  # the run directory is read as the server may have left it (pptrain.run, pptrain.metrics)
            config, history = RunDir(run_dir).read_record(), read_metrics(run_dir / METRICS)
        except TrainerError as e:
            self.log(f"  failed: {e}")
            rec["error"] = str(e)
            return rec
        last = evaluated(history[-1])[1] if history else None
        rec.update(accuracy=100 * result["accuracy"], loss=result["loss"], last_epoch_acc=None if last is None else 100 * last,
                   train_s=trained.seconds, eval_s=scored.seconds, device_name=config.runtime.device_name,
                   device=config.runtime.device, adapt_resolved=config.model.adapt,
                   train_images=config.dataset.counts.get("train"), test_images=result["images"])  # fmt: skip
        self.log(f"  {r.id}: test accuracy {rec['accuracy']:.2f}% (train {trained.seconds:.0f} s)")
        return rec


def reproduce(cfg: Config, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
              invocation: str | None = None) -> dict:
    """Every row of ``cfg``; returns (and writes to ``work``/results.json) the record report.py renders."""
    import torch

    t0 = time.perf_counter()
    h = Harness(cfg, log)
    slow = cpu_warning(cfg, torch.cuda.is_available())
    if slow:
        log(slow)
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    h.prepare()
    rows = [h.train_row(r) for r in h.rows]
    record = {
        "config": {**asdict(cfg), "rows": [r.id for r in h.rows], "client_copies": cfg.client_copies},
        "invocation": invocation,
        "source_name": dataset_name(cfg.src),
        "started": started,
        "total_s": time.perf_counter() - t0,
        "host": {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu_name(), "cores": os.cpu_count()},
        "steps": {k: asdict(v) for k, v in h.steps.items()},
        "rows": rows,
    }
    (Path(cfg.work) / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


# Rows of the full-width defaults take hours each on a CPU (width 64: 76 images/s on 2 cores,
# docs/benchmarks.md); width 8 for 4 epochs is the CPU record's budget (50 min for all rows).
CPU_WIDTH = 16


def cpu_warning(cfg: Config, cuda: bool) -> str | None:
    """A warning when ``cfg`` puts a GPU-sized budget on the CPU."""
    on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not cuda)
    if on_cpu and cfg.width > CPU_WIDTH:
        return (f"warning: width {cfg.width} on the CPU takes hours per row; on a CPU try --width 8 --epochs 4 "
                "(make reproduce WIDTH=8 EPOCHS=4: 50 minutes for every row on 2 cores)")
    return None


def cpu_name() -> str:
    """The CPU's model name (Linux), else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def dataset_name(src: str) -> str:
    name = Path(src).resolve().name
    known = {"fashion-mnist": "Fashion-MNIST", "cifar-10-batches-py": "CIFAR-10", "cifar-100-python": "CIFAR-100"}
    return known.get(name.lower(), name)


def smoke(cfg: Config) -> Config:
    """``cfg`` with the smoke budget wherever it still has the defaults."""
    default = Config()
    return replace(cfg, **{k: v for k, v in SMOKE.items() if getattr(cfg, k) == getattr(default, k)}, copies=cfg.copies or 1)
