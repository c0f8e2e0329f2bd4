"""checkpoint.pt: everything a resumed run needs, written atomically, read without pickle code.

Contents: the completed epoch count, the model's and the optimiser's state dicts, and the
metrics history. No RNG state: data order and augmentation draws are seeded per epoch, and
the learning rate is a function of the step. Loading uses ``weights_only=True``, so a
checkpoint from elsewhere cannot run code.

Nor can it make the reader allocate more than the model the run record describes: the model's
shapes are computed first on the meta device (:func:`shapes_of`: nothing allocated), and the
file is read as a dataset's files are (a regular file, no link followed, a FIFO does not block)
only if it is no larger than that model's tensors twice over (weights and SGD's momentum) and
OVERHEAD, and is a zip archive as torch.save writes it: every member stored, none compressed
(torch would inflate a compressed one, whatever its size: a bomb). Every tensor it holds must then
have the shape and type of the model's, the history must be as the trainer writes it.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import torch

from ppencrypt.atomic import atomic_writer
from ppencrypt.formats.files import FileProblem, open_regular

from .errors import CheckpointError
from .metrics import is_record
from .record import MAX_EPOCHS

FORMAT = "pptrain-checkpoint"
VERSION = 1
OVERHEAD = 16 << 20  # bytes beyond the tensors: the pickle, the zip's headers, the history, the optimiser's settings


def save(path: Path, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, history: list[dict]) -> None:
    state = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history,
    }
    with atomic_writer(path) as f:  # a crash leaves the previous checkpoint, never half of a new one
        torch.save(state, f)


Shape = tuple[tuple[int, ...], torch.dtype]


@dataclass(frozen=True)
class Shapes:
    """A model's tensors as its state dict names them, and its parameters in order (the
    optimiser's numbering), each as (shape, dtype): known before anything is allocated."""

    tensors: dict[str, Shape]
    parameters: list[Shape]

    @property
    def count(self) -> int:
        """Parameters (the run record's ``model.parameters``)."""
        return sum(math.prod(shape) for shape, _ in self.parameters)

    @property
    def limit(self) -> int:
        """The most bytes a checkpoint of this model may have."""
        return 2 * sum(math.prod(shape) * dtype.itemsize for shape, dtype in self.tensors.values()) + OVERHEAD


def shapes_of(build: Callable[[], torch.nn.Module]) -> Shapes:
    """The shapes of the model ``build`` makes, built on the meta device: no memory for its weights."""
    with torch.device("meta"):
        model = build()
    return Shapes({k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()},
                  [(tuple(p.shape), p.dtype) for p in model.parameters()])  # fmt: skip


def load(path: Path, shapes: Shapes) -> dict:
    """The checkpoint at ``path``, which must fit the model of ``shapes`` (see the module's text)."""
    try:
        fd, st = open_regular(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no checkpoint") from None
    except FileProblem as e:
        raise CheckpointError(f"{path}: {e}") from None
    with os.fdopen(fd, "rb") as f:
        if st.st_size > shapes.limit:
            raise CheckpointError(f"{path}: {st.st_size} bytes, more than the {shapes.limit} a checkpoint of the run's model may have")
        check_archive(f, st.st_size, path)
        try:
            f.seek(0)
            state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises pickle, zip and runtime errors for damaged files
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pptrain checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ascii(state.get('version'))[:40]}, this pptrain reads {VERSION}")
    check_state(state, shapes, path)
    return state


def check_archive(f: BinaryIO, size: int, path: Path) -> None:
    """A zip archive as torch.save writes it: every member stored, the members no larger together than the file."""
    try:
        members = zipfile.ZipFile(f).infolist()
    except Exception as e:  # zipfile raises BadZipFile, and struct, value and EOF errors for damaged directories
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if any(m.compress_type != zipfile.ZIP_STORED or m.compress_size != m.file_size for m in members):
        raise CheckpointError(f"{path}: a compressed member (torch.save stores tensors as they are; torch would inflate it whatever its size)")
    if sum(m.file_size for m in members) > size:
        raise CheckpointError(f"{path}: its members claim more bytes than the file holds")


def check_state(state: dict, shapes: Shapes, path: Path) -> None:
    """Every tensor of the model's shape and type, the optimiser's state numbered and shaped as
    the model's parameters, the epoch count and the history as the trainer writes them."""
    weights = state.get("model")
    names = set(weights) if isinstance(weights, dict) else set()
    extra, missing = names - set(shapes.tensors), set(shapes.tensors) - names
    if extra or missing:
        what = f"a tensor {ascii(min(extra, key=str))[:80]} the model lacks" if extra else f"no tensor {min(missing)}"
        raise CheckpointError(f"{path}: does not fit the model ({what})")
    for name, shape in shapes.tensors.items():
        if not _fits(weights[name], shape):
            raise CheckpointError(f"{path}: does not fit the model ({name} is {_shown(weights[name])}, the model's is {_shown(shape)})")
    if state.get("optimizer") is not None and not _optimizer_fits(state["optimizer"], shapes.parameters):
        raise CheckpointError(f"{path}: the optimiser's state does not fit the model")
    epoch, history = state.get("epoch"), state.get("history")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= MAX_EPOCHS:
        raise CheckpointError(f"{path}: epoch {ascii(epoch)[:40]} is not in 0..{MAX_EPOCHS}")
    if not isinstance(history, list) or len(history) != epoch or not all(is_record(r) for r in history):
        raise CheckpointError(f"{path}: the history is not one record of the metrics per epoch")


def _fits(t, shape: Shape) -> bool:
    return isinstance(t, torch.Tensor) and t.layout == torch.strided and (tuple(t.shape), t.dtype) == shape


def _shown(t) -> str:
    if isinstance(t, tuple):
        return f"{list(t[0])} {t[1]}"
    return f"{list(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else "not a tensor"


def _optimizer_fits(opt, parameters: list[Shape]) -> bool:
    """SGD's state dict: one group of every parameter, numbered in order, a momentum buffer (or
    None) of each one's shape, settings that are numbers, flags or None."""
    if not isinstance(opt, dict) or not isinstance(opt.get("state"), dict) or not isinstance(opt.get("param_groups"), list):
        return False
    groups = opt["param_groups"]
    if len(groups) != 1 or not isinstance(groups[0], dict) or groups[0].get("params") != list(range(len(parameters))):
        return False
    if not all(v is None or isinstance(v, (bool, int)) or isinstance(v, float) and math.isfinite(v) for k, v in groups[0].items() if k != "params"):
        return False
    for index, entry in opt["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(parameters) or not isinstance(entry, dict) or set(entry) - {"momentum_buffer"}:
            return False
        if entry.get("momentum_buffer") is not None and not _fits(entry["momentum_buffer"], parameters[index]):
            return False
    return True


def load_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:2] or [str(e)]
        raise CheckpointError(f"{path}: does not fit the model ({first[0].strip()})") from None
