"""metrics.jsonl, curves.png and the lines a person reads: what a run reports as it goes."""

from __future__ import annotations

import json
from pathlib import Path

from ppencrypt.atomic import atomic_writer
from ppencrypt.formats.files import FileProblem, read_regular
from ppencrypt.formats.jsonsafe import load_json

from .errors import RunDirError
from .run import write_atomic

FIELDS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "seconds")
OPTIONAL = ("test_loss", "test_acc")  # None when the run had no split to evaluate on
MAX_METRICS = 1 << 24  # bytes of metrics.jsonl: about 200 per epoch, so some 80,000 epochs


def is_record(r) -> bool:
    """One line of metrics.jsonl as the trainer writes it: its fields, numbers (NaN for a run
    that diverged; None for the test split's when there is none)."""
    return isinstance(r, dict) and all(
        k in r and (r[k] is None and k in OPTIONAL or isinstance(r[k], (int, float)) and not isinstance(r[k], bool)) for k in FIELDS
    )


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl of a run directory that may come from the server (the experiment harness
    reads it back): read as a dataset's files are (no link followed, a regular file, a FIFO not
    waited on, at most MAX_METRICS bytes), every line strict JSON (ppencrypt.formats.jsonsafe) and
    one record per epoch, numbered from 1, as write_metrics writes them; else RunDirError naming
    the file (and the line) in one line."""
    try:
        text = read_regular(path, limit=MAX_METRICS).decode("utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such file (the run wrote no epoch)") from None
    except FileProblem as e:
        raise RunDirError(f"{path}: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: cannot read ({type(e).__name__})") from None
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
    write_atomic(path, "".join(json.dumps({k: rec[k] for k in FIELDS}) + "\n" for rec in history))


def plot_curves(path: Path, history: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        for split in ("train", "test"):
            values = [r[f"{split}_{key}"] for r in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    with atomic_writer(path) as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)


def _pct(v) -> str:
    return "   -  " if v is None else f"{100 * v:6.2f}"


def _loss(v) -> str:
    return "  -   " if v is None else f"{v:.4f}"


def epoch_line(rec: dict, epochs: int) -> str:
    return (
        f"epoch {rec['epoch']:>{len(str(epochs))}}/{epochs}  lr {rec['lr']:.4g}  "
        f"train loss {_loss(rec['train_loss'])} acc {_pct(rec['train_acc'])}%  "
        f"test loss {_loss(rec['test_loss'])} acc {_pct(rec['test_acc'])}%  "
        f"{rec['images_per_s']:.0f} img/s  {rec['seconds']:.1f} s"
    )


def summary_line(run_dir: Path, history: list[dict], epochs: int) -> str:
    if not history:
        return f"{run_dir}: no epoch completed"
    last = history[-1]
    seconds = sum(r["seconds"] for r in history)
    ips = sorted(r["images_per_s"] for r in history)[len(history) // 2]  # the median: robust to warm-up
    state = "done" if last["epoch"] >= epochs else f"stopped after epoch {last['epoch']} (resume with --resume)"
    test = "no test split" if last["test_acc"] is None else f"test acc {100 * last['test_acc']:.2f}% loss {last['test_loss']:.4f}"
    return f"{run_dir}: {state}, {last['epoch']}/{epochs} epochs, {test}, train acc {100 * last['train_acc']:.2f}%, {ips:.0f} train img/s, {seconds:.0f} s"
