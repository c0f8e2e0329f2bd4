"""The run directory: config.json (record.py), metrics.jsonl, checkpoint.pt, curves.png
(docs/trainer.md), and the rules for continuing a run: which options a --resume may change,
and which datasets a run may be resumed or evaluated on.

A run directory may come from the server (``pptrain eval`` and ``predict`` on a copy of it), so
its files are read as a dataset's are (ppencrypt.formats.files): never through a symbolic link,
only a regular file (a FIFO cannot block the open), at most a size known before reading.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path

import torch

from ppencrypt.atomic import write_file
from ppencrypt.formats import Manifest
from ppencrypt.formats.files import FileProblem, read_regular, read_text

from .errors import RunDirError
from .record import FORMAT as RECORD_FORMAT, DatasetRecord, RunRecord, RuntimeRecord
from .settings import PER_INVOCATION, Settings

CONFIG, METRICS, CHECKPOINT, CURVES = "config.json", "metrics.jsonl", "checkpoint.pt", "curves.png"
# What must agree between a run and a dataset it continues on (a moved or re-stored copy is fine).
IDENTITY = ("method", "key_scope", "key_id", "shape", "classes")
MAX_CONFIG = 1 << 22  # bytes of config.json: the class names of the largest manifest (1 MiB) and room for the rest
# Every name pptrain writes in a run directory: the files above, --trace's, and what an atomic
# write killed half-way leaves (ppencrypt.atomic: .<name>.<16 hex digits>.tmp).
OURS = re.compile(r"\.?(config\.json|metrics\.jsonl|checkpoint\.pt|curves\.png|trace-rank\d+\.jsonl)(\.[0-9a-f]{16}\.tmp)?")


class Holds(Enum):
    """What a --run-dir holds, as far as starting a run there goes."""

    NOTHING = "nothing"  # absent, or an empty directory
    FILES = "files"  # files of someone else's and no run: a run is written beside them, --overwrite refused
    UNSTARTED = "unstarted"  # a run's config.json, but no epoch finished: nothing to lose by starting afresh
    RUN = "run"  # a run with a checkpoint: --resume continues it, --overwrite replaces it
    FOREIGN = "foreign"  # not a directory, or a config.json / checkpoint.pt that is not a pptrain run's


@dataclass
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def curves(self) -> Path:
        return self.path / CURVES

    def holds(self) -> tuple[Holds, str | None]:
        """What the directory holds, and the first entry in it that pptrain did not write (None if none)."""
        if not self.path.exists() and not self.path.is_symlink():
            return Holds.NOTHING, None
        if not self.path.is_dir():
            return Holds.FOREIGN, None
        names = sorted(p.name for p in self.path.iterdir())
        stranger = next((n for n in names if not OURS.fullmatch(n)), None)
        if CONFIG in names and self._config_is_a_run_record():
            return (Holds.RUN if CHECKPOINT in names else Holds.UNSTARTED), stranger
        if CONFIG in names or CHECKPOINT in names:
            return Holds.FOREIGN, stranger
        return (Holds.FILES if names else Holds.NOTHING), stranger

    def check_start(self, overwrite: bool) -> Holds:
        """What the directory holds, if a new run may start in it: a run only with
        ``overwrite``, and with it nothing pptrain did not write; never someone else's
        config.json or checkpoint.pt."""
        holds, stranger = self.holds()
        if holds is Holds.RUN and not overwrite:
            raise RunDirError(f"{self.path}: already holds a run; pass --resume to continue it, --overwrite to start it afresh, "
                              "or choose another --run-dir")  # fmt: skip
        if holds is Holds.FOREIGN:
            what = "holds a config.json or checkpoint.pt that is not a pptrain run's" if self.path.is_dir() else "is not a directory"
            raise RunDirError(f"{self.path}: {what}; choose another --run-dir")
        if overwrite and stranger is not None:
            raise RunDirError(f"{self.path}: holds {stranger!r}, which pptrain did not write; --overwrite replaces only a "
                              "directory that holds a pptrain run and nothing else (or is empty)")  # fmt: skip
        return holds

    def _config_is_a_run_record(self) -> bool:
        """Whether config.json says it is pptrain's (any version: an old run is still a run)."""
        try:
            doc = json.loads(read_regular(self.config, limit=MAX_CONFIG))
        except (OSError, FileProblem, ValueError, RecursionError):
            return False
        return isinstance(doc, dict) and doc.get("format") == RECORD_FORMAT

    def clear(self) -> None:
        """Remove every file pptrain wrote here (holds() found nothing else): the directory
        itself stays, so a link or mount point the user made is kept."""
        for p in self.path.iterdir():
            if OURS.fullmatch(p.name) and (p.is_file() or p.is_symlink()):
                p.unlink()

    def write_record(self, record: RunRecord) -> None:
        write_atomic(self.config, record.to_json())

    def read_record(self) -> RunRecord:
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: no such run directory")
        # as a dataset's files are read: no link followed, a regular file (a FIFO does not block), bounded
        text = read_text(self.config, MAX_CONFIG, RunDirError, missing=f"{self.path}: not a pptrain run (no {CONFIG})", detail=True)
        return RunRecord.from_json(text, str(self.config))


def write_atomic(path: Path, text: str) -> None:
    """Whole or not at all, and never through a link planted at a temporary name."""
    write_file(path, text.encode("utf-8"))


def resume_settings(run: RunDir, saved_settings: Settings, given: Settings, explicit: set[str]) -> Settings:
    """The saved settings, with the per-invocation options from ``given``; any other option
    given explicitly with a different value is refused: it would not continue the run."""
    values = {}
    for f in fields(Settings):
        old, new = getattr(saved_settings, f.name), getattr(given, f.name)
        if f.name in PER_INVOCATION:
            values[f.name] = new
            continue
        if f.name in explicit and new != old:
            raise RunDirError(
                f"{run.config}: this run was started with {_option(f.name, old)}; resuming with "
                f"{_option(f.name, new)} would not continue it (start a new --run-dir instead)"
            )
        values[f.name] = old
    return Settings(**values)


def _option(field: str, value) -> str:
    """How the command line says ``field = value``."""
    if field == "adapt":
        return f"--adapt {value}" if value else "the method's default adaptation network"
    name = "--" + field.replace("_", "-")
    if isinstance(value, bool):
        return name if value else f"no {name}"
    return f"{name} {','.join(value) if isinstance(value, tuple) else value}"


def check_dataset(run: RunDir, recorded_record: DatasetRecord, m: Manifest, shown: str, strict: bool = True) -> list[str]:
    """Differences between the dataset a run was trained on and ``m``. With ``strict`` (resume)
    any difference is an error; otherwise (eval) shape and classes must agree, and a
    different encryption is returned as a warning."""
    recorded, now = asdict(recorded_record), asdict(DatasetRecord.of(m, shown))
    diffs = [k for k in IDENTITY if recorded.get(k) != now[k]]
    if "shape" in diffs:
        raise RunDirError(f"{shown}: images are {_shape(now['shape'])}, but run {run.path} takes {_shape(recorded['shape'])}")
    if "classes" in diffs and len(now["classes"]) != len(recorded.get("classes") or []):
        raise RunDirError(f"{shown}: {len(now['classes'])} classes, but run {run.path} has {len(recorded.get('classes') or [])}")
    if strict and diffs:
        k = diffs[0]
        raise RunDirError(f"{shown}: its {k.replace('_', ' ')} is {_brief(now[k])}, but run {run.path} was trained on {_brief(recorded.get(k))}")
    return [f"{shown}: {k.replace('_', ' ')} {_brief(now[k])} differs from the run's {_brief(recorded.get(k))}" for k in diffs]


def _shape(s) -> str:
    h, w, c = s
    return f"{w}x{h} with {c} channel{'s' if c != 1 else ''}"


def _brief(v) -> str:
    if isinstance(v, list) and len(v) > 4 and not isinstance(v[0], int):
        return f"[{', '.join(map(str, v[:3]))}, ... ({len(v)})]"
    return str(v)


def runtime_record(device: torch.device, world: int) -> RuntimeRecord:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return RuntimeRecord(device=str(device), device_name=name, world=world, torch=torch.__version__)
