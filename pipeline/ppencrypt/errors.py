"""Typed errors with context. Only ``cli.py`` turns them into exit codes and messages.

Exit 1 for every subclass of :class:`PipelineError` (data, key, format problems) but
:class:`OptionError`, which ``cli.py`` reports as click reports a bad option: exit 2.
"""


class PipelineError(Exception):
    """Base of every error that is the input's fault, not a bug."""


class OptionError(PipelineError):
    """Options that do not fit together (a keyless method with --salt, --pad without --copies,
    ...): the caller's usage error. ``option`` names the option as the command line spells it."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


class KeyFileError(PipelineError):
    """A key file is missing, unreadable, too open, malformed, or the wrong key."""


class MissingKeyFileError(KeyFileError):
    """No file at the key path. What to do about it depends on the command, so cli.py says it:
    a new key for new data, never for data a key already encrypted. ``path`` as the user gave it."""

    def __init__(self, path: str):
        super().__init__(f"{path}: no such key file")
        self.path = path


class SourceError(PipelineError):
    """The source dataset is empty, unrecognised or inconsistent (mixed sizes, ...)."""


class BadImageError(SourceError):
    """One source file cannot be decoded. ``name`` is the path as the user gave it."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason

    def __reduce__(self):  # rebuilt from its fields when it crosses back from a worker process
        return (type(self), (self.name, self.reason))


class OutputError(PipelineError):
    """The output location exists or cannot be written."""


class ManifestError(PipelineError):
    """manifest.json is missing, malformed, or of an unknown version."""


class StorageError(PipelineError):
    """A dataset's storage cannot be used: a URL's backend is not installed, its bucket is
    missing, access is denied, or the server keeps failing."""


class ShardError(PipelineError):
    """A shard fails its checksum, its count, or cannot be parsed."""


class CipherError(PipelineError):
    """A method, scope or parameter does not fit the data (e.g. block size vs image size)."""


class MissingExtraError(PipelineError):
    """A feature needs an optional dependency (an extra of the package) that is not installed."""


class EngineError(PipelineError):
    """The engine that runs the job (``--engine dask``) cannot be reached or cannot run it."""
