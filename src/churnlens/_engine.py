"""The embedded engine (DuckDB) and the SQL pieces shared by every stage.

Dates are handled as integer day numbers (days since 1970-01-01) inside SQL, so the
same statements run unchanged on DuckDB and on Spark SQL: only the expression that
turns a timestamp into its day number differs between the two dialects.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Literal

import duckdb
import pandas as pd

__all__ = [
    "OCCASION_MIN_NET_AMOUNT",
    "Dialect",
    "connect",
    "daily_sql",
    "day_number",
    "day_sql",
    "from_day_number",
    "is_occasion_sql",
]

Dialect = Literal["duckdb", "spark"]

# A purchase occasion is a (customer, day) whose net amount is positive. "Positive" is
# "above 1e-9": a refund that cancels a day's items exactly (10.10 + 5.20 - 15.30) can
# sum to +-1e-15 in floating point, and must not become an occasion by accident of
# summation order. Every stage (features, retention, scoring, Spark) uses this.
OCCASION_MIN_NET_AMOUNT = 1e-9
_QUOTE = {"duckdb": '"{}"', "spark": "`{}`"}

_EPOCH = pd.Timestamp("1970-01-01")
_DAY_SQL: dict[str, str] = {
    "duckdb": "CAST(CAST({col} AS DATE) - DATE '1970-01-01' AS INTEGER)",
    "spark": "datediff(CAST({col} AS DATE), DATE '1970-01-01')",
}


def connect(
    *, threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection tuned for analytical batch work.

    ``threads`` defaults to the machine's cores; ``memory_limit`` to DuckDB's own
    default (80% of RAM), beyond which DuckDB spills to a temporary directory.
    """
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(threads or os.cpu_count() or 1)}")
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])
    # Row order of results is defined by explicit ORDER BY only; this lets DuckDB
    # stream and parallelise more.
    con.execute("SET preserve_insertion_order = false")
    return con


def day_sql(column: str, dialect: Dialect = "duckdb") -> str:
    """SQL expression: the calendar day of ``column`` as days since 1970-01-01."""
    return _DAY_SQL[dialect].format(col=column)


def is_occasion_sql(net_amount: str = "net_amount") -> str:
    """SQL condition: the day's net amount makes it a purchase occasion."""
    return f"{net_amount} > {OCCASION_MIN_NET_AMOUNT!r}"


def daily_sql(table: str, dialect: Dialect = "duckdb") -> str:
    """SQL: one row per (customer, day) with the day's net amount.

    Columns: ``customer_id``, ``day`` (int), ``net_amount`` (refunds included),
    ``refund_amount`` (sum of absolute negative amounts), ``n_rows``. A purchase
    occasion is a row where :func:`is_occasion_sql` holds (``retention.md``).
    """
    return f"""
        SELECT customer_id,
               {day_sql(_QUOTE[dialect].format("timestamp"), dialect)} AS day,
               SUM(amount) AS net_amount,
               SUM(CASE WHEN amount < 0 THEN -amount ELSE 0 END) AS refund_amount,
               COUNT(*) AS n_rows
        FROM {table}
        GROUP BY 1, 2
    """


def day_number(date: dt.date | pd.Timestamp) -> int:
    """Days since 1970-01-01 of a date."""
    return int((pd.Timestamp(date).normalize() - _EPOCH).days)


def from_day_number(day: int) -> dt.date:
    """The date of a day number."""
    return (_EPOCH + pd.Timedelta(days=int(day))).date()
