"""churnlens: churn prediction for purchase histories, paired with actual retention.

Public API (everything else is private and may change):

>>> import churnlens
>>> tx = churnlens.generate_transactions(100, seed=0)
>>> clean, report = churnlens.load_transactions(tx)
>>> report.customers
100
"""

from __future__ import annotations

from churnlens._bgnbd import (
    BGNBDModel,
    BGNBDParams,
    bgnbd_expected_purchases,
    bgnbd_fit,
    bgnbd_log_likelihood,
    bgnbd_p_alive,
    bgnbd_prob_purchase_in,
)
from churnlens._loading import CleaningReport, LoadResult, load_transactions
from churnlens._retention import (
    RetentionRates,
    cohort_table,
    retention_rates,
    retention_series,
)
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
    "BGNBDModel",
    "BGNBDParams",
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
    "RetentionRates",
    "__version__",
    "bgnbd_expected_purchases",
    "bgnbd_fit",
    "bgnbd_log_likelihood",
    "bgnbd_p_alive",
    "bgnbd_prob_purchase_in",
    "cohort_table",
    "generate_transactions",
    "load_transactions",
    "retention_rates",
    "retention_series",
]
