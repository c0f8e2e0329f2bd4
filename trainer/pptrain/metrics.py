"""metrics.jsonl, curves.png and the lines a person reads: what a run reports as it goes.

The evaluation's fields are named after the split evaluated (``val_acc`` on a dataset with
``val`` and no ``test``), so a reader never mistakes a validation score for a test score.
Run directories written before that always said ``test_*``; :func:`evaluated` reads either.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ppencrypt.atomic import atomic_writer
from ppencrypt.formats.files import read_text
from ppencrypt.formats.jsonsafe import load_json

from .errors import RunDirError
from .run import write_atomic

MAX_METRICS = 1 << 24  # bytes of metrics.jsonl: about 200 per epoch, so some 80,000 epochs
PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a split's name (manifest.py's rule): the evaluation's, printed on resume
TRAIN_FIELDS = ("epoch", "lr", "train_loss", "train_acc")
TIMING_FIELDS = ("images_per_s", "seconds")
LEGACY = "test"  # the evaluation's name in run directories written before it followed the split
TRAIN_EVALUATED = "train_eval"  # --test-split train: its fields must not collide with the training batches'


def eval_name(split: str) -> str:
    """The prefix of the evaluation's fields for ``split``."""
    return TRAIN_EVALUATED if split == "train" else split


def fields_for(name: str) -> tuple[str, ...]:
    """One line of metrics.jsonl, in order, when the evaluation is named ``name``."""
    return (*TRAIN_FIELDS, f"{name}_loss", f"{name}_acc", *TIMING_FIELDS)


def eval_of(rec: dict) -> tuple[str, float | None, float | None]:
    """The evaluation in one record: its name, loss and accuracy (None without the split).
    The one field ending in ``_acc`` that is not ``train_acc``; ``test`` in older records."""
    names = [k[: -len("_acc")] for k in rec if k.endswith("_acc") and k != "train_acc"]
    name = names[0] if len(names) == 1 else LEGACY
    return name, rec.get(f"{name}_loss"), rec.get(f"{name}_acc")


def evaluated(rec: dict) -> tuple[float | None, float | None]:
    """The evaluation's (loss, accuracy) of one record, whatever the split it is named after."""
    return eval_of(rec)[1:]


def is_record(r) -> bool:
    """One line of metrics.jsonl as the trainer writes it: its fields, numbers (NaN for a run
    that diverged; None for the evaluated split's when there is none), the evaluation named as
    a split is (a checkpoint's history, checked before a resume prints any of it)."""
    if not isinstance(r, dict) or not all(isinstance(k, str) for k in r):
        return False
    name = eval_of(r)[0]
    optional = (f"{name}_loss", f"{name}_acc")
    return PLAIN_NAME.fullmatch(name) is not None and all(
        k in r and (r[k] is None and k in optional or isinstance(r[k], (int, float)) and not isinstance(r[k], bool)) for k in fields_for(name)
    )


def renamed(history: list[dict], name: str) -> list[dict]:
    """``history`` with its evaluation named ``name``: a resumed run from before the fields
    followed the split continues under one name, not two."""
    out = []
    for rec in history:
        old, loss, acc = eval_of(rec)
        rec = {k: v for k, v in rec.items() if k not in (f"{old}_loss", f"{old}_acc")}
        out.append({k: rec.get(k) for k in TRAIN_FIELDS} | {f"{name}_loss": loss, f"{name}_acc": acc} | {k: rec.get(k) for k in TIMING_FIELDS})
    return out


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl of a run directory that may come from the server (the experiment harness
    reads it back): read as a dataset's files are (no link followed, a regular file, a FIFO not
    waited on, at most MAX_METRICS bytes), every line strict JSON (ppencrypt.formats.jsonsafe) and
    one record per epoch, numbered from 1, as write_metrics writes them; else RunDirError naming
    the file (and the line) in one line."""
    text = read_text(path, MAX_METRICS, RunDirError, missing=f"{path}: no such file (the run wrote no epoch)")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        row = load_json(line, where, RunDirError, constants=True)
        if not is_record(row) or row["epoch"] != number:
            raise RunDirError(f"{where}: not the metrics of epoch {number} as pptrain writes them")
        rows.append(row)
    return rows


def write_metrics(path: Path, history: list[dict]) -> None:
    """Rewritten whole from the history each epoch: after a resume the file matches the
    checkpoint even if the interrupted process had logged an epoch it never saved."""
    write_atomic(path, "".join(json.dumps(rec) + "\n" for rec in history))


def curves_figure(history: list[dict], title: str):
    """The figure of curves.png: loss and accuracy (in percent, as the CLI prints it) per
    epoch, train and the split evaluated. Returned before it is saved, so what is drawn can
    be read back (tick labels, axis labels, title)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    name = eval_of(history[0])[0] if history else LEGACY
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4), layout="constrained")  # not pyplot's: nothing global kept
    FigureCanvasAgg(fig)  # so that fig.canvas.draw() renders the tick labels for a reader
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, key, label, scale in ((ax_loss, "loss", "loss", 1.0), (ax_acc, "acc", "accuracy (%)", 100.0)):
        drawn = []
        for split, field in (("train", f"train_{key}"), (name, f"{name}_{key}")):
            values = [None if r.get(field) is None else scale * r[field] for r in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [math.nan if v is None else v for v in values], marker="o", markersize=4, label=split)
                drawn += [v for v in values if v is not None and math.isfinite(v)]
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        # Whole epochs only, and room around a single one (matplotlib's default is 0.96..1.04).
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(min(epochs, default=1) - 0.5, max(epochs, default=1) + 0.5)
        ax.set_ylim(*(_accuracy_range(drawn) if key == "acc" else _loss_range(drawn)))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend()
    fig.suptitle(title)
    return fig


def _accuracy_range(values: list[float]) -> tuple[float, float]:
    """Up to 100 %, from the ten below the lowest value: one epoch at 86 % reads 80..100."""
    low = min(values, default=0.0)
    return max(0.0, 10 * math.floor((low - 1) / 10)), 100.0


def _loss_range(values: list[float]) -> tuple[float, float]:
    """From 0, so that one epoch's loss is a height, not a dot in the middle of nowhere."""
    return 0.0, 1.1 * max(values, default=1.0) or 1.0


def plot_curves(path: Path, history: list[dict], title: str) -> None:
    fig = curves_figure(history, title)
    with atomic_writer(path) as f:
        fig.savefig(f, dpi=100, format="png")


def _pct(v) -> str:
    return "   -  " if v is None else f"{100 * v:6.2f}"


def _loss(v) -> str:
    return "  -   " if v is None else f"{v:.4f}"


def epoch_line(rec: dict, epochs: int) -> str:
    name, loss, acc = eval_of(rec)
    return (
        f"epoch {rec['epoch']:>{len(str(epochs))}}/{epochs}  lr {rec['lr']:.4g}  "
        f"train loss {_loss(rec['train_loss'])} acc {_pct(rec['train_acc'])}%  "
        f"{name} loss {_loss(loss)} acc {_pct(acc)}%  "
        f"{rec['images_per_s']:.0f} img/s  {rec['seconds']:.1f} s"
    )


def summary_line(run_dir: Path, history: list[dict], epochs: int) -> str:
    if not history:
        return f"{run_dir}: no epoch completed"
    last = history[-1]
    seconds = sum(r["seconds"] for r in history)
    ips = sorted(r["images_per_s"] for r in history)[len(history) // 2]  # the median: robust to warm-up
    state = "done" if last["epoch"] >= epochs else f"stopped after epoch {last['epoch']} (resume with --resume)"
    name, loss, acc = eval_of(last)
    shown = name if name != TRAIN_EVALUATED else "train (evaluated)"
    test = f"no {shown} split" if acc is None else f"{shown} acc {100 * acc:.2f}% loss {loss:.4f}"
    return f"{run_dir}: {state}, {last['epoch']}/{epochs} epochs, {test}, train acc {100 * last['train_acc']:.2f}%, {ips:.0f} train img/s, {seconds:.0f} s"
