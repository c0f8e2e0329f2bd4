"""Typed errors of the harness; only ``cli.py`` turns them into exit codes (1: data, 2: usage)."""


class ExperimentError(Exception):
    """Bad input or a failed step: the message is one line naming the file, option or command."""


class UsageError(ExperimentError):
    """An option value that does not fit the others (exit 2). ``option`` names it."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option
