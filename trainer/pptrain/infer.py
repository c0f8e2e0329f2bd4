"""Using a trained run: accuracy on a dataset (``pptrain eval``) and class probabilities for
encrypted query images (``pptrain predict``). Both rebuild the model from config.json and
the weights from checkpoint.pt; neither needs, or could use, a key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ppencrypt.formats import open_dataset
from ppencrypt.imageio import load_image, probe_image

from . import checkpoint
from .augment import normalise
from .data import LoaderSpec, fits_in_memory, make_loader
from .device import memory_format, model_input, pick_device
from .distributed import Dist
from .errors import OptionError, QueryError, RunDirError
from .loop import evaluate  # the training loop's own, so both report the same numbers
from .model import build_model
from .record import RunRecord
from .run import RunDir, check_dataset


@dataclass
class TrainedRun:
    run: RunDir
    record: RunRecord
    model: torch.nn.Module
    device: torch.device

    @property
    def classes(self) -> list[str]:
        return self.record.dataset.classes

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.record.dataset.shape)


def load_run(run_dir: str, device: str = "auto") -> TrainedRun:
    """The run's model with its weights. config.json is read and checked whole first
    (record.py: every field bounded, the model consistent with the dataset); the model it
    describes is then built on the meta device, its parameter count checked against the
    record's, and the checkpoint checked against its shapes (checkpoint.py) — all before the
    model is allocated."""
    run = RunDir(Path(run_dir))
    record = run.read_record()
    spec = record.model

    def build() -> torch.nn.Module:
        return build_model(spec.spec(record.dataset.shape))

    try:
        shapes = checkpoint.shapes_of(build)
    except ValueError as e:
        raise RunDirError(f"{run.config}: {e}") from None
    if spec.parameters is not None and spec.parameters != shapes.count:
        raise RunDirError(f"{run.config}: model: {spec.parameters} parameters recorded, but the model it describes has {shapes.count}")
    state = checkpoint.load(run.checkpoint, shapes)
    model = build()
    checkpoint.load_model_state(model, state, run.checkpoint)
    dev = pick_device(device, Dist())
    model = model.to(dev, memory_format=memory_format(dev)).eval()
    return TrainedRun(run, record, model, dev)


@dataclass
class Evaluation:
    split: str
    count: int
    accuracy: float
    loss: float
    warnings: list[str] = field(default_factory=list)


def evaluate_run(t: TrainedRun, data: str, split: str, batch_size: int, memory_limit: int, workers: int) -> Evaluation:
    if batch_size < 1:
        raise OptionError("--batch-size", f"--batch-size must be at least 1, not {batch_size}")
    ds = open_dataset(data)
    warnings = check_dataset(t.run, t.record.dataset, ds.manifest, data, strict=False)
    ds.split(split)  # a missing split is an error naming the ones there are
    stream = not fits_in_memory(ds, [split], memory_limit)
    loader = make_loader(ds, LoaderSpec(split=split, batch=batch_size, train=False, stream=stream, workers=workers), Dist(), t.device)
    loss, acc = evaluate(t.model, loader, t.device, Dist())
    return Evaluation(split, ds.manifest.splits[split].count, acc, loss, warnings)


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), most probable first


def check_queries(t: TrainedRun, paths: list[str]) -> None:
    """Refuse any query whose size or channel count differs from the run's, before any work:
    converting it would give neither the ciphertext that was made nor anything the model saw."""
    h, w, c = t.shape
    for path in paths:
        p = probe_image(path, path)
        if (p.height, p.width, p.channels) != (h, w, c):
            raise QueryError(
                f"{path}: {p.width}x{p.height} with {p.channels} channel{'s' if p.channels != 1 else ''}, but run "
                f"{t.run.path} takes {w}x{h} with {c}; encrypt queries with `ppencrypt image --like` the training dataset"
            )


def load_queries(t: TrainedRun, paths: list[str]) -> torch.Tensor:
    """Encrypted query PNGs (``ppencrypt image``) as one uint8 N x H x W x C batch."""
    return torch.stack([torch.tensor(load_image(path, path, t.shape[2], None)) for path in paths])


@torch.no_grad()
def predict(t: TrainedRun, paths: list[str], top: int = 1, batch: int = 256) -> list[Prediction]:
    check_queries(t, paths)
    k = min(top, len(t.classes))
    out = []
    for at in range(0, len(paths), batch):
        chunk = paths[at : at + batch]
        images = load_queries(t, chunk).to(t.device)
        with torch.autocast(t.device.type, dtype=torch.bfloat16, enabled=t.device.type == "cuda"):
            logits = t.model(model_input(normalise(images), t.device))
        values, indices = torch.softmax(logits.float(), dim=1).topk(k, dim=1)
        out += [
            Prediction(path, [(t.classes[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist())])
            for path, vs, ix in zip(chunk, values.cpu(), indices.cpu())
        ]
    return out
