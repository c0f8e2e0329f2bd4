"""Running the harness's steps as the commands a user would type.

Every step is a command line of ``ppencrypt``, ``pptrain`` or ``python -m experiments``; the
results record it verbatim. By default the two CLIs run as subprocesses (the console scripts
of this environment), so the recorded command is exactly what ran. ``in_process`` (the tests)
calls the same click entry points with the same arguments inside this process instead: the
same code path minus the interpreter start, which costs ~4 s per ``pptrain`` (importing torch)
and would dominate a tiny run. The harness's own steps always run in-process.

A command may run another checkout's code instead (:class:`Checkout`: the record's ``before``
cells): that checkout goes first on ``PYTHONPATH`` and the command runs its own entry module
with ``python -m``, which the command line shows.
"""

from __future__ import annotations

import contextlib
import io
import os
import pkgutil
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import click

from .errors import ExperimentError


@dataclass(frozen=True)
class Program:
    entry: str  # its click command, "module:attribute" as a console script names it: run in-process
    module: str | None = None  # run as ``python -m MODULE``; None: the console script named as the program


# The programs a Command runs, in one place. Their click entries are imported by name when one
# runs in-process, as a console script's entry is: this module imports none of them (the
# harness's own, experiments.cli, imports this module).
PROGRAMS = {
    "ppencrypt": Program("ppencrypt.cli:cli"),
    "pptrain": Program("pptrain.cli:cli"),
    "experiments": Program("experiments.cli:cli", module="experiments"),  # no console script
}


@dataclass(frozen=True)
class Checkout:
    """Another checkout whose code runs a command: ``path`` goes first on PYTHONPATH, and each
    program runs as ``python -m`` its entry module in that checkout (``entries``: program ->
    module), not as this environment's console script, whose entry is the installed code's
    module (``ppencrypt.cli``, ``pptrain.cli``) and may be named otherwise there, or be absent."""

    path: str
    entries: dict[str, str]


class CommandFailed(ExperimentError):
    def __init__(self, shown: str, code: int, message: str):
        super().__init__(f"`{shown}` failed (exit {code}): {message}")
        self.code = code


@dataclass(frozen=True, kw_only=True)
class Command:
    program: str  # a key of PROGRAMS
    args: tuple[str, ...]
    code: Checkout | None = None  # another checkout's code runs it (None: this one's)
    env: tuple[tuple[str, str], ...] = ()  # further variables set for it (a subprocess of its own)

    @property
    def module(self) -> str | None:
        """The module it runs as ``python -m MODULE`` (None: its console script)."""
        return self.code.entries[self.program] if self.code else PROGRAMS[self.program].module

    @property
    def environment(self) -> tuple[tuple[str, str], ...]:
        """The variables set for it, shown before it: another checkout's PYTHONPATH first."""
        return ((("PYTHONPATH", self.code.path),) if self.code else ()) + self.env

    @property
    def shown(self) -> str:
        env = (f"{k}={shlex.quote(v)}" for k, v in self.environment)
        return " ".join([*env, shlex.join([*launcher(self.program, self.module), *self.args])])


@dataclass
class Done:
    stdout: str
    seconds: float


def command(program: str, *args, code: Checkout | None = None, env: tuple[tuple[str, str], ...] = ()) -> Command:
    return Command(program=program, args=tuple(str(a) for a in args if a is not None), code=code, env=env)


def bin_dir() -> Path:
    return Path(sys.executable).parent


def launcher(program: str, module: str | None = None) -> list[str]:
    """How the command line names ``program``: this environment's console script, or its
    interpreter with ``-m`` ``module`` (by default the program's own, PROGRAMS), relative to the
    working directory when it lies inside it (``.venv/bin/pptrain``)."""
    module = module or PROGRAMS[program].module
    exe = Path(os.path.abspath(bin_dir() / ("python" if module else program)))
    shown = os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)  # not resolved: the venv's python is a link
    if not os.path.exists(exe) and not module:
        shown = program  # the script is not next to the interpreter: rely on PATH
    return [shown, "-m", module] if module else [shown]


class Runner:
    """Runs :class:`Command`s, logging each line before it runs; raises :class:`CommandFailed`."""

    def __init__(self, in_process: bool = False, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)):
        self.in_process, self.log = in_process, log

    def __call__(self, cmd: Command) -> Done:
        self.log(f"$ {cmd.shown}")
        t0 = time.perf_counter()
        if (self.in_process or cmd.program == "experiments") and not cmd.environment:
            stdout = self._in_process(cmd)
        else:
            stdout = self._subprocess(cmd)
        return Done(stdout, time.perf_counter() - t0)

    def prepare(self, steps: Iterable[tuple[Path, Command]]) -> None:
        """Run the command of each (what it makes, command) step whose product is not there yet:
        a harness run again after an interruption makes only what is missing."""
        for made, cmd in steps:
            if not made.exists():
                self(cmd)

    def _in_process(self, cmd: Command) -> str:
        out = io.StringIO()
        entry: click.Command = pkgutil.resolve_name(PROGRAMS[cmd.program].entry)
        try:
            with contextlib.redirect_stdout(out):
                entry.main(args=list(cmd.args), prog_name=cmd.program, standalone_mode=False)
        except click.ClickException as e:
            raise CommandFailed(cmd.shown, e.exit_code, e.format_message()) from None
        except ExperimentError as e:
            raise CommandFailed(cmd.shown, 1, str(e)) from None
        return out.getvalue()

    def _subprocess(self, cmd: Command) -> str:
        script = bin_dir() / cmd.program
        exe = [sys.executable, "-m", cmd.module] if cmd.module else [str(script) if script.exists() else cmd.program]
        argv = [*exe, *cmd.args]
        try:
            env = dict(os.environ, **dict(cmd.environment)) if cmd.environment else None
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        except OSError as e:
            raise CommandFailed(cmd.shown, 127, e.strerror or str(e)) from None
        for line in done.stderr.splitlines():
            self.log(f"  {line}")
        if done.returncode:
            last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
            raise CommandFailed(cmd.shown, done.returncode, last)
        return done.stdout
