"""User-facing errors: every one names what is wrong (file, line or key) and how to fix it."""
from __future__ import annotations


class CrsbenchError(Exception):
    """An error caused by input, configuration or environment, shown to the user without a traceback."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class ConfigError(CrsbenchError):
    """A bad configuration key, value or file."""


class DataError(CrsbenchError):
    """A missing, malformed or inconsistent data file."""


class TrainingError(CrsbenchError):
    """Training cannot go on (for example the loss became NaN)."""


class StorageError(CrsbenchError):
    """A file could not be written (for example the disk is full)."""
