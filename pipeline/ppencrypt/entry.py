"""The console scripts' entry point: click's main, with Ctrl-C closed at both ends.

click turns a KeyboardInterrupt raised inside a command into ``Aborted!`` and exit code 1. Two
moments escape it: a Ctrl-C that lands while click's own ``sys.exit`` unwinds (its handler is
already behind), and one that lands once the interpreter has begun to finalise, where Python
restores the default SIGINT action and the process dies by the signal (exit -2). A fast job
ends within a second of starting its workers, so a user's Ctrl-C meets those moments often
(tests/test_interrupt.py did, once)."""

from __future__ import annotations

import signal
import sys

import click


def run_command(cli: click.Command, argv: list[str] | None, prog_name: str) -> None:
    """Run ``cli`` as ``prog_name``; always leaves by SystemExit (0, 1 on Ctrl-C, or click's code)."""
    try:
        try:
            cli.main(args=argv, prog_name=prog_name)
        finally:
            # The command is over, whatever its outcome: a Ctrl-C from here on has nothing left
            # to stop. SIG_IGN (not a Python handler) survives finalisation, which resets those.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        # landed after click's handler, before the line above: the same answer click gives
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        click.echo("Aborted!", err=True)
        sys.exit(1)
