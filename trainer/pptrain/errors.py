"""Typed errors with context. Only ``cli.py`` turns them into exit codes and messages.

Every subclass of :class:`TrainerError` is the input's fault (a run directory, a checkpoint,
an option), not a bug. Dataset problems arrive as :class:`ppencrypt.errors.PipelineError`.
"""


class TrainerError(Exception):
    """Base of every error that is the input's fault."""


class OptionError(TrainerError):
    """An option value that does not fit the dataset or the others (exit 2 in the CLI).

    ``option`` names the command-line option, e.g. ``--batch-size``."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


class AugmentError(OptionError):
    """An augmentation that is unknown, or that does not commute with the cipher."""

    def __init__(self, message: str):
        super().__init__("--augment", message)


class RunDirError(TrainerError):
    """A run directory that is missing, incomplete, or belongs to another run or dataset."""


class CheckpointError(TrainerError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


class QueryError(TrainerError):
    """A query image whose shape or channels do not match the run."""
