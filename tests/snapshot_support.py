"""What the model tests share: labelled monthly snapshots of a generated log.

:func:`labelled_history` turns ``generate_transactions`` output into the history up to
an as-of date and its labelled snapshots at monthly cutoffs (rows whose horizon is not
fully observed dropped), sorted by cutoff and customer: what ``ChurnModel.fit`` reads in
tests/test_scorer.py, tests/test_model_categorical.py and tests/test_season_clock.py.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

import churnlens
from churnlens._training import snapshot_cutoffs

__all__ = ["labelled_history"]


def labelled_history(raw: pd.DataFrame, as_of: dt.date, horizon_days: int, *,
                     count: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(history, snapshots)``: the clean rows on or before ``as_of`` and the labelled
    snapshots at ``count`` monthly cutoffs (the latest ``as_of - horizon_days``)."""
    clean = churnlens.load_transactions(raw).transactions
    history = clean.loc[clean["timestamp"] < pd.Timestamp(as_of) + pd.Timedelta(days=1)]
    cutoffs = snapshot_cutoffs(as_of, horizon_days, every="month", count=count,
                               first_day=history["timestamp"].min().date())
    snapshots = churnlens.build_snapshots(history, cutoffs, horizon_days=horizon_days,
                                          observed_until=as_of)
    snapshots = (snapshots.loc[snapshots["churned"].notna()]
                 .sort_values(["cutoff", "customer_id"]).reset_index(drop=True))
    return history, snapshots
