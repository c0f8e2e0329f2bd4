"""checkpoint.pt: everything a resumed run needs, written atomically, read without pickle code.

Contents: the completed epoch count, the model's and the optimiser's state dicts, and the
metrics history. No RNG state: data order and augmentation draws are seeded per epoch, and
the learning rate is a function of the step. Loading uses ``weights_only=True``, so a
checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ppencrypt.atomic import atomic_writer

from .errors import CheckpointError

FORMAT = "pptrain-checkpoint"
VERSION = 1


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


def load(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors for damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pptrain checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')}, this pptrain reads {VERSION}")
    return state


def load_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:2] or [str(e)]
        raise CheckpointError(f"{path}: does not fit the model ({first[0].strip()})") from None
