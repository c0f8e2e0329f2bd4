"""config.json: the record of a run, typed and checked on read, as manifest.json is.

It records the options as asked (:class:`Settings`) and as they ran (:class:`Resolved`), the
dataset's identity — the manifest's method, key scope and key id, never a key: the server never
holds one, and a key id only names a key — the model to rebuild, and where it ran. It is the
contract for ``--resume``, ``pptrain eval`` and ``pptrain predict``, and for the reproduction
harness, which reads the run's results through it.

Version 2 added ``model.stem`` and ``model.adapt_group`` (the invariant network's pixel
group), ``dataset.copies`` (client-augmented copies), ``resolved.warmup_steps``,
``resolved.scaled``, ``resolved.calibrate`` and ``resolved.augment_from``, and dropped
``resolved.warmup`` (a share of the steps). Version 3 added ``resolved.augment_until``,
``settings.augment_until`` (the last augmented epoch) and the recipe's schedule,
``resolved.tail`` (the default augmentation stops before the last epochs). Older
run directories are still read (evaluated, not resumed): the
fields they lack take the values those runs had (the CIFAR stem, one copy, augmentation from
the first epoch to the last, no calibration). Version 1 also covers the run directories written before
``--adapt`` took a name: their ``model.adapt`` is a bool, and ``model.adapt_block`` and
``resolved.adapt`` are absent.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from ppencrypt.formats import Manifest
from ppencrypt.formats.jsonsafe import load_json

from .errors import RunDirError
from .recipe import Recipe
from .settings import Settings, adapt_name

FORMAT, VERSION = "pptrain-run", 3
READS = (1, 2, 3)  # the versions from_json accepts


@dataclass(kw_only=True)
class Resolved:
    """What ran: the recipe with the run's epochs, batch and peak lr, and the choices made."""

    epochs: int
    batch_size: int  # all ranks together
    lr: float  # peak
    momentum: float
    nesterov: bool
    weight_decay: float
    label_smoothing: float
    schedule: str
    augment: list[str]
    stream: bool  # the streaming loader, not the in-memory one
    adapt: str | None = None  # None in runs from before --adapt took a name
    warmup_steps: int | None = None  # version 2; version 1 recorded ``warmup``, a share of the steps
    warmup: float | None = None  # version 1 only
    scaled: bool = False  # the batch and lr were sized to the train split
    calibrate: int = 0  # images of BatchNorm calibration before each evaluation
    augment_from: int = 1  # the first epoch with augmentation
    augment_until: int | None = None  # version 3: the last one; None in older runs: the last epoch
    tail: int = 0  # version 3: the recipe's unaugmented last epochs (recipe.py), whether or not they were used

    @classmethod
    def of(cls, recipe: Recipe, s: Settings, *, augment: tuple[str, ...], stream: bool, adapt: str, augment_from: int,
           augment_until: int) -> Resolved:  # fmt: skip
        values = {**asdict(recipe), "epochs": s.epochs, "batch_size": s.batch_size, "lr": s.lr}
        return cls(**values, augment=list(augment), stream=stream, adapt=adapt, augment_from=augment_from,
                   augment_until=augment_until)  # fmt: skip


@dataclass(kw_only=True)
class DatasetRecord:
    """The dataset the run trained on, from its manifest."""

    path: str
    method: str
    key_scope: str | None
    key_id: str | None
    params: dict
    shape: list[int]  # H, W, C
    classes: list[str]
    storage: str
    counts: dict  # split -> samples
    copies: int = 1  # client-augmented copies per training image (ppencrypt dataset --copies)

    @classmethod
    def of(cls, m: Manifest, path: str) -> DatasetRecord:
        return cls(path=path, method=m.cipher.method, key_scope=m.cipher.key_scope, key_id=m.cipher.key_id, params=dict(m.cipher.params),
                   shape=list(m.shape), classes=list(m.classes), storage=m.storage, counts={name: s.count for name, s in m.splits.items()},
                   copies=m.augment.copies if m.augment is not None else 1)  # fmt: skip


@dataclass(kw_only=True)
class ModelRecord:
    """Enough to rebuild the network (model.PrivacyResNet) before loading its weights."""

    in_channels: int
    num_classes: int
    width: int
    adapt: str  # pixel | invariant | tanaka | none
    adapt_block: int | None = None  # tanaka's block side
    parameters: int | None = None
    stem: str = "cifar"  # version 2; every version 1 run had the CIFAR stem
    adapt_group: str | None = None  # invariant's pixel group (the manifest's cipher.pixel_group)


@dataclass(kw_only=True)
class RuntimeRecord:
    device: str  # as torch names it: cpu, cuda:0
    device_name: str
    world: int  # processes
    torch: str  # torch's version


@dataclass(kw_only=True)
class RunRecord:
    settings: Settings  # as asked (None: the recipe's value)
    resolved: Resolved
    dataset: DatasetRecord
    model: ModelRecord
    runtime: RuntimeRecord
    version: int = VERSION  # as read; written as VERSION

    def to_json(self) -> str:
        doc = {"format": FORMAT, "version": VERSION, "settings": self.settings.to_dict(), "resolved": asdict(self.resolved),
               "dataset": asdict(self.dataset), "model": asdict(self.model), "runtime": asdict(self.runtime)}  # fmt: skip
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, shown: str) -> RunRecord:
        doc = load_json(text, shown, RunDirError)  # the server may have written it: strict JSON, shallow
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise RunDirError(f"{shown}: not a pptrain run configuration")
        if not isinstance(doc.get("version"), int) or isinstance(doc["version"], bool) or doc["version"] not in READS:
            raise RunDirError(f"{shown}: version {doc.get('version')}, this pptrain reads {', '.join(map(str, READS[:-1]))} and {READS[-1]}")
        for key in ("settings", "resolved", "dataset", "model", "runtime"):
            if not isinstance(doc.get(key), dict):
                raise RunDirError(f"{shown}: missing {key!r}")
        model = dict(doc["model"], adapt=adapt_name(doc["model"].get("adapt")))
        settings = dict(doc["settings"], adapt=adapt_name(doc["settings"].get("adapt")))
        return cls(
            settings=Settings.from_dict(typed(Settings, settings, f"{shown}: settings", partial=True)),
            resolved=Resolved(**typed(Resolved, doc["resolved"], f"{shown}: resolved")),
            dataset=DatasetRecord(**typed(DatasetRecord, doc["dataset"], f"{shown}: dataset")),
            model=ModelRecord(**typed(ModelRecord, model, f"{shown}: model")),
            runtime=RuntimeRecord(**typed(RuntimeRecord, doc["runtime"], f"{shown}: runtime")),
            version=doc["version"],
        )


def typed(cls, doc: dict, where: str, partial: bool = False) -> dict:
    """The fields of dataclass ``cls`` from ``doc``, each checked against its annotation. A
    field with a default may be absent; with ``partial`` every field may (its default is used)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        if f.name not in doc:
            if partial or f.default is not MISSING:
                continue
            raise RunDirError(f"{where}: missing field {f.name!r}")
        value = doc[f.name]
        if not _fits(value, hints[f.name]):
            raise RunDirError(f"{where}: field {f.name!r} has the wrong type")
        out[f.name] = value
    return out


def _fits(value: Any, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    kind = {tuple: list}.get(origin or hint, origin or hint)  # JSON has lists where we keep tuples
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if not isinstance(value, kind):
        return False
    args = typing.get_args(hint)
    if kind is list and args and args[0] is not Ellipsis:
        return all(_fits(v, args[0]) for v in value)
    return True
