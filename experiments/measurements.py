"""The record's measurements, kept in the repository (docs/record.jsonl): one JSON line per
finished cell, which is what the tables are rendered from.

The run directories are scratch — git-ignored, hours of CPU each on this machine, and gone with
the machine — so a cell's outcome is copied here as soon as its run directory holds every
epoch, and a cell found here is not run again. A line:

    {"cell": "after-8k-plain-e3", "command": "OMP_NUM_THREADS=1 pptrain ...",
     "test_acc": [0.793, 0.859, 0.8825], "test_loss": [0.67, 0.5, 0.42], "seconds": 125.0}

plus ``"rounded": true`` on cells whose run directories were lost before this file existed and
whose numbers were read back from the tables rendered from them (per-epoch accuracy to 0.1
points, loss to 0.01, the final accuracy exact).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pptrain.metrics import evaluated

from .errors import ExperimentError


@dataclass(frozen=True, kw_only=True)
class Measurement:
    cell: str
    command: str  # as the record shows it
    test_acc: tuple[float, ...]  # per epoch, fraction correct
    test_loss: tuple[float, ...]  # per epoch
    seconds: float  # training and evaluation, all epochs
    rounded: bool = False

    @classmethod
    def from_metrics(cls, cell: str, command: str, rows: list[dict]) -> Measurement:
        """From a run directory's metrics.jsonl rows (the evaluation named after its split, or
        ``test_*`` as pptrain wrote it before)."""
        losses, accs = zip(*(evaluated(r) for r in rows)) if rows else ((), ())
        return cls(cell=cell, command=command, test_acc=tuple(accs), test_loss=tuple(losses), seconds=round(sum(r["seconds"] for r in rows), 1))

    def line(self) -> str:
        d = asdict(self)
        if not self.rounded:
            del d["rounded"]
        return json.dumps(d | {"test_acc": list(self.test_acc), "test_loss": list(self.test_loss)})

    @classmethod
    def parse(cls, text: str, where: str) -> Measurement:
        try:
            d = json.loads(text)
            m = cls(cell=str(d["cell"]), command=str(d["command"]), test_acc=tuple(float(a) for a in d["test_acc"]),
                    test_loss=tuple(float(v) for v in d["test_loss"]), seconds=float(d["seconds"]),
                    rounded=bool(d.get("rounded", False)))  # fmt: skip
        except (ValueError, KeyError, TypeError) as e:
            raise ExperimentError(f"{where}: not a record measurement ({type(e).__name__}: {e})") from None
        if not m.test_acc or len(m.test_acc) != len(m.test_loss):
            raise ExperimentError(f"{where}: {m.cell} has {len(m.test_acc)} accuracies and {len(m.test_loss)} losses")
        return m


class Store:
    """docs/record.jsonl: read whole, rewritten whole (atomically) on every save."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict[str, Measurement]:
        if not self.path.exists():
            return {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        found = [Measurement.parse(t, f"{self.path}:{i}") for i, t in enumerate(lines, 1) if t.strip()]
        return {m.cell: m for m in found}

    def save(self, m: Measurement, order: list[str]) -> bool:
        """Add or replace ``m``; lines in ``order`` (the record's cell order), unknown ids last.
        False when the store already held exactly this."""
        kept = self.load()
        if kept.get(m.cell) == m:
            return False
        kept[m.cell] = m
        rank = {c: i for i, c in enumerate(order)}
        text = "".join(kept[c].line() + "\n" for c in sorted(kept, key=lambda c: (rank.get(c, len(rank)), c)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # a file of the repository, not a secret (mkstemp makes it 0600)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        return True
