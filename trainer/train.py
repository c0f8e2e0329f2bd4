"""The training loop: one code path for CPU, one GPU and torchrun's many.

    settings -> dataset (pipeline.formats) -> loaders (data.py / stream.py)
             -> model (model.py) -> per epoch: augment on the device, step, evaluate
             -> rank 0: checkpoint.pt, metrics.jsonl, curves.png

Determinism: the model is initialised from the seed; the data order and the augmentation
draws of epoch e come from (seed, e, rank); the learning rate is a function of the step.
On CPU with deterministic algorithms, a run interrupted after any epoch and resumed ends
with the same metrics as one that was not.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.formats import Dataset, open_dataset

from . import checkpoint, distributed
from .augment import BatchAugment, block_method_warning, normalise, parse_augment
from .data import Loader, epoch_rng, fits_in_memory, make_loader
from .distributed import Dist, memory_format, model_input
from .errors import OptionError, RunDirError
from .metrics import epoch_line, plot_curves, summary_line, write_metrics
from .model import TANAKA_BLOCK, build_model
from .recipe import RECIPES
from .run import RunDir, check_dataset, dataset_record, resume_settings, runtime_record
from .settings import Settings

AUGMENT_STREAM = 3  # seed word of the augmentation draws (data.py and stream.py use 0..2)


@dataclass
class Outcome:
    run_dir: Path
    history: list[dict]
    epochs: int
    summary: str
    main: bool  # rank 0: the process that reports


def configure_determinism(device: torch.device, seed: int) -> None:
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        # bf16 convolutions on the GPU pick algorithms by speed; exactness is a CPU promise.
        torch.backends.cudnn.benchmark = True


def check_options(s: Settings, ds: Dataset, d: Dist) -> None:
    m = ds.manifest
    if s.train_split not in m.splits:
        raise OptionError("--train-split", f"{ds.root}: no split {s.train_split!r} (it has {', '.join(m.splits)})")
    if s.recipe not in RECIPES:
        raise OptionError("--recipe", f"unknown recipe {s.recipe!r} (choose from {', '.join(RECIPES)})")
    for name, value in (("--epochs", s.epochs), ("--batch-size", s.batch_size), ("--width", s.width)):
        if value is not None and value < 1:
            raise OptionError(name, f"{name} must be at least 1, not {value}")
    if s.batch_size is not None and s.batch_size % d.world:
        raise OptionError("--batch-size", f"batch size {s.batch_size} does not split evenly over {d.world} processes")
    if s.pad < 0 or s.pad >= min(m.height, m.width):
        raise OptionError("--pad", f"--pad {s.pad} must be in 0..{min(m.height, m.width) - 1} for {m.width}x{m.height} images")
    adaptation(s, ds)


def adaptation(s: Settings, ds: Dataset) -> tuple[str, int | None]:
    """The adaptation network the run uses and, for ``tanaka``, its block side: ``--adapt``, or
    by default ``tanaka`` for a block cipher (its manifest records ``block_size``) and ``pixel``
    otherwise. Tanaka's network needs the cipher's block side as its kernel, stride and pixel
    shuffle factor (4, Tanaka's, when the manifest names none)."""
    m = ds.manifest
    params = m.cipher.params or {}
    adapt = s.adapt or ("tanaka" if "block_size" in params else "pixel")
    if adapt != "tanaka":
        return adapt, None
    block = int(params.get("block_size", TANAKA_BLOCK))
    if block < 1 or m.height % block or m.width % block:
        raise OptionError(
            "--adapt", f"{ds.root}: --adapt tanaka needs image sides divisible by the block size {block}, "
            f"these images are {m.width}x{m.height} (use --adapt pixel or none)"
        )  # fmt: skip
    return adapt, block


def prepare(given: Settings, explicit: set[str], resume: bool, d: Dist) -> tuple[Settings, Settings, RunDir, Dataset, dict | None]:
    """The settings as asked (from config.json when resuming) and resolved, the run
    directory, the dataset and the checkpoint to continue from."""
    run = RunDir(Path(given.run_dir))
    state = None
    ds = open_dataset(given.data)
    if resume:
        config = run.read_config()
        if not run.checkpoint.exists():
            raise RunDirError(f"{run.path}: no checkpoint.pt to resume from (the run stopped before its first epoch ended)")
        asked = resume_settings(run, config["settings"], given, explicit)
        check_dataset(run, config["dataset"], ds.manifest, given.data, strict=True)
        state = checkpoint.load(run.checkpoint)
    else:
        if run.holds_run():
            raise RunDirError(f"{run.path}: already holds a run; pass --resume to continue it, or choose another --run-dir")
        asked = given
    s = asked.resolved()
    check_options(s, ds, d)
    return asked, s, run, ds, state


def key_scope(ds: Dataset) -> str | None:
    return ds.manifest.cipher.key_scope if ds.manifest.cipher.key_id is not None else None


def train(given: Settings, explicit: set[str] = frozenset(), resume: bool = False, quiet: bool = False,
          log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> Outcome:  # fmt: skip
    d = distributed.from_env()
    device = distributed.pick_device(given.device, d)
    distributed.start(d, device)
    try:
        return _train(given, explicit, resume, quiet, log, d, device)
    finally:
        d.close()


def _train(given, explicit, resume, quiet, log, d: Dist, device: torch.device) -> Outcome:
    asked, s, run, ds, state = prepare(given, explicit, resume, d)
    d.barrier()  # every rank has checked the run directory before rank 0 writes into it
    m = ds.manifest
    warn = (lambda text: log(f"warning: {text}")) if d.main else (lambda text: None)
    recipe = RECIPES[s.recipe]
    names = parse_augment(s.augment, m.shape, key_scope(ds))
    if block_method_warning(names, m.cipher.method):
        warn(block_method_warning(names, m.cipher.method))
    aug = BatchAugment(names, m.shape, len(m.classes), s.pad, s.mix_alpha)
    configure_determinism(device, s.seed)
    if device.type == "cpu" and d.active:
        torch.set_num_threads(max(1, torch.get_num_threads() // d.world))  # ranks share the cores

    has_test = s.test_split in m.splits
    if not has_test:
        warn(f"{s.data}: no {s.test_split!r} split; test metrics are left empty")
    splits = [s.train_split] + ([s.test_split] if has_test else [])
    stream = s.stream or not fits_in_memory(ds, splits, s.memory_limit)
    per_rank = s.batch_size // d.world
    loader_args = dict(d=d, device=device, seed=s.seed, stream=stream, workers=s.workers, buffer=s.shuffle_buffer)
    train_loader = make_loader(ds, s.train_split, per_rank, train=True, **loader_args)
    test_loader = make_loader(ds, s.test_split, per_rank, train=False, **loader_args) if has_test else None

    adapt, block = adaptation(s, ds)
    model, net, optimizer = build_training(s, m, adapt, block, state, run, device, d)
    start_epoch, history = (int(state["epoch"]), list(state["history"])) if state is not None else (0, [])

    if d.main:
        run.path.mkdir(parents=True, exist_ok=True)
        params = sum(p.numel() for p in model.parameters())
        resolved = {**asdict(recipe), "epochs": s.epochs, "batch_size": s.batch_size, "lr": s.lr, "augment": list(names),
                    "stream": stream, "adapt": adapt}  # fmt: skip
        model_rec = {"in_channels": m.channels, "num_classes": len(m.classes), "width": s.width, "adapt": adapt,
                     "adapt_block": block, "parameters": params}  # fmt: skip
        run.write_config(asked, resolved, dataset_record(m, s.data), model_rec, runtime_record(device, d.world))
    trace = (run.path / f"trace-rank{d.rank}.jsonl") if s.trace else None
    if trace is not None:
        run.path.mkdir(parents=True, exist_ok=True)
        if start_epoch == 0:
            trace.write_text("")

    steps_per_epoch = train_loader.batches
    total_steps = steps_per_epoch * s.epochs
    last = s.epochs if s.stop_after is None else min(s.epochs, s.stop_after)
    for epoch in range(start_epoch, last):
        t0 = time.perf_counter()
        train_stats, lr, seen = train_epoch(net, optimizer, train_loader, aug, recipe, s, epoch, steps_per_epoch,
                                            total_steps, d, device, quiet)  # fmt: skip
        train_seconds = time.perf_counter() - t0
        test_loss = test_acc = None
        if test_loader is not None:
            test_loss, test_acc = evaluate(net, test_loader, device, d, epoch=0)
        rec = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": train_stats[0],
            "train_acc": train_stats[1],
            "test_loss": test_loss,
            "test_acc": test_acc,
            "images_per_s": train_loader.images / train_seconds,
            "seconds": time.perf_counter() - t0,
        }
        history.append(rec)
        if trace is not None:
            with open(trace, "a") as f:
                f.write(json.dumps({"epoch": epoch + 1, "rank": d.rank, "batches": [b.tolist() for b in seen]}) + "\n")
        if d.main:
            checkpoint.save(run.checkpoint, epoch + 1, model, optimizer, history)
            write_metrics(run.metrics, history)
            plot_curves(run.curves, history, f"{Path(s.data).name}: {m.cipher.method}, width {s.width}")
            if not quiet:
                log(epoch_line(rec, s.epochs))
        d.barrier()
    if d.main and not run.metrics.exists():
        write_metrics(run.metrics, history)
    return Outcome(run.path, history, s.epochs, summary_line(run.path, history, s.epochs), d.main)


def build_training(s: Settings, m, adapt: str, block: int | None, state: dict | None, run: RunDir, device: torch.device, d: Dist):
    """The model with adaptation network ``adapt`` (from the checkpoint when resuming), what
    the loop calls (DDP-wrapped, compiled, as asked), and the optimiser."""
    recipe = RECIPES[s.recipe]
    model = build_model(m.channels, len(m.classes), s.width, adapt, block or TANAKA_BLOCK)
    if state is not None:
        checkpoint.load_model_state(model, state, run.checkpoint)
    model = model.to(device, memory_format=memory_format(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                                weight_decay=recipe.weight_decay)  # fmt: skip
    if state is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    net = model
    if d.active:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if s.compile:
        net = torch.compile(net)
    return model, net, optimizer


def train_epoch(net, optimizer, loader: Loader, aug: BatchAugment, recipe, s: Settings, epoch: int, steps_per_epoch: int,
                total_steps: int, d: Dist, device: torch.device, quiet: bool):  # fmt: skip
    net.train()
    rng = epoch_rng(s.seed, epoch, AUGMENT_STREAM, d.rank)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    seen = []
    cuda = device.type == "cuda"
    step = epoch * steps_per_epoch
    lr = s.lr
    bar = tqdm(total=loader.batches, desc=f"epoch {epoch + 1}/{s.epochs}", unit="batch", file=sys.stderr,
               disable=True if (quiet or not d.main) else None, leave=False, dynamic_ncols=True)  # fmt: skip
    for images, labels, indices in loader.epoch(epoch):
        lr = recipe.lr_at(s.lr, step, total_steps, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, target = aug(images, labels, aug.draw(len(labels), rng))
        x = model_input(x, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = net(x)
            loss = F.cross_entropy(out.float(), target, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().double() * len(labels)
        correct += (out.detach().argmax(1) == labels).sum()
        count += len(labels)
        step += 1
        if s.trace:
            seen.append(indices.cpu())
        bar.update(1)
    bar.close()
    totals = d.all_sum(torch.stack([loss_sum, correct.double(), torch.tensor(float(count), device=device, dtype=torch.float64)]))
    n = max(totals[2].item(), 1.0)
    return (totals[0].item() / n, totals[1].item() / n), lr, seen


@torch.no_grad()
def evaluate(net, loader: Loader, device: torch.device, d: Dist, epoch: int = 0) -> tuple[float, float]:
    """Cross-entropy (no smoothing) and accuracy over the whole split, all ranks summed."""
    net.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for images, labels, _ in loader.epoch(epoch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = net(model_input(normalise(images), device))
        loss_sum += F.cross_entropy(out.float(), labels, reduction="sum").double()
        correct += (out.argmax(1) == labels).sum()
        count += len(labels)
    totals = d.all_sum(torch.stack([loss_sum, correct.double(), torch.tensor(float(count), device=device, dtype=torch.float64)]))
    n = max(totals[2].item(), 1.0)
    return totals[0].item() / n, totals[1].item() / n

