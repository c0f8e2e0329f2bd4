"""A training run, from options to run directory: one code path for CPU, one GPU and torchrun's many.

    prepare   settings (config.json when resuming) -> dataset (ppencrypt.formats) -> the recipe
              sized to the train split -> every option checked against the dataset; the
              adaptation network, the stem and the augmentation chosen once
    build     loaders (data.py) -> model (model.py) -> optimiser -> config.json (record.py)
    run       per epoch: loop.train_epoch, loop.evaluate, then rank 0 writes checkpoint.pt,
              metrics.jsonl and curves.png

Determinism: the model is initialised from the seed; the data order and the augmentation
draws of epoch e come from (seed, e, rank) (seeding.py); the learning rate is a function of
the step. On CPU with deterministic algorithms, a run interrupted after any epoch and resumed
ends with the same metrics as one that was not.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from ppencrypt.atomic import open_append, write_file
from ppencrypt.formats import Dataset, Manifest, ShardCache, dataset_name, open_dataset, shown_url

from . import checkpoint, distributed
from .augment import BatchAugment, block_method_warning, parse_augment
from .batchnorm import calibrate
from .data import MIB, LoaderSpec, fits_in_memory, make_loader
from .device import memory_format, pick_device
from .distributed import Dist
from .errors import OptionError, RunDirError
from .loader import Loader
from .loop import EpochStats, Loop, evaluate, train_epoch
from .metrics import epoch_line, eval_name, plot_curves, renamed, summary_line, write_metrics
from .arch import DEFAULT_ARCH, ArchError, check_fits, check_stem, stem_for
from .model import BLOCK_ADAPTATIONS, INVARIANT_GROUPS, TANAKA_BLOCK, ModelSpec, build_model
from .progress import Progress, plan_line
from .recipe import RECIPES
from .record import VERSION, DatasetRecord, ModelRecord, Resolved, RunRecord
from .run import Holds, RunDir, check_dataset, resume_settings, runtime_record
from .settings import DEFAULT_AUGMENT, Settings


@dataclass
class Outcome:
    run_dir: Path
    history: list[dict]
    epochs: int
    summary: str
    main: bool  # rank 0: the process that reports


@dataclass(kw_only=True)
class TrainPlan:
    """Everything settled before anything is built: options checked, choices made once."""

    asked: Settings  # as given, or as config.json recorded them when resuming
    s: Settings  # resolved: the recipe's values filled in
    run: RunDir
    ds: Dataset  # opened once, its manifest checked
    state: dict | None  # the checkpoint to continue from
    augment: tuple[str, ...]  # parse_augment's names; () for none
    augment_from: int  # the first epoch (from 1) with augmentation
    augment_until: int  # the last epoch (from 1) with augmentation
    adapt: str  # pixel | invariant | tanaka | blockset | none
    block: int | None  # tanaka's and blockset's block side, in pixels
    group: str | None  # invariant's pixel group
    stem: str  # cifar | imagenet
    copies: int  # client-augmented copies per image in the train split (1: none)
    holds: Holds  # what --run-dir held: the run to continue, one to replace (--overwrite, or never past epoch 1), or nothing

    @property
    def spec(self) -> ModelSpec:
        m = self.ds.manifest
        return ModelSpec(arch=self.s.arch, in_channels=m.channels, num_classes=len(m.classes), width=self.s.width, adapt=self.adapt,
                         block=self.block or TANAKA_BLOCK, group=self.group, stem=self.stem, height=m.height, image_width=m.width)  # fmt: skip

    def new_model(self) -> torch.nn.Module:
        """The network this run trains, initialised afresh (its shapes only, under the meta device)."""
        return build_model(self.spec)


def configure_determinism(device: torch.device, seed: int) -> None:
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        # bf16 convolutions on the GPU pick algorithms by speed; exactness is a CPU promise.
        torch.backends.cudnn.benchmark = True


def require_split(option: str, name: str, ds: Dataset) -> None:
    if name not in ds.manifest.splits:
        raise OptionError(option, f"{ds.root}: no split {name!r} (it has {', '.join(ds.manifest.splits)})")


def check_split_and_recipe(s: Settings, ds: Dataset) -> None:
    """What sizing the recipe needs: a train split to count, and a recipe to size."""
    require_split("--train-split", s.train_split, ds)
    if s.recipe not in RECIPES:
        raise OptionError("--recipe", f"unknown recipe {s.recipe!r} (choose from {', '.join(RECIPES)})")


def test_split_for(s: Settings, ds: Dataset, explicit: set[str]) -> Settings:
    """The split evaluated every epoch: --test-split as given (a split the dataset lacks is a
    typo, refused); by default 'test', else 'val' — photo folders often come as train/ and
    val/ (ImageNet's layout) — else none."""
    if "test_split" in explicit:
        require_split("--test-split", s.test_split, ds)
        return s
    if s.test_split not in ds.manifest.splits and "val" in ds.manifest.splits:
        return replace(s, test_split="val")
    return s


def check_options(s: Settings, ds: Dataset, d: Dist) -> None:
    """The settings' own rules (Settings.check), then those that need the dataset."""
    s.check(d.world)
    m = ds.manifest
    if s.pad < 0 or s.pad >= min(m.height, m.width):
        raise OptionError("--pad", f"--pad {s.pad} must be in 0..{min(m.height, m.width) - 1} for {m.width}x{m.height} images")


def default_adaptation(m) -> str:
    """``--adapt``'s default: the manifest's network for its cipher ([P]'s ``pixel``, Tanaka's
    for block ciphers), except that the invariant network replaces ``pixel`` wherever the
    cipher's pixel group is one it handles and is not the identity (docs/results.md measures it
    against ``pixel`` under both key scopes)."""
    if m.cipher.adapt == "pixel" and m.cipher.pixel_group in INVARIANT_GROUPS and m.cipher.pixel_group != "identity":
        return "invariant"
    return m.cipher.adapt


def adaptation(s: Settings, ds: Dataset) -> tuple[str, int | None, str | None]:
    """The adaptation network the run uses, with, for ``tanaka`` and ``blockset``, its block side and, for
    ``invariant``, the cipher's pixel group: ``--adapt``, or :func:`default_adaptation`.
    Tanaka's network needs the cipher's block side as its kernel, stride and pixel shuffle
    factor (4, Tanaka's, for a pixel-wise cipher); the invariant one takes its statistic from
    the manifest's pixel group, never from the method's name."""
    m = ds.manifest
    adapt = s.adapt or default_adaptation(m)
    if adapt == "invariant":
        group = m.cipher.pixel_group
        if group not in INVARIANT_GROUPS:
            raise OptionError(
                "--adapt", f"{ds.root}: --adapt invariant needs a cipher whose pixel group is one of "
                f"{', '.join(INVARIANT_GROUPS)}; this dataset's ({m.cipher.method}) is {group or 'not stated (not pixel-wise)'} "
                "(use --adapt pixel)"
            )  # fmt: skip
        return adapt, None, group
    if adapt not in BLOCK_ADAPTATIONS:
        return adapt, None, None
    block = m.cipher.block or TANAKA_BLOCK
    if m.height % block or m.width % block:
        raise OptionError(
            "--adapt", f"{ds.root}: --adapt {adapt} needs image sides divisible by the block size {block}, "
            f"these images are {m.width}x{m.height} (use --adapt pixel or none)"
        )  # fmt: skip
    return adapt, block, None


def client_copies(ds: Dataset) -> int:
    """How many augmented copies of each training image the client encrypted (--copies)."""
    a = ds.manifest.augment
    return a.copies if a is not None else 1


def augment_window(s: Settings) -> tuple[int, int]:
    """The first and last epochs (from 1) to augment: the recipe's schedule for the default
    augmentation; with --augment, --augment-from or --augment-until given, every epoch but
    those the given ends exclude — what is asked for by name is not switched off quietly."""
    if s.augment is None and s.augment_from is None and s.augment_until is None:
        return 1, RECIPES[s.recipe].augment_until(s.epochs)
    until = s.epochs if s.augment_until is None else min(s.augment_until, s.epochs)
    return s.augment_from or 1, until


def prepare(given: Settings, explicit: set[str], resume: bool, d: Dist, overwrite: bool = False) -> TrainPlan:
    """The settings as asked and resolved, the run directory, the dataset, the checkpoint to
    continue from, and the choices that depend on the dataset — each made once, here."""
    run = RunDir(Path(given.run_dir))
    if resume and overwrite:
        raise OptionError("--overwrite", "--overwrite starts the run afresh, --resume continues it: pass one of them")
    ds = open_dataset(given.data, cache=shard_cache(given))
    if resume:
        record = run.read_record()
        if record.version < VERSION:
            raise RunDirError(
                f"{run.config}: written by an older pptrain (run record version {record.version}), whose defaults "
                "differed; pptrain eval and predict read it, but resuming would not continue it"
            )  # fmt: skip
        if not run.checkpoint.exists():
            raise RunDirError(f"{run.path}: no checkpoint.pt to resume from (the run stopped before its first epoch ended); "
                              "run the same command without --resume to start it afresh")  # fmt: skip
        asked = resume_settings(run, record.settings, given, explicit)
        check_dataset(run, record.dataset, ds.manifest, shown_url(given.data), strict=True)
        holds = Holds.RUN
    else:
        holds = run.check_start(overwrite)
        asked = given
    check_split_and_recipe(asked, ds)
    asked = test_split_for(asked, ds, explicit)
    m = ds.manifest
    copies = client_copies(ds)
    s = asked.resolved(m.splits[asked.train_split].count // copies, d.world)
    check_options(s, ds, d)
    # A client that augmented before encrypting (ppencrypt dataset --copies) asked for no more.
    names = s.augment if s.augment is not None else (() if m.augment is not None else DEFAULT_AUGMENT)
    augment = parse_augment(names, m.shape, m.cipher.key_scope if m.cipher.key_id is not None else None)
    adapt, block, group = adaptation(s, ds)
    stem = model_stem(s, m, explicit)
    augment_from, augment_until = augment_window(s)
    if augment_until < augment_from:
        augment = ()  # a short run under the recipe's schedule
    plan = TrainPlan(asked=asked, s=s, run=run, ds=ds, state=None, augment=augment, augment_from=augment_from,
                     augment_until=augment_until, adapt=adapt, block=block, group=group, stem=stem, copies=copies,
                     holds=holds)  # fmt: skip
    try:  # the backbone takes these images: a forward pass on the meta device, nothing allocated
        check_fits(plan.new_model, s.arch, m.channels, m.height, m.width)
    except ArchError as e:
        raise OptionError(e.option, f"{ds.root}: {e}") from None
    if resume:  # checked against the model the run builds, on the meta device, before that is allocated
        plan.state = checkpoint.load(run.checkpoint, checkpoint.shapes_of(plan.new_model))
    return plan


def model_stem(s: Settings, m, explicit: set[str]) -> str:
    """The backbone's stem (--stem auto: by image size and what the arch offers), after the
    checks between --arch, --stem and --width."""
    if s.arch != DEFAULT_ARCH and "width" in explicit:
        raise OptionError("--width", f"--width sets the base width of {DEFAULT_ARCH}; --arch {s.arch} has torchvision's own widths")
    stem = stem_for(m.height, m.width, s.arch) if s.stem == "auto" else s.stem
    try:
        check_stem(s.arch, stem)
    except ArchError as e:
        raise OptionError(e.option, str(e)) from None
    return stem


def shard_cache(s: Settings) -> ShardCache | None:
    """--cache-dir: where a URL dataset's verified files are kept between epochs and runs."""
    return ShardCache(s.cache_dir, s.cache_limit * MIB) if s.cache_dir else None


def train(given: Settings, explicit: set[str] = frozenset(), resume: bool = False, quiet: bool = False,
          log: Callable[[str], None] = lambda line: print(line, file=sys.stderr), overwrite: bool = False) -> Outcome:  # fmt: skip
    """``overwrite``: start afresh in a --run-dir that holds a run (run.py's Holds.RUN)."""
    d = distributed.from_env()
    device = pick_device(given.device, d)
    distributed.start(d, device)
    try:
        return _train(given, explicit, resume, quiet, log, d, device, overwrite)
    finally:
        d.close()


def _train(given, explicit, resume, quiet, log, d: Dist, device: torch.device, overwrite: bool) -> Outcome:
    plan = prepare(given, explicit, resume, d, overwrite)
    d.barrier()  # every rank has checked the run directory before rank 0 writes into it
    s, m, run = plan.s, plan.ds.manifest, plan.run
    say = log if d.main and not quiet else (lambda text: None)
    warn = (lambda text: log(f"warning: {text}")) if d.main else (lambda text: None)
    warning = block_method_warning(plan.augment, m.cipher.method, m.cipher.pixelwise)
    if warning:
        warn(warning)
    configure_determinism(device, s.seed)
    if device.type == "cpu" and d.active:
        torch.set_num_threads(max(1, torch.get_num_threads() // d.world))  # ranks share the cores

    train_loader, test_loader, stream = build_loaders(plan, d, device, warn)
    model, net, optimizer = build_training(plan, device, d)
    name = eval_name(s.test_split)
    start_epoch, history = (int(plan.state["epoch"]), renamed(list(plan.state["history"]), name)) if plan.state is not None else (0, [])
    if d.main:
        if not resume and plan.holds in (Holds.RUN, Holds.UNSTARTED):
            if plan.holds is Holds.UNSTARTED and not overwrite:
                say(f"{run.path}: its run never finished an epoch (no checkpoint.pt); starting it afresh")
            run.clear()
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_record(run_record(plan, model, stream, device, d))
    d.barrier()  # rank 0 has cleared (--overwrite) and written the directory before another rank writes its trace there
    trace = Trace(run.path / f"trace-rank{d.rank}.jsonl", start_epoch) if s.trace else None

    recipe = RECIPES[s.recipe]
    last = s.epochs if s.stop_after is None else min(s.epochs, s.stop_after)
    parameters = sum(p.numel() for p in model.parameters())
    say(plan_line(device=device, world=d.world, model=model_name(plan), parameters=parameters, epochs=s.epochs, first_epoch=start_epoch,
                  batches=train_loader.batches, batch=s.batch_size))  # fmt: skip
    progress = Progress(log=log, warn=warn, speak=d.main and not quiet, every=s.progress_every, epochs=s.epochs,
                        first_epoch=start_epoch, device=device, train_images=train_loader.images,
                        eval_images=(test_loader.images if test_loader is not None else 0) + recipe.calibrate,
                        width=s.width if s.arch == DEFAULT_ARCH else None)  # fmt: skip
    aug = BatchAugment(plan.augment, m.shape, len(m.classes), s.pad, s.mix_alpha)
    loop = Loop(net=net, optimizer=optimizer, aug=aug, recipe=recipe, lr=s.lr, total_steps=train_loader.batches * s.epochs, seed=s.seed,
                epochs=s.epochs, device=device, d=d, trace=s.trace, progress=progress, augment_from=plan.augment_from,
                augment_until=plan.augment_until)  # fmt: skip
    for epoch in range(start_epoch, last):
        t0 = time.perf_counter()
        stats = train_epoch(loop, train_loader, epoch)
        train_seconds = time.perf_counter() - t0
        if recipe.calibrate:
            calibrate(model, train_loader, recipe.calibrate, loop.augment(epoch), s.seed, epoch, device, d)
        test_loss, test_acc = evaluate(net, test_loader, device, d) if test_loader is not None else (None, None)
        rec = epoch_record(epoch, stats, name, test_loss, test_acc, train_loader.images / train_seconds, time.perf_counter() - t0)
        history.append(rec)
        if trace is not None:
            trace.write(epoch, d.rank, stats.seen)
        if d.main:
            checkpoint.save(run.checkpoint, epoch + 1, model, optimizer, history)
            write_metrics(run.metrics, history)
            plot_curves(run.curves, history, curves_title(s.data, m, s.width, plan.adapt, s.arch))
            say(epoch_line(rec, s.epochs))
        d.barrier()
    if d.main and not run.metrics.exists():
        write_metrics(run.metrics, history)
    return Outcome(run.path, history, s.epochs, summary_line(run.path, history, s.epochs), d.main)


def model_name(plan: TrainPlan) -> str:
    """What the run trains, in words: the ResNet, its width and stem, the network in front of it."""
    front = "no adaptation network" if plan.adapt == "none" else f"the {plan.adapt} adaptation network"
    return f"{backbone(plan.s.arch, plan.s.width, ' at ')} ({plan.stem} stem) behind {front}"


def backbone(arch: str, width: int, sep: str = " ") -> str:
    """The backbone in words: [P]'s ResNet-18 with its width, or torchvision's model by name."""
    return f"ResNet-18{sep}width {width}" if arch == DEFAULT_ARCH else arch


def curves_title(data: str, m: Manifest, width: int, adapt: str, arch: str = DEFAULT_ARCH) -> str:
    """curves.png's title: the data, its encryption (method, key scope) and the model."""
    scope = f", {m.cipher.key_scope} key scope" if m.cipher.key_id is not None and m.cipher.key_scope else ""
    front = "no adaptation" if adapt == "none" else f"{adapt} adaptation"
    return f"{dataset_name(data)}: {m.cipher.method}{scope}; {backbone(arch, width)}, {front}"


def build_loaders(plan: TrainPlan, d: Dist, device: torch.device, warn) -> tuple[Loader, Loader | None, bool]:
    """The train split's loader, the test split's (None when the dataset has none), and
    whether they stream (the splits exceed --memory-limit, or --stream)."""
    s, ds = plan.s, plan.ds
    has_test = s.test_split in ds.manifest.splits
    if not has_test:
        warn(f"{shown_url(s.data)}: no {s.test_split!r} split; test metrics are left empty")
    splits = [s.train_split] + ([s.test_split] if has_test else [])
    stream = s.stream or not fits_in_memory(ds, splits, s.memory_limit)
    spec = LoaderSpec(split=s.train_split, batch=s.batch_size // d.world, train=True, seed=s.seed, stream=stream, workers=s.workers,
                      buffer=s.shuffle_buffer, prefetch=s.prefetch, copies=plan.copies)  # fmt: skip
    train_loader = make_loader(ds, spec, d, device)
    test_loader = make_loader(ds, replace(spec, split=s.test_split, train=False, copies=1), d, device) if has_test else None
    return train_loader, test_loader, stream


def build_training(plan: TrainPlan, device: torch.device, d: Dist):
    """The model (from the checkpoint when resuming), what the loop calls (DDP-wrapped,
    compiled, as asked), and the optimiser."""
    s, recipe = plan.s, RECIPES[plan.s.recipe]
    model = plan.new_model()
    if plan.state is not None:
        checkpoint.load_model_state(model, plan.state, plan.run.checkpoint)
    model = model.to(device, memory_format=memory_format(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                                weight_decay=recipe.weight_decay)  # fmt: skip
    if plan.state is not None and plan.state.get("optimizer") is not None:
        optimizer.load_state_dict(plan.state["optimizer"])
    net = model
    if d.active:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if s.compile:
        net = torch.compile(net)
    return model, net, optimizer


def run_record(plan: TrainPlan, model: torch.nn.Module, stream: bool, device: torch.device, d: Dist) -> RunRecord:
    s, m = plan.s, plan.ds.manifest
    parameters = sum(p.numel() for p in model.parameters())
    return RunRecord(
        settings=replace(plan.asked, data=shown_url(plan.asked.data)),  # never a URL's credentials
        resolved=Resolved.of(RECIPES[s.recipe], s, augment=plan.augment, stream=stream, adapt=plan.adapt, augment_from=plan.augment_from,
                             augment_until=plan.augment_until),  # fmt: skip
        dataset=DatasetRecord.of(m, shown_url(s.data)),
        model=ModelRecord(in_channels=m.channels, num_classes=len(m.classes), width=s.width, adapt=plan.adapt, adapt_block=plan.block,
                          parameters=parameters, stem=plan.stem, adapt_group=plan.group, arch=s.arch),  # fmt: skip
        runtime=runtime_record(device, d.world),
    )


def epoch_record(epoch: int, stats: EpochStats, name: str, loss, acc, images_per_s: float, seconds: float) -> dict:
    """One line of metrics.jsonl (metrics.fields_for): the evaluation named ``name``, after its split."""
    return {"epoch": epoch + 1, "lr": stats.lr, "train_loss": stats.loss, "train_acc": stats.accuracy,
            f"{name}_loss": loss, f"{name}_acc": acc, "images_per_s": images_per_s, "seconds": seconds}  # fmt: skip


class Trace:
    """trace-rank<R>.jsonl: the sample indices of every batch, one line per epoch (--trace),
    for checking that ranks read disjoint samples and resumed runs repeat the same order."""

    def __init__(self, path: Path, start_epoch: int):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if start_epoch == 0:  # a new trace replaces whatever is there, a planted link included
            write_file(path, b"", fsync=False)
        with open_append(path):  # a resumed one is checked now, not after an epoch of training
            pass

    def write(self, epoch: int, rank: int, seen: list[torch.Tensor]) -> None:
        # The run directory may come from the server: never through a link it planted (open_append).
        with open_append(self.path) as f:
            f.write((json.dumps({"epoch": epoch + 1, "rank": rank, "batches": [b.tolist() for b in seen]}) + "\n").encode())
