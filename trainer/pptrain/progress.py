"""What a run says while it runs, for the person who started it and left.

    up front      the device, the model and its size, the steps ahead (:func:`plan_line`)
    first steps   an estimate of the epoch and of the run; on a CPU, a warning when the run
                  would take over an hour, naming quicker settings (:meth:`Progress.estimate`)
    each step     tqdm's bar on a terminal; anywhere else (Slurm, CI, ``> log``) one line every
                  ``--progress-every`` seconds with the rate, the ETA and the loss

Only rank 0 speaks. Reading the loss or timing the device makes the host wait for a GPU, so it
is done twice for the estimate and once per progress line, never per step.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm import tqdm

ESTIMATE_STEPS = 5  # steps timed after the first one (which pays for allocation, cuDNN's search, compilation)
ESTIMATE_SECONDS = 20.0  # ... or fewer, when that many slow steps would keep the estimate waiting longer
LONG_ON_CPU = 3600.0  # seconds of a run on a CPU worth a warning before it starts in earnest
# First tries on a CPU, the larger first (README: width 16, 3 epochs: 87-88 % on 8,000 Fashion-MNIST
# images; make demo: width 8, 1 epoch).
QUICK = ((16, 3), (8, 1))
# A ResNet's work grows with the square of its width, but a narrow one uses a CPU's cores less
# well: on the shared 2-core development machine width 16 took 10.4 s per step of 512 images and
# width 64 40.1-73.8 s (x3.9-x7.1 as the load varied, not x16), so the time is scaled by
# width ** 1.25 (x5.7 from 64 to 16).
WIDTH_EXPONENT = 1.25
EVAL_COST = 1 / 3  # an evaluated image costs about a third of a trained one: forward only, no backward


def duration(seconds: float) -> str:
    """``42 s``, ``6 min 10 s``, ``3 h 5 min``."""
    s = round(seconds)
    if s < 60:
        return f"{max(s, 1) if seconds > 0 else 0} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def plan_line(*, device: torch.device, world: int, model: str, parameters: int, epochs: int, first_epoch: int,
              batches: int, batch: int) -> str:  # fmt: skip
    """The line before the first step: where it runs, what, and how much of it."""
    where = device_name(device) + (f" x {world} processes" if world > 1 else "")
    left = plural(epochs, "epoch") if first_epoch == 0 else f"epochs {first_epoch + 1}-{epochs} of {epochs}"
    return f"{where}; {model}, {parameters / 1e6:.2f} M parameters; {left} of {plural(batches, 'step')} of {batch} images"


def quicker(width: int | None, epochs: int) -> tuple[str, float] | None:
    """Settings for a first try (the first of :data:`QUICK` that is smaller than the run), and
    the fraction of the run's time they take; None when the run is already that small.
    ``width`` None: a torchvision backbone, whose widths are its own (fewer epochs only)."""
    for quick_width, quick_epochs in QUICK:
        if width is None:
            e = min(epochs, quick_epochs)
            if e != epochs:
                return f"--epochs {e}", e / epochs
            continue
        w, e = min(width, quick_width), min(epochs, quick_epochs)
        if (w, e) != (width, epochs):
            args = " ".join([f"--width {w}"] * (w != width) + [f"--epochs {e}"] * (e != epochs))
            return args, (w / width) ** WIDTH_EXPONENT * e / epochs
    return None


@dataclass(kw_only=True)
class Progress:
    """One per run (rank 0's speaks; the others' are silent); :meth:`epoch` makes each epoch's meter."""

    log: Callable[[str], None]
    warn: Callable[[str], None]
    speak: bool  # rank 0, not --quiet
    every: float  # seconds between progress lines when stderr is not a terminal; 0: none
    epochs: int  # of the whole run (a --stop-after slice of it is estimated whole: the run is what takes hours)
    first_epoch: int  # this invocation's first (from 0): a resumed run estimates what is left
    device: torch.device
    train_images: int  # per epoch, all ranks
    eval_images: int  # forward passes only after every epoch (evaluation, BatchNorm calibration), all ranks
    width: int | None  # for quicker(); None: a torchvision backbone (--width is cifar-resnet18's)
    terminal: bool = field(default_factory=lambda: sys.stderr.isatty())
    estimated: bool = False
    epoch_seconds: float | None = None  # the estimate, once made

    def epoch(self, epoch: int, batches: int) -> EpochMeter:
        return EpochMeter(self, epoch, batches)

    def say(self, line: str, bar: tqdm | None = None) -> None:
        if bar is None:
            self.log(line)
        else:  # above the bar, which is redrawn below the line
            with tqdm.external_write_mode(file=sys.stderr):
                self.log(line)

    def estimate(self, step_seconds: float, batches: int, steps: int, bar: tqdm | None) -> None:
        """From the seconds per step over ``steps`` steps: the epoch (its evaluation at
        :data:`EVAL_COST` per image), the rest of the run, and on a CPU a warning past an hour."""
        self.estimated = True
        train = step_seconds * batches
        self.epoch_seconds = train * (1 + EVAL_COST * self.eval_images / max(self.train_images, 1))
        count = self.epochs - self.first_epoch
        run = self.epoch_seconds * count
        which = f"the run ({plural(count, 'epoch')})" if self.first_epoch == 0 else f"the {plural(count, 'epoch')} left"
        if self.speak:
            self.say(f"estimated {duration(self.epoch_seconds)} per epoch ({step_seconds:.3g} s per step, from {plural(steps, 'step')}), "
                     f"{duration(run)} for {which}", bar)  # fmt: skip
        if self.device.type == "cpu" and run > LONG_ON_CPU:
            quick = quicker(self.width, self.epochs)
            instead = (f"for a first try, {quick[0]} takes about {duration(run * quick[1])}; or use a GPU (--device cuda)"
                       if quick else "a GPU (--device cuda) would be much faster")  # fmt: skip
            with tqdm.external_write_mode(file=sys.stderr) if bar is not None else contextlib.nullcontext():
                self.warn(f"this run would take about {duration(run)} on the CPU; {instead}")


class EpochMeter:
    """One epoch's progress: call :meth:`step` after each optimiser step, :meth:`close` at its end."""

    def __init__(self, p: Progress, epoch: int, batches: int):
        self.p, self.epoch, self.batches = p, epoch, batches
        self.steps = 0
        self.start = self.last_line = time.monotonic()
        self.mark: tuple[float, int] | None = None  # (time, steps) once the first step has finished on the device
        self.lines = p.speak and not p.terminal and p.every > 0
        self.bar = (tqdm(total=batches, desc=f"epoch {epoch + 1}/{p.epochs}", unit="batch", file=sys.stderr, leave=False,
                         dynamic_ncols=True) if p.speak and p.terminal else None)  # fmt: skip

    def step(self, loss: Callable[[], float]) -> None:
        """``loss``: the epoch's mean training loss so far (reading it waits for the device)."""
        self.steps += 1
        if self.bar is not None:
            self.bar.update(1)
        if not self.p.estimated:
            self._estimate(loss)
        now = time.monotonic()
        if self.lines and now - self.last_line >= self.p.every:
            self.last_line = now
            self.p.log(self._line(loss(), now))

    def _estimate(self, loss: Callable[[], float]) -> None:
        if self.mark is None:
            loss()  # the first step done on the device: the timing starts here
            self.mark = (time.monotonic(), self.steps)
            return
        timed = self.steps - self.mark[1]
        if timed >= ESTIMATE_STEPS or time.monotonic() - self.mark[0] >= ESTIMATE_SECONDS:
            loss()
            self.p.estimate((time.monotonic() - self.mark[0]) / timed, self.batches, timed, self.bar)

    def _line(self, loss: float, now: float) -> str:
        elapsed = now - self.start
        per_step = elapsed / self.steps
        rest_of_epoch = per_step * (self.batches - self.steps)
        later = self.p.epoch_seconds if self.p.epoch_seconds is not None else per_step * self.batches
        rest = rest_of_epoch + later * (self.p.epochs - self.epoch - 1)
        rate = self.steps / elapsed * self.p.train_images / self.batches
        return (f"epoch {self.epoch + 1}/{self.p.epochs}: step {self.steps}/{self.batches} ({100 * self.steps // self.batches}%), "
                f"{rate:.0f} img/s, loss {loss:.4f}, ETA {duration(rest_of_epoch)} for the epoch, {duration(rest)} for the run")  # fmt: skip

    def close(self) -> None:
        """The estimate, if the epoch was too short for one (from all of its steps)."""
        if self.bar is not None:
            self.bar.close()
        if not self.p.estimated and self.steps:
            self.p.estimate((time.monotonic() - self.start) / self.steps, self.batches, self.steps, None)
