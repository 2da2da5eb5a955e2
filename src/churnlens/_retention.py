"""Actual retention: period rates, rate series and cohort tables.

Every number here follows ``retention.md`` (the math contract). In short, for a
period ``(t0, t1]`` of ``L = t1 - t0`` days and an activity window of ``W`` days
(default ``L``), counting purchase occasions (distinct customer-days with a positive
net amount):

- ``S``: customers active at ``t0`` (an occasion in ``(t0 - W, t0]``);
- ``E``: customers active at ``t1`` (an occasion in ``(t1 - W, t1]``);
- ``N``: customers new in the period (first occasion in ``(t0, t1]``);
- ``reactivated``: customers in ``E`` that are neither new nor in ``S``;
- ``crr = (E - N) / S * 100``, ``cohort_retention = |S ∩ E| / S * 100``,
  ``churn_rate = 100 - cohort_retention``,
  ``repeat_rate = |acquired by t0 and bought in (t0, t1]| / |acquired by t0| * 100``,
  ``simple_ratio = E / S * 100``.

A rate whose denominator is 0 is NaN (``null`` in JSON), never an error.

Transactions follow the one contract of :mod:`churnlens._loading`: a frame that does
not meet it yet (text dates, a time zone...) goes through the loader first
(:func:`churnlens._loading.ensure_clean`); nothing here checks them again.

All counting runs in DuckDB on the shared ``daily_sql`` (one row per customer and
day), so there is no Python loop over customers; a series of periods is one query.
On Spark data (a PySpark DataFrame, or :func:`churnlens._spark_loading.load_transactions_spark`'s
result) the same queries run in Spark SQL (their Spark dialect: the ASOF join of the
segments becomes a join with ``max_by``) and only the count tables come back.

Segments
--------
With ``segment_col``, every result is split by a customer attribute kept in the
transactions (``load_transactions(..., extra_cols=("country",))``). A customer's
segment *as of a day D* is the value on their latest row (by timestamp) dated on or
before ``D`` with a non-missing value; rows with the same timestamp are tie-broken by
the greatest value, so the choice is deterministic. Period rates use ``D`` = the
period end, so a result never depends on data after the period it describes; the
cohort table uses ``D`` = the customer's acquisition day (the segment they were
acquired in), so a cohort never moves between segments as later data arrives.
Customers with no value by ``D`` form their own segment (missing value).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import re
from typing import Any, ClassVar, NamedTuple, TypeAlias, overload

import duckdb
import numpy as np
import pandas as pd

from churnlens._engine import (
    Dialect,
    connect,
    daily_sql,
    day_number,
    day_sql,
    from_day_number,
    is_occasion_sql,
)
from churnlens._io import json_ready
from churnlens._loading import ensure_clean
from churnlens._loading_sql import CleanTransactions, _ident
from churnlens._spark_loading import SparkLoadResult, is_spark_frame, load_transactions_spark
from churnlens._validation import parse_date, require_columns, require_positive_int
from churnlens.exceptions import ChurnlensError, DataValidationError, EmptyDataError

__all__ = [
    "RetentionRates",
    "cohort_table",
    "retention_rates",
    "retention_series",
    "with_rates",
]

DateLike: TypeAlias = str | dt.date | pd.Timestamp
# A clean frame, the clean view of files read out of core (_loading_sql), or clean rows
# on Spark (_spark_loading; a PySpark DataFrame goes through that loader first): the same
# queries run on each, in DuckDB's or in Spark's SQL.
Transactions: TypeAlias = pd.DataFrame | CleanTransactions | SparkLoadResult | Any

COUNT_COLUMNS = ("S", "E", "N", "reactivated")
RATE_COLUMNS = ("crr", "cohort_retention", "churn_rate", "repeat_rate", "simple_ratio")
RESULT_KEYS = ("start", "end", "window_days", *COUNT_COLUMNS, *RATE_COLUMNS)
EVERY_CHOICES = ("quarter", "month", "year", "<N>d")
COHORT_COLUMN = "cohort"
COHORT_SIZE_COLUMN = "cohort_size"

_REQUIRED = ("customer_id", "timestamp", "amount")
_SERIES_EXTRA = ("period", "complete")
_PERIOD_FREQ = {"quarter": "Q", "month": "M", "year": "Y"}
_EVERY_DAYS = re.compile(r"^\s*(\d+)\s*d\s*$", re.IGNORECASE)
_MAX_PERIODS = 100_000


@dataclasses.dataclass(frozen=True)
class RetentionRates:
    """Actual retention of one period ``(start, end]``, as defined in ``retention.md``.

    Attributes
    ----------
    start, end
        The period ``(start, end]``: ``start`` itself is not in it.
    window_days
        Activity window ``W``: a customer is active at ``t`` when they bought in
        ``(t - W, t]``.
    S, E, N
        Customers active at ``start``, active at ``end``, and new in the period.
    reactivated
        Customers active at ``end`` who are neither new nor were active at ``start``.
    crr, cohort_retention, churn_rate, repeat_rate, simple_ratio
        Rates in percent (floats, not rounded); NaN when their denominator is 0.
    """

    start: dt.date
    end: dt.date
    window_days: int
    S: int
    E: int
    N: int
    reactivated: int
    crr: float
    cohort_retention: float
    churn_rate: float
    repeat_rate: float
    simple_ratio: float

    #: One line per figure saying what it means (used by the CLI).
    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "S": "customers active at the start (bought in the window up to the start)",
        "E": "customers active at the end (bought in the window up to the end)",
        "N": "new customers: first purchase in the period",
        "reactivated": "active at the end, but neither new nor active at the start",
        "crr": "customer retention rate (E - N) / S, as marketing defines it; it also "
               "counts reactivated customers, so it can exceed 100",
        "cohort_retention": "share of the start base S still active at the end",
        "churn_rate": "share of the start base S no longer active at the end "
                      "(100 - cohort_retention)",
        "repeat_rate": "share of customers acquired by the start who bought again in "
                       "the period",
        "simple_ratio": "E / S: customers at the end over customers at the start, new "
                        "ones included; for comparison only",
    }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary with exactly the keys of :data:`RESULT_KEYS`.

        Dates are ISO strings and NaN rates are ``None`` (JSON ``null``).

        Examples
        --------
        >>> import datetime as dt
        >>> rates = RetentionRates(dt.date(2024, 3, 31), dt.date(2024, 6, 30), 91,
        ...                        0, 2, 2, 0, *[float("nan")] * 5)
        >>> rates.to_dict()["crr"] is None, rates.to_dict()["start"]
        (True, '2024-03-31')
        """
        return {key: json_ready(getattr(self, key)) for key in RESULT_KEYS}


# --- public functions -------------------------------------------------------------


@overload
def retention_rates(
    transactions: Transactions,
    start: DateLike,
    end: DateLike,
    *,
    window_days: int | None = ...,
    segment_col: None = ...,
) -> RetentionRates: ...


@overload
def retention_rates(
    transactions: Transactions,
    start: DateLike,
    end: DateLike,
    *,
    window_days: int | None = ...,
    segment_col: str,
) -> pd.DataFrame: ...


def retention_rates(
    transactions: Transactions,
    start: DateLike,
    end: DateLike,
    *,
    window_days: int | None = None,
    segment_col: str | None = None,
) -> RetentionRates | pd.DataFrame:
    """Actual retention rates of the period ``(start, end]``.

    Parameters
    ----------
    transactions
        Clean transactions from :func:`churnlens.load_transactions` (columns
        ``customer_id``, ``timestamp``, ``amount``, plus ``segment_col`` if given).
    start, end
        The period ``(start, end]``: ``start`` is the last day *before* it (for the
        second quarter of 2024, ``start="2024-03-31"`` and ``end="2024-06-30"``).
    window_days
        Activity window ``W`` in days; default the period length ``end - start``.
        With ``W`` shorter than the period, new customers who bought only early in
        the period are not in ``E`` but ``crr`` still subtracts them (the formula is
        marketing's), so ``crr = cohort_retention + reactivated / S * 100`` holds only
        for ``W >= end - start``.
    segment_col
        A customer attribute column (such as ``country``) to split the rates by; see
        the module documentation for how a customer's segment is chosen.

    Returns
    -------
    RetentionRates or pandas.DataFrame
        Without ``segment_col``, a :class:`RetentionRates`. With it, a DataFrame with
        one row per segment: ``segment_col`` then the keys of
        :meth:`RetentionRates.to_dict`.

    Raises
    ------
    ChurnlensError
        ``end`` not after ``start``, an unreadable date, a bad ``window_days``.
    DataValidationError
        Transactions without the required columns or with missing values.

    Examples
    --------
    >>> import pandas as pd
    >>> tx = pd.DataFrame({"customer_id": ["a", "a", "b"],
    ...                    "timestamp": pd.to_datetime(["2024-01-05", "2024-02-03",
    ...                                                 "2024-01-20"]),
    ...                    "amount": [10.0, 5.0, 8.0]})
    >>> rates = retention_rates(tx, "2024-01-31", "2024-02-29")
    >>> rates.S, rates.E, rates.N, rates.cohort_retention
    (2, 1, 0, 50.0)
    """
    t0, t1 = _parse_period(start, end)
    window = _window(window_days)
    data = _prepare(transactions, segment_col)
    periods = [_Period("", t0, t1, window or (t1 - t0))]
    frame = _rates_frame(data, periods)
    if segment_col is None:
        row = frame.iloc[0]
        values: dict[str, Any] = {k: int(row[k]) for k in COUNT_COLUMNS}
        values.update({k: float(row[k]) for k in RATE_COLUMNS})
        return RetentionRates(
            start=from_day_number(t0),
            end=from_day_number(t1),
            window_days=int(row["window_days"]),
            **values,
        )
    return frame[[segment_col, *RESULT_KEYS]].reset_index(drop=True)


def retention_series(
    transactions: Transactions,
    every: str = "quarter",
    *,
    window_days: int | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    segment_col: str | None = None,
) -> pd.DataFrame:
    """Retention rates of consecutive periods, all computed in one query.

    Parameters
    ----------
    transactions
        Clean transactions from :func:`churnlens.load_transactions` (or the out-of-core
        view of :func:`churnlens._loading_sql.load_transactions_sql`, or a PySpark
        DataFrame or :func:`churnlens._spark_loading.load_transactions_spark`'s result).
    every
        Period length: ``"quarter"``, ``"month"`` or ``"year"`` (calendar periods,
        each ``(last day of the previous period, last day of the period]``), or
        ``"<N>d"`` such as ``"28d"``: periods of N days whose last one ends on ``end``.
    window_days
        Activity window in days; default each period's own length.
    start, end
        The range the series covers: every period containing a day of
        ``[start, end]`` is listed. Default: the first and the last day of the data.
    segment_col
        A customer attribute column to split every period by (one row per period
        and segment, every segment in every period).

    Returns
    -------
    pandas.DataFrame
        One row per period in time order, with columns ``period`` (a label such as
        ``2024Q2``, ``2024-05``, ``2024`` or ``2024-04-01..2024-04-28``),
        ``segment_col`` if given, the keys of :meth:`RetentionRates.to_dict` (with
        ``start`` and ``end`` the period bounds ``(start, end]``) and ``complete``:
        ``True`` when the data covers the whole of ``(start - window_days, end]``.
        Rates of periods that are not complete are computed but are not reliable
        (customers outside the data look inactive): check ``complete``.

    Examples
    --------
    >>> import pandas as pd
    >>> tx = pd.DataFrame({"customer_id": ["a", "a", "b", "b"],
    ...                    "timestamp": pd.to_datetime(["2024-01-05", "2024-02-03",
    ...                                                 "2024-01-20", "2024-03-31"]),
    ...                    "amount": [10.0, 5.0, 8.0, 4.0]})
    >>> series = retention_series(tx, "month")
    >>> series[["period", "S", "E", "cohort_retention", "complete"]]
        period  S  E  cohort_retention  complete
    0  2024-01  0  2               NaN     False
    1  2024-02  2  1              50.0     False
    2  2024-03  1  1               0.0      True

    February is flagged: its 29-day activity window starts on 2024-01-03, before
    the data does.
    """
    window = _window(window_days)
    data = _prepare(transactions, segment_col)
    first = parse_date(start, name="start") if start is not None else None
    last = parse_date(end, name="end") if end is not None else None
    first_day = day_number(first) if first is not None else data.first_day
    last_day = day_number(last) if last is not None else data.last_day
    if first_day is None or last_day is None:
        raise EmptyDataError(
            "the transactions have no rows, so the series has no range. "
            "Suggestion: give start and end, or pass non-empty transactions."
        )
    if last_day < first_day:
        raise ChurnlensError(
            f"end ({from_day_number(last_day)}) is before start "
            f"({from_day_number(first_day)}). Suggestion: swap them."
        )
    periods = _series_periods(every, first_day, last_day, window)
    frame = _rates_frame(data, periods)
    columns = ["period", *([segment_col] if segment_col else []), *RESULT_KEYS, "complete"]
    return frame[columns].reset_index(drop=True)


def cohort_table(
    transactions: Transactions,
    *,
    end: DateLike | None = None,
    segment_col: str | None = None,
) -> pd.DataFrame:
    """Acquisition cohorts by month: share of each cohort buying k months later.

    A customer's cohort is the calendar month of their first purchase occasion.
    "Month k after acquisition" is the calendar month k months after that month
    (a customer acquired on 2024-01-31 is in month 1 during all of February 2024).
    A cell is the share, in percent, of the cohort with at least one occasion in
    month k; month 0 is 100 by construction. Cells whose calendar month has not fully
    elapsed by the last day of the data are NaN (unknown yet), never 0; this includes
    month 0 of a cohort whose acquisition month is still running (its size so far is
    shown). Customers acquired before the data starts cannot be told apart from new
    ones, so the first cohort of a data set may include some.

    Parameters
    ----------
    transactions
        Clean transactions from :func:`churnlens.load_transactions` (or the out-of-core
        view of :func:`churnlens._loading_sql.load_transactions_sql`, or a PySpark
        DataFrame or :func:`churnlens._spark_loading.load_transactions_spark`'s result).
    end
        Ignore transactions after this day (default: keep all). The table counts a
        month as elapsed when it ends on or before ``end`` and the data's last day.
    segment_col
        A customer attribute column: one block of cohorts per segment, a customer
        being in the segment they had on their acquisition day.

    Returns
    -------
    pandas.DataFrame
        One row per acquisition month, from the first to the last one (months with
        no acquisitions included with size 0), with columns ``segment_col`` if given,
        ``cohort`` (``"YYYY-MM"``), ``cohort_size`` (customers acquired that month)
        and ``0, 1, 2, ...`` (integers: months since acquisition).

    Examples
    --------
    >>> import pandas as pd
    >>> tx = pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
    ...                    "timestamp": pd.to_datetime(["2024-01-05", "2024-02-03",
    ...                                                 "2024-01-20", "2024-03-31"]),
    ...                    "amount": [10.0, 5.0, 8.0, 4.0]})
    >>> cohort_table(tx)  # doctest: +NORMALIZE_WHITESPACE
        cohort  cohort_size      0     1    2
    0  2024-01            2  100.0  50.0  0.0
    1  2024-02            0    NaN   NaN  NaN
    2  2024-03            1  100.0   NaN  NaN
    """
    data = _prepare(transactions, segment_col)
    end_day = day_number(parse_date(end, name="end")) if end is not None else None
    if data.last_day is None:
        raise EmptyDataError("the transactions have no rows, so there are no cohorts.")
    covered_end = data.last_day if end_day is None else min(end_day, data.last_day)
    counts = _cohort_counts(data, covered_end)
    if counts.empty:
        raise EmptyDataError(
            "no purchase occasions (a customer-day with a positive net amount) on or "
            f"before {from_day_number(covered_end)}, so there are no cohorts."
        )
    return _cohort_wide(counts, _last_elapsed_month(covered_end), segment_col,
                        data.segment_dtype)


# --- preparation ------------------------------------------------------------------


class _Prepared(NamedTuple):
    """Transactions ready for DuckDB, plus the day range they cover."""

    # customer_id, timestamp (naive), amount (float) [, segment]; or the out-of-core view,
    # or the clean rows on Spark
    frame: pd.DataFrame | CleanTransactions | SparkLoadResult
    segment_col: str | None
    segment_dtype: Any
    first_day: int | None
    last_day: int | None

    @property
    def dialect(self) -> Dialect:
        """The SQL the queries are written in: Spark's for Spark data, else DuckDB's."""
        return "spark" if isinstance(self.frame, SparkLoadResult) else "duckdb"


def _prepare(transactions: Transactions, segment_col: str | None) -> _Prepared:
    """Clean transactions (the loader's contract) with only the columns the queries read."""
    if isinstance(transactions, CleanTransactions):
        return _prepare_view(transactions, segment_col)
    required = dict(zip(_REQUIRED, _REQUIRED, strict=True))
    if segment_col is not None:
        if not isinstance(segment_col, str) or not segment_col:
            raise ChurnlensError(f"segment_col must be a column name, got {segment_col!r}.")
        reserved = {*_REQUIRED, *RESULT_KEYS, *_SERIES_EXTRA, COHORT_COLUMN,
                    COHORT_SIZE_COLUMN}
        if segment_col in reserved:
            raise ChurnlensError(
                f"segment_col {segment_col!r} is a name churnlens uses for its own "
                "columns. Suggestion: rename that column before passing it."
            )
        required["segment"] = segment_col
        if isinstance(transactions, pd.DataFrame):
            try:
                require_columns(list(transactions.columns), required,
                                source="the transactions")
            except DataValidationError as exc:
                hint = (f" To keep {segment_col!r}, load with "
                        f"load_transactions(..., extra_cols=[{segment_col!r}]).")
                raise type(exc)(f"{exc}{hint}") from None
    if is_spark_frame(transactions):
        # a Spark DataFrame meets the contract the way a pandas frame does: on Spark
        transactions = load_transactions_spark(
            transactions, extra_cols=(segment_col,) if segment_col else ())
    if isinstance(transactions, SparkLoadResult):
        return _prepare_spark(transactions, segment_col)
    clean = ensure_clean(transactions, extra_cols=(segment_col,) if segment_col else ())
    timestamps = clean["timestamp"]
    frame = pd.DataFrame(
        {"customer_id": clean["customer_id"], "timestamp": timestamps,
         "amount": clean["amount"].astype("float64")}
    )
    if segment_col is not None:
        frame["segment"] = clean[segment_col]
    first_day = day_number(timestamps.min()) if len(frame) else None
    last_day = day_number(timestamps.max()) if len(frame) else None
    segment_dtype = clean[segment_col].dtype if segment_col is not None else None
    return _Prepared(frame, segment_col, segment_dtype, first_day, last_day)


def _prepare_view(view: CleanTransactions, segment_col: str | None) -> _Prepared:
    """The out-of-core view: already clean (its loader ran the contract in SQL)."""
    if segment_col is not None:
        columns = [row[0] for row in view.connection.execute(
            f"DESCRIBE SELECT * FROM {view.view}").fetchall()]
        if segment_col not in columns:
            raise DataValidationError(
                f"segment column {segment_col!r} is not in the transactions read from "
                f"{view.report.source}. Suggestion: load with extra_cols=[{segment_col!r}].")
    report = view.report
    first = day_number(report.first_day) if report.first_day is not None else None
    last = day_number(report.last_day) if report.last_day is not None else None
    return _Prepared(view, segment_col, object if segment_col else None, first, last)


def _prepare_spark(loaded: SparkLoadResult, segment_col: str | None) -> _Prepared:
    """Clean rows on Spark (:func:`churnlens._spark_loading.load_transactions_spark`)."""
    if segment_col is not None and segment_col not in loaded.transactions.columns:
        raise DataValidationError(
            f"segment column {segment_col!r} is not in the transactions read from "
            f"{loaded.report.source}. Suggestion: load with extra_cols=[{segment_col!r}].")
    report = loaded.report
    first = day_number(report.first_day) if report.first_day is not None else None
    last = day_number(report.last_day) if report.last_day is not None else None
    return _Prepared(loaded, segment_col, object if segment_col else None, first, last)


def _parse_period(start: DateLike, end: DateLike) -> tuple[int, int]:
    t0 = day_number(parse_date(start, name="start"))
    t1 = day_number(parse_date(end, name="end"))
    if t1 <= t0:
        raise ChurnlensError(
            f"end ({from_day_number(t1)}) must be after start ({from_day_number(t0)}): "
            "the period is (start, end]. Suggestion: for the second quarter of 2024 use "
            "start 2024-03-31 and end 2024-06-30."
        )
    return t0, t1


def _window(window_days: int | None) -> int | None:
    if window_days is None:
        return None
    return require_positive_int(window_days, name="window_days")


# --- periods ----------------------------------------------------------------------


class _Period(NamedTuple):
    label: str
    t0: int  # day number of the day before the period
    t1: int  # day number of the period's last day
    window: int


def _series_periods(
    every: str, first_day: int, last_day: int, window: int | None
) -> list[_Period]:
    """Consecutive periods, each containing at least one day of [first_day, last_day]."""
    if not isinstance(every, str):
        raise ChurnlensError(f"every must be one of {list(EVERY_CHOICES)}, got {every!r}.")
    key = every.strip().lower()
    periods: list[_Period] = []
    if key in _PERIOD_FREQ:
        freq = _PERIOD_FREQ[key]
        first = pd.Period(from_day_number(first_day), freq=freq)
        last = pd.Period(from_day_number(last_day), freq=freq)
        count = last.ordinal - first.ordinal + 1
        _check_period_count(count, every)
        for period in pd.period_range(first, last, freq=freq):
            t0 = day_number(period.start_time) - 1
            t1 = day_number(period.end_time)
            periods.append(_Period(str(period), t0, t1, window or (t1 - t0)))
        return periods
    match = _EVERY_DAYS.match(key)
    if not match or int(match.group(1)) < 1:
        raise ChurnlensError(
            f"every must be one of {list(EVERY_CHOICES)} (for example '28d'), got {every!r}."
        )
    length = int(match.group(1))
    count = (last_day - first_day) // length + 1
    _check_period_count(count, every)
    for i in reversed(range(count)):
        t1 = last_day - i * length
        t0 = t1 - length
        label = f"{from_day_number(t0 + 1)}..{from_day_number(t1)}"
        periods.append(_Period(label, t0, t1, window or length))
    return periods


def _check_period_count(count: int, every: str) -> None:
    if count > _MAX_PERIODS:
        raise ChurnlensError(
            f"every={every!r} gives {count:,} periods over this range (at most "
            f"{_MAX_PERIODS:,}). Suggestion: use longer periods or a shorter range."
        )


def _covered(first_day: int | None, last_day: int | None, t0: int, t1: int,
             window: int) -> bool:
    """Whether the data covers every day the rates of ``(t0, t1]`` look at."""
    if first_day is None or last_day is None:
        return False
    return first_day <= t0 - window + 1 and last_day >= t1


def coverage_note(first_day: dt.date | None, last_day: dt.date | None,
                  start: DateLike, end: DateLike, window_days: int | None = None) -> str | None:
    """Say why the data does not fully cover a period's rates, or ``None`` if it does.

    The rates of ``(start, end]`` look at every day in ``(start - W, end]``; days
    outside the data make customers look inactive there.

    Examples
    --------
    >>> import datetime as dt
    >>> coverage_note(dt.date(2024, 1, 1), dt.date(2024, 6, 15), "2024-03-31", "2024-06-30")
    'the data ends 2024-06-15, before the period end 2024-06-30'
    """
    t0, t1 = _parse_period(start, end)
    window = _window(window_days) or (t1 - t0)
    notes = []
    if first_day is not None and day_number(first_day) > t0 - window + 1:
        notes.append(f"the data starts {first_day}, after the start of the activity window "
                     f"{from_day_number(t0 - window + 1)} (S may be too small)")
    if last_day is not None and day_number(last_day) < t1:
        notes.append(f"the data ends {last_day}, before the period end {from_day_number(t1)}")
    return "; ".join(notes) or None


# --- queries ----------------------------------------------------------------------


def _occasion_ctes(max_day: int, dialect: Dialect = "duckdb") -> str:
    """CTEs ``daily``, ``occ`` (occasions up to ``max_day``) and ``first``."""
    return f"""
        daily AS ({daily_sql(_TABLE[dialect].format("tx"), dialect)}),
        occ AS (
            SELECT customer_id, day FROM daily
            WHERE {is_occasion_sql()} AND day <= {int(max_day)}
        ),
        first AS (SELECT customer_id, min(day) AS first_day FROM occ GROUP BY customer_id)
    """


# A customer's segment on each day they have a row with a value: the value on their
# latest row that day (ties at one timestamp: the greatest value). An ASOF join then
# finds the value as of any day.
_SEGMENT_DAY_CTE = f"""
    seg_day AS (
        SELECT customer_id, {day_sql('"timestamp"')} AS day,
               arg_max(segment, {{'t': "timestamp", 's': segment}}) AS segment
        FROM tx WHERE segment IS NOT NULL
        GROUP BY ALL
    )
"""
# The same in Spark SQL (max_by over a struct: latest timestamp, then greatest value).
_SPARK_SEGMENT_DAY_CTE = f"""
    seg_day AS (
        SELECT customer_id, {day_sql('`timestamp`', 'spark')} AS day,
               max_by(segment, struct(`timestamp`, segment)) AS segment
        FROM {{tx}} WHERE segment IS NOT NULL
        GROUP BY ALL
    )
"""
# Table names: Spark's SQL formatter fills {tx} and {periods} with DataFrames.
_TABLE = {"duckdb": "{}", "spark": "{{{}}}"}


def _segment_day_cte(dialect: Dialect) -> str:
    return _SPARK_SEGMENT_DAY_CTE if dialect == "spark" else _SEGMENT_DAY_CTE


def _as_of_segment(name: str, left: str, columns: tuple[str, ...], condition: str,
                   dialect: Dialect) -> str:
    """CTE ``name``: the rows of ``left`` (alias ``c``) with the customer's segment as of
    a day (``condition`` on ``c`` and ``s.day``): the latest ``seg_day`` row allowed.

    DuckDB has an ASOF join; Spark takes the value of the greatest day among the rows
    allowed (``seg_day`` has one row per customer and day, so it is the same row).
    """
    if dialect == "spark":
        listed = ", ".join(f"c.{column}" for column in columns)
        return f"""
    {name} AS (
        SELECT {listed}, max_by(s.segment, s.day) AS segment
        FROM {left} AS c LEFT JOIN seg_day AS s
            ON c.customer_id = s.customer_id AND {condition}
        GROUP BY {listed}
    )"""
    return f"""
    {name} AS (
        SELECT c.*, s.segment
        FROM {left} AS c ASOF LEFT JOIN seg_day AS s
            ON c.customer_id = s.customer_id AND {condition}
    )"""


def _in_dialect(sql: str, dialect: Dialect) -> str:
    """The query in Spark SQL: identifiers are quoted with backticks there."""
    return sql.replace('"', "`") if dialect == "spark" else sql

# Per period and customer, from the occasions in (t0 - W, t1] only (the one range
# every flag looks at): active at t0, active at t1, bought in the period.
_FLAGS_CTE = """
    flags AS (
        SELECT p.period_id, o.customer_id,
               bool_or(o.day <= p.t0) AS in_s,
               bool_or(o.day > p.t1 - p.w) AS in_e,
               bool_or(o.day > p.t0) AS bought
        FROM occ AS o JOIN {periods} AS p ON o.day > p.t0 - p.w AND o.day <= p.t1
        GROUP BY p.period_id, o.customer_id
    )
"""

_COUNTS_SQL = """
    WITH {occasions}, {flags},
    flag_counts AS (
        SELECT f.period_id,
               count(*) FILTER (WHERE f.in_s) AS "S",
               count(*) FILTER (WHERE f.in_e) AS "E",
               count(*) FILTER (WHERE f.in_s AND f.in_e) AS retained,
               count(*) FILTER (WHERE f.in_e AND NOT f.in_s AND c.first_day <= p.t0)
                   AS reactivated,
               count(*) FILTER (WHERE f.bought AND c.first_day <= p.t0) AS repeat_buyers
        FROM flags AS f
        JOIN first AS c USING (customer_id)
        JOIN {periods} AS p USING (period_id)
        GROUP BY f.period_id
    ),
    first_days AS (SELECT first_day, count(*) AS customers FROM first GROUP BY first_day),
    acquisition AS (
        SELECT p.period_id,
               sum(h.customers) FILTER (WHERE h.first_day <= p.t0) AS acquired,
               sum(h.customers) FILTER (WHERE h.first_day > p.t0) AS "N"
        FROM {periods} AS p JOIN first_days AS h ON h.first_day <= p.t1
        GROUP BY p.period_id
    )
    SELECT p.period_id,
           coalesce(fc."S", 0) AS "S", coalesce(fc."E", 0) AS "E",
           coalesce(a."N", 0) AS "N", coalesce(fc.reactivated, 0) AS reactivated,
           coalesce(fc.retained, 0) AS retained,
           coalesce(fc.repeat_buyers, 0) AS repeat_buyers,
           coalesce(a.acquired, 0) AS acquired
    FROM {periods} AS p
    LEFT JOIN flag_counts AS fc USING (period_id)
    LEFT JOIN acquisition AS a USING (period_id)
"""

# With segments every customer acquired by t1 needs a row per period (their segment
# as of t1), so the counts come from customers x periods rather than from histograms.
_SEGMENT_COUNTS_SQL = """
    WITH {occasions}, {flags}, {segment_day},
    base AS (
        SELECT p.period_id, p.t0, p.t1, c.customer_id, c.first_day
        FROM {periods} AS p JOIN first AS c ON c.first_day <= p.t1
    ),{base_segment}
    SELECT b.period_id, b.segment,
           count(*) FILTER (WHERE f.in_s) AS "S",
           count(*) FILTER (WHERE f.in_e) AS "E",
           count(*) FILTER (WHERE b.first_day > b.t0) AS "N",
           count(*) FILTER (WHERE f.in_e AND NOT f.in_s AND b.first_day <= b.t0)
               AS reactivated,
           count(*) FILTER (WHERE f.in_s AND f.in_e) AS retained,
           count(*) FILTER (WHERE f.bought AND b.first_day <= b.t0) AS repeat_buyers,
           count(*) FILTER (WHERE b.first_day <= b.t0) AS acquired
    FROM base_segment AS b
    LEFT JOIN flags AS f USING (period_id, customer_id)
    GROUP BY b.period_id, b.segment
"""

# One period: every flag comes from a single pass over each customer's occasions up
# to t1 (no range join), which is what a hand-written query does too.
_SINGLE_PERIOD_SQL = """
    WITH {occasions}{segment_day},
    customers AS (
        SELECT customer_id, {t1} AS t1, min(day) AS first_day,
               bool_or(day > {t0} - {w} AND day <= {t0}) AS in_s,
               bool_or(day > {t1} - {w}) AS in_e,
               bool_or(day > {t0}) AS bought
        FROM occ
        GROUP BY customer_id
    ){segment_join}
    SELECT 0 AS period_id{segment},
           count(*) FILTER (WHERE in_s) AS "S",
           count(*) FILTER (WHERE in_e) AS "E",
           count(*) FILTER (WHERE first_day > {t0}) AS "N",
           count(*) FILTER (WHERE in_e AND NOT in_s AND first_day <= {t0}) AS reactivated,
           count(*) FILTER (WHERE in_s AND in_e) AS retained,
           count(*) FILTER (WHERE bought AND first_day <= {t0}) AS repeat_buyers,
           count(*) FILTER (WHERE first_day <= {t0}) AS acquired
    FROM {source}
    {group_by}
"""

_COUNT_NAMES = ("S", "E", "N", "reactivated", "retained", "repeat_buyers", "acquired")


def _counts_sql(periods: list[_Period], has_segment: bool,
                dialect: Dialect = "duckdb") -> str:
    """The counting query for these periods: one row per period (and segment)."""
    occasions = _occasion_ctes(max(p.t1 for p in periods), dialect)
    table = _TABLE[dialect].format("periods")
    if len(periods) == 1:
        period = periods[0]
        segment_join = "," + _as_of_segment(
            "customers_segment", "customers",
            ("customer_id", "t1", "first_day", "in_s", "in_e", "bought"),
            "c.t1 >= s.day", dialect)
        return _in_dialect(_SINGLE_PERIOD_SQL.format(
            occasions=occasions, t0=int(period.t0), t1=int(period.t1), w=int(period.window),
            segment_day=f", {_segment_day_cte(dialect)}" if has_segment else "",
            segment_join=segment_join if has_segment else "",
            segment=", segment" if has_segment else "",
            source="customers_segment" if has_segment else "customers",
            group_by="GROUP BY segment" if has_segment else "",
        ), dialect)
    flags = _FLAGS_CTE.format(periods=table)
    if has_segment:
        base_segment = _as_of_segment(
            "base_segment", "base", ("period_id", "t0", "t1", "customer_id", "first_day"),
            "c.t1 >= s.day", dialect)
        return _in_dialect(_SEGMENT_COUNTS_SQL.format(
            occasions=occasions, flags=flags, segment_day=_segment_day_cte(dialect),
            periods=table, base_segment=base_segment), dialect)
    return _in_dialect(_COUNTS_SQL.format(occasions=occasions, flags=flags, periods=table),
                       dialect)


def _run(data: _Prepared, sql: str, tables: dict[str, Any] | None = None) -> pd.DataFrame:
    if isinstance(data.frame, CleanTransactions):
        return _run_on_view(data.frame, data.segment_col, sql, tables or {})
    if isinstance(data.frame, SparkLoadResult):
        return _run_on_spark(data.frame, data.segment_col, sql, tables or {})
    con = connect()
    try:
        con.register("tx", data.frame)
        for name, table in (tables or {}).items():
            con.register(name, table)
        return con.execute(sql).df()
    except duckdb.Error as exc:  # pragma: no cover - a bug, not bad input
        raise RuntimeError(f"churnlens retention query failed: {exc}") from exc
    finally:
        con.close()


def _run_on_view(view: CleanTransactions, segment_col: str | None, sql: str,
                 tables: dict[str, Any]) -> pd.DataFrame:
    """The same query on the out-of-core view (its connection's memory limit and spill)."""
    con = view.connection
    segment = f", {_ident(segment_col)} AS segment" if segment_col else ""
    try:
        con.execute(f'CREATE OR REPLACE TEMP VIEW tx AS SELECT customer_id, "timestamp", '
                    f"amount{segment} FROM {view.view}")
        for name, table in tables.items():
            con.register(name, table)
        return con.execute(sql).df()
    except duckdb.Error as exc:  # pragma: no cover - a bug, not bad input
        raise RuntimeError(f"churnlens retention query failed: {exc}") from exc
    finally:
        for name in tables:
            con.unregister(name)


def _run_on_spark(loaded: SparkLoadResult, segment_col: str | None, sql: str,
                  tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The same query in Spark SQL on the clean rows; only its result comes back."""
    frame = loaded.transactions
    columns = ["customer_id", "`timestamp`", "amount"]
    if segment_col:
        columns.append(f"{_ident(segment_col, 'spark')} AS segment")
    spark = frame.sparkSession
    named = {name: spark.createDataFrame(table) for name, table in tables.items()}
    return spark.sql(sql, tx=frame.selectExpr(*columns), **named).toPandas()


def _rates_frame(data: _Prepared, periods: list[_Period]) -> pd.DataFrame:
    """Counts and rates of every period (and segment), in period order."""
    table = pd.DataFrame(
        {
            "period_id": np.arange(len(periods), dtype=np.int64),
            "t0": np.array([p.t0 for p in periods], dtype=np.int64),
            "t1": np.array([p.t1 for p in periods], dtype=np.int64),
            "w": np.array([p.window for p in periods], dtype=np.int64),
        }
    )
    sql = _counts_sql(periods, has_segment=data.segment_col is not None,
                      dialect=data.dialect)
    counts = _run(data, sql, {"periods": table})
    if data.segment_col is None:
        counts = counts.set_index("period_id").reindex(table["period_id"], fill_value=0)
        counts = counts.reset_index()
    else:
        counts = _full_grid(counts, len(periods))
        counts = counts.rename(columns={"segment": data.segment_col})
        counts[data.segment_col] = _restore_dtype(counts[data.segment_col], data.segment_dtype)
    counts = counts.astype({name: "int64" for name in _COUNT_NAMES})
    info = pd.DataFrame(
        {
            "period_id": table["period_id"],
            "period": [p.label for p in periods],
            "start": [from_day_number(p.t0) for p in periods],
            "end": [from_day_number(p.t1) for p in periods],
            "window_days": table["w"],
            "complete": [
                _covered(data.first_day, data.last_day, p.t0, p.t1, p.window) for p in periods
            ],
        }
    )
    frame = info.merge(counts, on="period_id", how="right", validate="one_to_many")
    return with_rates(frame).drop(columns=["period_id"])


def _full_grid(counts: pd.DataFrame, n_periods: int) -> pd.DataFrame:
    """Every segment in every period (zeros where a segment has no customers yet)."""
    segments = _sorted_unique(counts["segment"])
    grid = pd.MultiIndex.from_product(
        [range(n_periods), range(len(segments))], names=["period_id", "segment_position"]
    ).to_frame(index=False)
    counts = counts.assign(segment_position=_positions(counts["segment"], segments))
    out = grid.merge(counts.drop(columns=["segment"]), how="left",
                     on=["period_id", "segment_position"], validate="one_to_one")
    out[list(_COUNT_NAMES)] = out[list(_COUNT_NAMES)].fillna(0)
    out["segment"] = [segments[i] for i in out["segment_position"]]
    return out.drop(columns=["segment_position"])


def _sorted_unique(values: pd.Series) -> list[Any]:
    """Distinct values in ascending order, the missing value (if any) last."""
    present = values.dropna().unique().tolist()
    try:
        present.sort()
    except TypeError:  # values of mixed types: order by their text
        present.sort(key=str)
    return present + ([None] if values.isna().any() else [])


def _restore_dtype(values: pd.Series, dtype: Any) -> pd.Series:
    """Segment values back in the dtype of the input column where it can hold them."""
    plain = values.astype(object).where(values.notna(), None)
    try:
        return plain.astype(dtype)
    except (TypeError, ValueError):
        return plain


def _positions(values: pd.Series, ordered: list[Any]) -> np.ndarray:
    lookup = {v: i for i, v in enumerate(ordered) if v is not None}
    missing = len(ordered) - 1
    return np.array([missing if _is_missing(v) else lookup[v] for v in values], dtype=np.int64)


def with_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the rates (percent; NaN where the denominator is 0) to counts ``S, E, N,
    retained, repeat_buyers, acquired``: the one place the formulas of retention.md live.

    Each ratio is ``100 * count / denominator`` with a single rounding, so exact
    ratios such as 3/5 come out as exactly 60.0.
    """
    S, E, N = frame["S"], frame["E"], frame["N"]
    cohort_retention = _percent(frame["retained"], S)
    return frame.assign(
        crr=_percent(E - N, S),
        cohort_retention=cohort_retention,
        churn_rate=100 - cohort_retention,  # the contract's formula, literally
        repeat_rate=_percent(frame["repeat_buyers"], frame["acquired"]),
        simple_ratio=_percent(E, S),
    )


def _percent(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    num = (100 * numerator.astype("int64")).astype("float64")
    den = denominator.astype("float64").where(denominator > 0)
    return num / den


# --- cohort table -----------------------------------------------------------------


def _month_sql(day: str, dialect: Dialect = "duckdb") -> str:
    """SQL: months since 0000-01 of the day number ``day``."""
    date = (f"date_add(DATE '1970-01-01', {day})" if dialect == "spark"
            else f"(DATE '1970-01-01' + {day})")
    return f"CAST(year({date}) * 12 + month({date}) - 1 AS BIGINT)"


def _cohort_counts(data: _Prepared, end_day: int) -> pd.DataFrame:
    """Long table: segment, cohort month, month k, customers with an occasion then."""
    # Months first, then each customer's first day from their (fewer) month rows:
    # measured faster than aggregating the occasion days twice.
    dialect = data.dialect
    if data.segment_col is not None:
        segment_ctes = f""", {_segment_day_cte(dialect)},{_as_of_segment(
            "acquired", "first", ("customer_id", "first_day"), "c.first_day >= s.day",
            dialect)}"""
    else:
        nothing = "CAST(NULL AS STRING)" if dialect == "spark" else "NULL"
        segment_ctes = f""",
            acquired AS (SELECT customer_id, first_day, {nothing} AS segment FROM first)"""
    month = functools.partial(_month_sql, dialect=dialect)
    sql = f"""
        WITH daily AS ({daily_sql(_TABLE[dialect].format("tx"), dialect)}),
        months AS (
            SELECT customer_id, {month("day")} AS month, min(day) AS first_day
            FROM daily WHERE {is_occasion_sql()} AND day <= {int(end_day)}
            GROUP BY ALL
        ),
        first AS (
            SELECT customer_id, min(first_day) AS first_day FROM months GROUP BY customer_id
        ){segment_ctes}
        SELECT a.segment, {month("a.first_day")} AS cohort,
               m.month - {month("a.first_day")} AS k,
               count(*) AS customers
        FROM months AS m JOIN acquired AS a USING (customer_id)
        GROUP BY ALL
    """
    return _run(data, _in_dialect(sql, dialect))


def _last_elapsed_month(day: int) -> int:
    """Month index (as in :func:`_month_sql`) of the last month complete by ``day``."""
    date = from_day_number(day)
    month = date.year * 12 + date.month - 1
    is_month_end = (date + dt.timedelta(days=1)).month != date.month
    return month if is_month_end else month - 1


def _month_label(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def _cohort_wide(
    counts: pd.DataFrame, last_month: int, segment_col: str | None, segment_dtype: Any
) -> pd.DataFrame:
    first_cohort = int(counts["cohort"].min())
    cohorts = np.arange(first_cohort, int(counts["cohort"].max()) + 1)
    n_months = max(last_month - first_cohort, 0) + 1
    segments = _sorted_unique(counts["segment"]) if segment_col else [None]
    blocks = []
    for position, segment in enumerate(segments):
        if segment_col:
            mine = counts[_positions(counts["segment"], segments) == position]
        else:
            mine = counts
        cells = np.zeros((len(cohorts), n_months))
        rows = mine["cohort"].to_numpy() - first_cohort
        ks = mine["k"].to_numpy()
        keep = ks < n_months
        np.add.at(cells, (rows[keep], ks[keep]), mine["customers"].to_numpy()[keep])
        sizes = np.zeros(len(cohorts), dtype=np.int64)
        at_zero = ks == 0
        np.add.at(sizes, rows[at_zero], mine["customers"].to_numpy()[at_zero])
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = 100 * cells / np.where(sizes > 0, sizes, np.nan)[:, None]
        elapsed = (cohorts[:, None] + np.arange(n_months)[None, :]) <= last_month
        shares[~elapsed] = np.nan
        block = pd.DataFrame(shares, columns=list(range(n_months)))
        block.insert(0, COHORT_SIZE_COLUMN, sizes)
        block.insert(0, COHORT_COLUMN, [_month_label(int(m)) for m in cohorts])
        if segment_col:
            block.insert(0, segment_col, [segment] * len(cohorts))
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True)
    if segment_col:
        table[segment_col] = _restore_dtype(table[segment_col], segment_dtype)
    return table


# --- helpers ----------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)

