"""churnlens: churn prediction for purchase histories, paired with actual retention.

Public API (everything else is private and may change):

>>> import churnlens
>>> tx = churnlens.generate_transactions(100, seed=0)
>>> clean, report = churnlens.load_transactions(tx)
>>> report.customers
100
"""

from __future__ import annotations

from churnlens._loading import CleaningReport, LoadResult, load_transactions
from churnlens._synthetic import generate_transactions
from churnlens._version import __version__
from churnlens.exceptions import (
    ChurnlensError,
    ConfigError,
    DatasetNotAvailableError,
    DataValidationError,
    EmptyDataError,
    MissingColumnError,
    ModelError,
    NotFittedError,
)

__all__ = [
    "ChurnlensError",
    "CleaningReport",
    "ConfigError",
    "DataValidationError",
    "DatasetNotAvailableError",
    "EmptyDataError",
    "LoadResult",
    "MissingColumnError",
    "ModelError",
    "NotFittedError",
    "__version__",
    "generate_transactions",
    "load_transactions",
]
