"""Running the harness's steps as the commands a user would type.

Every step is a command line of ``ppencrypt``, ``pptrain`` or ``python -m experiments``; the
results record it verbatim. By default the two CLIs run as subprocesses (the console scripts
of this environment), so the recorded command is exactly what ran. ``in_process`` (the tests)
calls the same click entry points with the same arguments inside this process instead: the
same code path minus the interpreter start, which costs ~4 s per ``pptrain`` (importing torch)
and would dominate a tiny run. The harness's own steps always run in-process.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from .errors import ExperimentError

PROGRAMS = ("ppencrypt", "pptrain", "experiments")


class CommandFailed(ExperimentError):
    def __init__(self, shown: str, code: int, message: str):
        super().__init__(f"`{shown}` failed (exit {code}): {message}")
        self.code = code


@dataclass(frozen=True)
class Command:
    program: str  # one of PROGRAMS
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # variables set for it (a subprocess of its own), shown before it

    @property
    def shown(self) -> str:
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in self.env), shlex.join([*launcher(self.program), *self.args])])

    @property
    def pythonpath(self) -> str | None:
        """Another checkout's code, put first on the path."""
        return dict(self.env).get("PYTHONPATH")


@dataclass
class Done:
    command: str
    stdout: str
    seconds: float


def command(program: str, *args, pythonpath: str | None = None, env: tuple[tuple[str, str], ...] = ()) -> Command:
    paths = (("PYTHONPATH", pythonpath),) if pythonpath is not None else ()
    return Command(program, tuple(str(a) for a in args if a is not None), paths + env)


def bin_dir() -> Path:
    return Path(sys.executable).parent


def launcher(program: str) -> list[str]:
    """How the command line names ``program``: this environment's interpreter or console
    script, relative to the working directory when it lies inside it (``.venv/bin/pptrain``)."""
    exe = Path(os.path.abspath(bin_dir() / ("python" if program == "experiments" else program)))
    shown = os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)  # not resolved: the venv's python is a link
    if not os.path.exists(exe) and program != "experiments":
        shown = program  # the script is not next to the interpreter: rely on PATH
    return [shown, "-m", "experiments"] if program == "experiments" else [shown]


def click_entry(program: str) -> click.Command:
    if program == "ppencrypt":
        from ppencrypt.cli import cli
    elif program == "pptrain":
        from pptrain.cli import cli
    else:
        from .cli import cli
    return cli


class Runner:
    """Runs :class:`Command`s, logging each line before it runs; raises :class:`CommandFailed`."""

    def __init__(self, in_process: bool = False, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)):
        self.in_process, self.log = in_process, log

    def __call__(self, cmd: Command) -> Done:
        self.log(f"$ {cmd.shown}")
        t0 = time.perf_counter()
        if (self.in_process or cmd.program == "experiments") and not cmd.env:
            stdout = self._in_process(cmd)
        else:
            stdout = self._subprocess(cmd)
        return Done(cmd.shown, stdout, time.perf_counter() - t0)

    def _in_process(self, cmd: Command) -> str:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                click_entry(cmd.program).main(args=list(cmd.args), prog_name=cmd.program, standalone_mode=False)
        except click.ClickException as e:
            raise CommandFailed(cmd.shown, e.exit_code, e.format_message()) from None
        except ExperimentError as e:
            raise CommandFailed(cmd.shown, 1, str(e)) from None
        return out.getvalue()

    def _subprocess(self, cmd: Command) -> str:
        exe = [sys.executable, "-m", "experiments"] if cmd.program == "experiments" else \
            [str(bin_dir() / cmd.program) if (bin_dir() / cmd.program).exists() else cmd.program]
        argv = [*exe, *cmd.args]
        try:
            env = dict(os.environ, **dict(cmd.env)) if cmd.env else None
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        except OSError as e:
            raise CommandFailed(cmd.shown, 127, e.strerror or str(e)) from None
        for line in done.stderr.splitlines():
            self.log(f"  {line}")
        if done.returncode:
            last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
            raise CommandFailed(cmd.shown, done.returncode, last)
        return done.stdout
