"""The seasonal clock: a seasonal index of the population's purchase occasions.

BG/NBD assumes a customer buys at a constant rate; with a yearly cycle, the same
``H`` days hold more purchases in high season than in low season. The seasonal clock
runs BG/NBD in *operational time*: its churn horizon becomes ``H * s``, where ``s``
is a ratio-to-moving-average seasonal index of the daily purchase occasions of all
customers one year before the date, for the window the horizon covers::

    t0 = date - 365 days
    s  = occasions in (t0, t0 + H]
         / mean(occasions in (t0 - H, t0], occasions in (t0 + H, t0 + 2H])

clipped to ``[SEASON_MIN, SEASON_MAX]``; the mean of the windows just before and just
after detrends a linear growth or decline of the base. When ``2H > 365`` the window
after would end past the date, so the window before is used twice. ``s = 1`` exactly
when the days it needs are not all known (the history does not reach back) or the
two neighbouring windows hold no occasion. Only days on or before the date are read.

A purchase occasion is a customer-day with a positive net amount, as the core features
define it. The index is computed on plain NumPy arrays here (the pickle-free scorer
reads it with NumPy alone); :func:`daily_occasions` counts the days on the engine that
holds the transactions. See docs/training.md, "The seasonal clock".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SEASON_MAX",
    "SEASON_MIN",
    "daily_occasions",
    "horizons_of",
    "season_index",
    "season_index_of_counts",
    "season_profile",
]

SEASON_MIN = 0.25
SEASON_MAX = 4.0
_YEAR = 365


def daily_occasions(transactions: Any, until: dt.date) -> pd.Series:
    """Purchase occasions per day, all customers, days ``<= until`` only.

    Parameters
    ----------
    transactions
        A clean pandas frame (``customer_id``, ``timestamp``, ``amount``), the
        out-of-core view (:class:`~churnlens._loading_sql.CleanTransactions`) or a
        PySpark DataFrame with those columns.
    until
        The last day read (whole day).

    Returns
    -------
    pandas.Series
        int64 counts indexed by every day (``datetime64``) from the first day with a
        transaction to ``until``, zeros included; empty when there is none.
    """
    import pandas as pd

    from churnlens._engine import (
        amount_units_sql,
        connect,
        daily_sql,
        day_number,
        day_sql,
        from_day_number,
        is_occasion_sql,
    )
    from churnlens._loading_sql import CleanTransactions

    last = pd.Timestamp(until)
    limit = day_number(until)
    # the core features' occasion: the day's net amount in exact units (_engine) > 0
    occasions = (f"SELECT day, count(*) FROM ({{}}) AS o WHERE day <= {limit} "
                 f"AND {is_occasion_sql('net_units')} GROUP BY day")
    if isinstance(transactions, pd.DataFrame):
        con = connect()
        try:
            con.register("churnlens_season_tx",
                         transactions[["customer_id", "timestamp", "amount"]])
            rows = con.execute(occasions.format(daily_sql("churnlens_season_tx"))).fetchall()
        finally:
            con.close()
    elif isinstance(transactions, CleanTransactions):
        rows = transactions.connection.execute(
            occasions.format(daily_sql(transactions.view))).fetchall()
    else:  # a PySpark DataFrame
        d = day_sql("`timestamp`", "spark")
        rows = [tuple(r) for r in transactions.selectExpr(
            "customer_id", f"{d} AS day", f"{amount_units_sql('amount', 'spark')} AS units"
        ).where(f"day <= {limit}").groupBy("customer_id", "day").agg(
            {"units": "sum"}).withColumnRenamed("sum(units)", "net_units").where(
            is_occasion_sql("net_units")).groupBy("day").count().collect()]
    counts = pd.Series({pd.Timestamp(from_day_number(int(k))): int(v) for k, v in rows},
                       dtype="int64").sort_index()
    if counts.empty:
        return pd.Series([], dtype="int64", index=pd.DatetimeIndex([], name="day"))
    index = pd.date_range(counts.index.min(), last, freq="D", name="day")
    return counts.reindex(index, fill_value=0).astype("int64")


def season_index_of_counts(counts: Sequence[int] | np.ndarray, first_day: dt.date,
                           date: dt.date, horizon_days: int) -> float:
    """:func:`season_index` on plain arrays: ``counts[i]`` = occasions on
    ``first_day + i`` days (every day, zeros included)."""
    h = int(horizon_days)
    # only days on or before the date: a stored profile may run past an earlier row's
    # date, and with H > 365 the target window (t0, t0 + H] would end after it
    known = (date - first_day).days + 1
    if known <= 0:
        return 1.0
    values = np.asarray(counts, dtype=np.float64)[:known]
    # position of the day t0 = date - 365 in counts
    t0 = (date - first_day).days - _YEAR
    lo, hi = t0 - h + 1, t0 + (2 * h if 2 * h <= _YEAR else h)  # needed: [lo, hi]
    if lo < 0 or hi >= len(values):
        return 1.0
    before = values[t0 - h + 1:t0 + 1].sum()
    target = values[t0 + 1:t0 + h + 1].sum()
    after = values[t0 + h + 1:t0 + 2 * h + 1].sum() if 2 * h <= _YEAR else before
    mean = (before + after) / 2.0
    if not mean > 0:
        return 1.0
    return float(np.clip(target / mean, SEASON_MIN, SEASON_MAX))


def season_index(daily: pd.Series, date: dt.date, horizon_days: int) -> float:
    """The seasonal index ``s`` of the ``horizon_days`` after ``date`` (module doc).

    Parameters
    ----------
    daily
        :func:`daily_occasions`: counts per day, every day from its first to its last.
    date
        The cutoff or scoring date; only days ``<= date`` are read.
    horizon_days
        The churn horizon ``H``.

    Returns
    -------
    float
        ``s`` in ``[SEASON_MIN, SEASON_MAX]``; exactly 1.0 when the days needed are
        not all in ``daily`` (or no occasion falls in the two reference windows).
    """
    import pandas as pd

    if daily.empty:
        return 1.0
    first = pd.Timestamp(daily.index[0]).date()
    last = min(pd.Timestamp(daily.index[-1]).date(), date)
    n = (last - first).days + 1
    if n <= 0:
        return 1.0
    return season_index_of_counts(daily.to_numpy()[:n], first, date, horizon_days)


def season_profile(daily: pd.Series, as_of: dt.date, horizon_days: int) -> dict[str, Any]:
    """What a model keeps to compute ``s`` at scoring: the counts of the last
    ``365 + 2H`` days up to ``as_of`` (fewer when the history is shorter), JSON-safe:
    ``{"first_day": iso date, "counts": [int, ...], "horizon_days": H}``."""
    import pandas as pd

    kept = daily.loc[daily.index <= pd.Timestamp(as_of)]
    kept = kept.iloc[-(_YEAR + 2 * int(horizon_days)):]
    first = pd.Timestamp(kept.index[0]).date().isoformat() if len(kept) else as_of.isoformat()
    return {"first_day": first, "counts": [int(v) for v in kept.to_numpy()],
            "horizon_days": int(horizon_days)}


def horizons_of(X: Any, profile: Mapping[str, Any] | None, horizon_days: int,
                default_date: dt.date | None) -> np.ndarray | int:
    """The BG/NBD horizon of each row: ``H * s`` at the row's date (its ``as_of``, or
    ``cutoff``, column; else ``default_date``). ``horizon_days`` itself (unchanged)
    when there is no profile: a model without the seasonal clock."""
    if not profile:
        return horizon_days
    import pandas as pd

    counts = np.asarray(profile["counts"], dtype=np.float64)
    first = dt.date.fromisoformat(str(profile["first_day"]))
    column = next((c for c in ("as_of", "cutoff") if c in getattr(X, "columns", ())), None)
    if column is None:
        s = (1.0 if default_date is None
             else season_index_of_counts(counts, first, default_date, horizon_days))
        return np.full(len(X), float(horizon_days) * s)
    codes, uniques = pd.factorize(X[column], sort=False)  # a few distinct dates
    days = pd.to_datetime(pd.Series(uniques)).dt.normalize()
    scale = np.asarray([1.0 if pd.isna(u) else season_index_of_counts(
        counts, first, pd.Timestamp(u).date(), horizon_days) for u in days] + [1.0],
        dtype=np.float64)  # the last: a missing date (code -1)
    return float(horizon_days) * scale[codes]
