"""What the tests of the "buy till you die" models share (BG/NBD, Pareto/NBD).

The CDNOW calibration data of Fader, Hardie and Lee's fits (tests/test_bgnbd.py
checks the preparation customer by customer against Hardie's own summary file), the
features frame the estimators read, and the bad feature values every
repeat-purchase estimator must refuse with a clear error
(:func:`churnlens._btyd.repeat_features_to_data`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from churnlens.datasets import load_cdnow_sample
from churnlens.exceptions import DatasetNotAvailableError

__all__ = [
    "BAD_FEATURE_VALUES",
    "CALIBRATION_END",
    "cdnow_calibration_days",
    "features_frame",
    "with_bad_value",
]

# The end of the 39-week calibration period of the CDNOW fits.
CALIBRATION_END = pd.Timestamp("1997-09-30")

# (column, bad value, a word of the error it must raise), for pytest.mark.parametrize.
BAD_FEATURE_VALUES = [
    ("repeat_frequency", -1, "negative"),
    ("tenure_days", np.nan, "missing"),
    ("repeat_frequency", 1.5, "whole numbers"),
    ("t_x_days", 10_000, "larger than 'tenure_days'"),
    ("tenure_days", "soon", "numeric"),
]


def features_frame(x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> pd.DataFrame:
    """A churnlens features frame of ``(x, t_x, T)`` in days."""
    return pd.DataFrame({"repeat_frequency": x, "t_x_days": t_x, "tenure_days": T})


def with_bad_value(features: pd.DataFrame, column: str, value: object) -> pd.DataFrame:
    """A copy of ``features`` with ``value`` in the fourth row of ``column``."""
    bad = features.astype({column: object})
    bad.loc[bad.index[3], column] = value
    return bad


def cdnow_calibration_days() -> pd.DataFrame:
    """``x``, ``t_x`` and ``T`` in days for the CDNOW sample, as in the papers.

    Two conventions matter, and both are chosen because they reproduce the BG/NBD
    paper (tests/test_bgnbd.py proves it):

    - ``T = 1997-09-30 - first purchase day``, without ``+ 1``: time is measured from
      the start of the first purchase day to the start of 1997-09-30, so a customer
      who first bought on 1997-01-01 has ``T = 272 / 7 = 38.86`` weeks, as in Hardie's
      summary file. Measuring to the end of 1997-09-30 (``+ 1`` day, 39.0 weeks)
      gives LL -9589.9 and a = 0.815, which does not match.
    - Every purchase day counts, including 8 first purchases of $0.00: the paper has
      all 2,357 customers. churnlens' occasions (``retention.md``) need a positive
      net amount and would drop those 8 customers (the fit then gives LL -9578.2).

    Skips the calling test when the CDNOW sample (the optional 'datasets' extra) is
    not installed.
    """
    try:
        tx = load_cdnow_sample()
    except DatasetNotAvailableError as exc:  # the optional 'datasets' extra
        pytest.skip(f"CDNOW sample not installed: {exc}")
    days = tx.loc[tx["timestamp"] <= CALIBRATION_END, ["customer_id", "timestamp"]]
    by_customer = days.drop_duplicates().groupby("customer_id")["timestamp"]
    first, last, occasions = by_customer.min(), by_customer.max(), by_customer.size()
    return pd.DataFrame(
        {
            "x": (occasions - 1).astype("float64"),
            "t_x": (last - first).dt.days.astype("float64"),
            "T": (CALIBRATION_END - first).dt.days.astype("float64"),
        }
    )
