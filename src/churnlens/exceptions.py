"""Exceptions raised by churnlens.

Every class subclasses a builtin (mostly :class:`ValueError`), so callers can catch
them without importing churnlens. The CLI turns any :class:`ChurnlensError` into one
readable line on stderr and exit status 2.
"""

from __future__ import annotations

__all__ = [
    "ChurnlensError",
    "ConfigError",
    "DataValidationError",
    "DatasetNotAvailableError",
    "EmptyDataError",
    "MissingColumnError",
    "ModelError",
    "NotFittedError",
]


class ChurnlensError(ValueError):
    """Base class of every error churnlens raises on purpose."""


class DataValidationError(ChurnlensError):
    """The transactions (or another input table) break the data contract."""


class MissingColumnError(DataValidationError, KeyError):
    """A required column is not in the input."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EmptyDataError(DataValidationError):
    """The input has no rows, or none are left after cleaning."""


class ConfigError(ChurnlensError):
    """A configuration file or option has an unknown key or a bad value."""


class ModelError(ChurnlensError):
    """A model cannot be loaded or used: unreadable, mismatched or tampered with."""


class NotFittedError(ModelError, AttributeError):
    """A model was used before ``fit``."""


class DatasetNotAvailableError(ChurnlensError, ModuleNotFoundError):
    """A bundled dataset needs an optional distribution that is not installed."""
