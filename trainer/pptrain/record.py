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
``resolved.tail`` (the default augmentation stops before the last epochs). ``model.arch`` and
``settings.arch`` (``--arch``) came later within version 3: a record without them is the
CIFAR ResNet-18's, the only network there was (an older pptrain reading a record that names
another arch builds a ResNet-18, which its checkpoint check then refuses). Older
run directories are still read (evaluated, not resumed): the
fields they lack take the values those runs had (the CIFAR stem, one copy, augmentation from
the first epoch to the last, no calibration). Version 1 also covers the run directories written before
``--adapt`` took a name: their ``model.adapt`` is a bool, and ``model.adapt_block`` and
``resolved.adapt`` are absent.

A run directory may come from the server, so reading checks what the manifest reader checks
(run.py reads the file as a dataset's files are read): every string free of control
characters and at most MAX_STRING characters, every number finite and within what pptrain
writes (:data:`LIMITS`, :data:`CHOICES`), and the model record consistent with the dataset
record — before anything is built from it.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from ppencrypt.formats import Manifest
from ppencrypt.formats.jsonsafe import load_json
from ppencrypt.formats.manifest import KEY_SCOPES, MAX_SIDE, class_names_problem, control_problem

from .errors import RunDirError
from .arch import ARCHS
from .model import INVARIANT_GROUPS, STEMS, TANAKA_BLOCK, ModelSpec
from .recipe import RECIPES, Recipe
from .settings import ADAPT_CHOICES, MAX_WIDTH, STEM_CHOICES, Settings, adapt_name

FORMAT, VERSION = "pptrain-run", 3
READS = (1, 2, 3)  # the versions from_json accepts
SECTIONS = ("settings", "resolved", "dataset", "model", "runtime")
MAX_STRING = 4096  # characters of any string (as in a manifest)
MAX_DEPTH = 16  # nesting of the JSON document (the cipher's params are the deepest part)
MAX_EPOCHS = 1 << 20
# The integers a record may hold, by field name in whichever section has it: what pptrain could
# have written, no more (resolved.augment_until is 0 when no epoch is augmented). The model is
# bounded further by its checkpoint (checkpoint.py).
LIMITS = {
    "epochs": (1, MAX_EPOCHS), "augment_from": (1, MAX_EPOCHS), "augment_until": (0, MAX_EPOCHS), "stop_after": (1, MAX_EPOCHS),
    "tail": (0, MAX_EPOCHS), "batch_size": (1, 1 << 30), "warmup_steps": (0, 1 << 40), "calibrate": (0, 1 << 40),
    "memory_limit": (0, 1 << 40), "cache_limit": (1, 1 << 40), "workers": (0, 1024), "prefetch": (0, 1024),
    "shuffle_buffer": (1, 1 << 30), "pad": (0, MAX_SIDE), "seed": (-(1 << 63), (1 << 64) - 1), "width": (1, MAX_WIDTH),
    "in_channels": (1, 3), "num_classes": (1, 1 << 20), "adapt_block": (1, MAX_SIDE), "parameters": (1, 1 << 40),
    "copies": (1, 1 << 40), "world": (1, 1 << 16),
}  # fmt: skip
# The names a record may hold, by (section, field).
CHOICES = {
    ("settings", "recipe"): tuple(RECIPES), ("settings", "stem"): STEM_CHOICES, ("settings", "adapt"): (*ADAPT_CHOICES, None),
    ("resolved", "adapt"): (*ADAPT_CHOICES, None), ("model", "adapt"): ADAPT_CHOICES, ("model", "stem"): STEMS,
    ("model", "adapt_group"): (*INVARIANT_GROUPS, None), ("dataset", "key_scope"): (*KEY_SCOPES, None),
    ("settings", "arch"): ARCHS, ("model", "arch"): ARCHS,
}  # fmt: skip


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
    """Enough to rebuild the network (model.build_model, with the dataset's image size) before loading its weights."""

    in_channels: int
    num_classes: int
    width: int
    adapt: str  # pixel | invariant | tanaka | blockset | none
    adapt_block: int | None = None  # tanaka's and blockset's block side
    parameters: int | None = None
    stem: str = "cifar"  # version 2; every version 1 run had the CIFAR stem
    adapt_group: str | None = None  # invariant's pixel group (the manifest's cipher.pixel_group)
    arch: str = "cifar-resnet18"  # the backbone (arch.py); absent in runs from before --arch

    def spec(self, shape: list[int]) -> ModelSpec:
        """The network to rebuild, for images of ``shape`` (H, W, C: the dataset record's)."""
        return ModelSpec(arch=self.arch, in_channels=self.in_channels, num_classes=self.num_classes, width=self.width, adapt=self.adapt,
                         block=self.adapt_block or TANAKA_BLOCK, group=self.adapt_group, stem=self.stem, height=shape[0],
                         image_width=shape[1])  # fmt: skip


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
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version not in READS:
            raise RunDirError(f"{shown}: version {ascii(version)[:40]}, this pptrain reads {', '.join(map(str, READS[:-1]))} and {READS[-1]}")
        for key in SECTIONS:
            if not isinstance(doc.get(key), dict):
                raise RunDirError(f"{shown}: missing {key!r}")
        for key in SECTIONS:
            check_values(doc[key], f"{shown}: {key}")
        model = dict(doc["model"], adapt=adapt_name(doc["model"].get("adapt")))
        settings = dict(doc["settings"], adapt=adapt_name(doc["settings"].get("adapt")))
        record = cls(
            settings=Settings.from_dict(typed(Settings, settings, f"{shown}: settings", partial=True)),
            resolved=Resolved(**typed(Resolved, doc["resolved"], f"{shown}: resolved")),
            dataset=DatasetRecord(**typed(DatasetRecord, doc["dataset"], f"{shown}: dataset")),
            model=ModelRecord(**typed(ModelRecord, model, f"{shown}: model")),
            runtime=RuntimeRecord(**typed(RuntimeRecord, doc["runtime"], f"{shown}: runtime")),
            version=version,
        )
        record.check(shown)
        return record

    def check(self, shown: str) -> None:
        """Every field within what pptrain writes (:data:`LIMITS`, :data:`CHOICES`), and the
        model record consistent with the dataset record: nothing is built from it otherwise."""
        for section in SECTIONS:
            for name, value in vars(getattr(self, section)).items():
                where = f"{shown}: {section}: {name}"
                if name in LIMITS and isinstance(value, int):
                    low, high = LIMITS[name]
                    if not low <= value <= high:
                        raise RunDirError(f"{where} {value} is not in {low}..{high}")
                if (section, name) in CHOICES and value not in CHOICES[section, name]:
                    raise RunDirError(f"{where} {value!r} is none of {', '.join(map(str, CHOICES[section, name]))}")
        d, m = self.dataset, self.model
        if len(d.shape) != 3 or not all(1 <= side <= MAX_SIDE for side in d.shape[:2]) or d.shape[2] not in (1, 3):
            raise RunDirError(f"{shown}: dataset: shape {d.shape} is no image shape (H, W, C: sides 1..{MAX_SIDE}, 1 or 3 channels)")
        problem = class_names_problem(d.classes)
        if problem:
            raise RunDirError(f"{shown}: dataset: {problem}")
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 40 for n in d.counts.values()):
            raise RunDirError(f"{shown}: dataset: counts must be numbers of images")
        if (m.in_channels, m.num_classes) != (d.shape[2], len(d.classes)) or (m.adapt_block or 1) > min(d.shape[:2]):
            raise RunDirError(f"{shown}: the dataset record's shape or classes do not fit the model record")


def check_values(doc: Any, where: str) -> None:
    """Every string in ``doc`` (keys too) free of control characters and at most MAX_STRING
    characters, every number finite and below 2**64 in size, nothing nested deeper than MAX_DEPTH."""
    stack = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            problem = control_problem(value) or (f"a string of {len(value)} characters (at most {MAX_STRING})" if len(value) > MAX_STRING else None)
            if problem:
                raise RunDirError(f"{where}: {problem}")
        elif isinstance(value, float) and not math.isfinite(value) or isinstance(value, int) and not -(1 << 64) < value < 1 << 64:
            raise RunDirError(f"{where}: a number that is not finite or too large")
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise RunDirError(f"{where}: nested more than {MAX_DEPTH} deep")
            items = [*value, *value.values()] if isinstance(value, dict) else value
            stack += [(v, depth + 1) for v in items]


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
