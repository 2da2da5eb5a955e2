"""The embedded engine (DuckDB) and the SQL pieces shared by every stage.

Dates are handled as integer day numbers (days since 1970-01-01) inside SQL, so the
same statements run unchanged on DuckDB and on Spark SQL: only the expression that
turns a timestamp into its day number differs between the two dialects.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # imported where used: the SQL pieces stay cheap to import (model loading)
    import duckdb
    import pandas as pd

__all__ = [
    "AMOUNT_UNITS",
    "AUTO_MEMORY_CAP",
    "DEFAULT_MEMORY_LIMIT",
    "MAX_ABS_AMOUNT",
    "Dialect",
    "amount_from_units_sql",
    "amount_units_sql",
    "connect",
    "daily_sql",
    "day_number",
    "day_sql",
    "from_day_number",
    "is_occasion_sql",
    "resolve_memory_limit",
]

Dialect = Literal["duckdb", "spark"]

# Money is added exactly. Each amount becomes a whole number of billionths of the
# currency unit (AMOUNT_UNITS per unit; rounded half away from zero, the same in both
# engines), which are summed as exact integers (128-bit) and turned back into a float
# once, at the end. A floating-point SUM depends on the order the engine happens to add
# in: with several threads, monetary features changed in their last bits from one run
# to the next, and a day whose refund cancels its items (10.10 + 5.20 - 15.30) summed to
# +-1e-15 instead of 0. So a purchase occasion, a (customer, day) whose net amount is
# positive, is exactly "net units > 0" in every stage (features, labels, retention,
# scoring, Spark).
AMOUNT_UNITS = 1_000_000_000
# The largest amount one transaction may have (absolute value). Far beyond any purchase
# (a value this size is an id or a misplaced column), and where exact sums of billionths
# would lose their meaning: a float has no billionths left above about 1e7.
MAX_ABS_AMOUNT = 1e12
_EXACT_INTEGER = {"duckdb": "HUGEINT", "spark": "DECIMAL(38,0)"}
_QUOTE = {"duckdb": '"{}"', "spark": "`{}`"}

# The embedded engine's memory limit when the settings do not give one: "auto" is half
# the machine's RAM, at most AUTO_MEMORY_CAP. DuckDB's own default (80% of RAM) and a
# plain 50% both let it hold what it is allowed: scoring 100M transactions peaked at
# 6.83 GiB with 50% of 24 GiB, against 3.74 GiB with a 3 GB limit, and out-of-core
# training took 9 min 56 s with 2 GB against 19 min 10 s with 50% (docs/scale.md).
DEFAULT_MEMORY_LIMIT = "auto"
AUTO_MEMORY_CAP = 4 * 1024**3
_EPOCH_DATE = dt.date(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH_DATE.toordinal()
_DAY_SQL: dict[str, str] = {
    "duckdb": "CAST(CAST({col} AS DATE) - DATE '1970-01-01' AS INTEGER)",
    "spark": "datediff(CAST({col} AS DATE), DATE '1970-01-01')",
}


def connect(
    *, threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection tuned for analytical batch work.

    ``threads`` defaults to the machine's cores; ``memory_limit`` (a size, a share of
    RAM such as ``"50%"``, or ``"auto"``: see :func:`resolve_memory_limit`) to DuckDB's
    own default (80% of RAM), beyond which DuckDB spills to a temporary directory.
    """
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(threads or os.cpu_count() or 1)}")
    limit = resolve_memory_limit(memory_limit)
    if limit:
        con.execute("SET memory_limit = ?", [limit])
    # Row order of results is defined by explicit ORDER BY only; this lets DuckDB
    # stream and parallelise more.
    con.execute("SET preserve_insertion_order = false")
    return con


def resolve_memory_limit(memory_limit: str | None, *, ram_bytes: int | None = None
                         ) -> str | None:
    """The DuckDB ``memory_limit`` value for a setting: ``"auto"`` becomes a size.

    ``"auto"`` (any case, spaces ignored) is half of ``ram_bytes`` (default: the
    machine's physical memory), at most :data:`AUTO_MEMORY_CAP` (4 GiB), in whole MiB;
    when the memory cannot be read, the cap. Anything else is returned as given, for
    DuckDB to read (``"4GB"``, ``"500MB"``, ``"50%"``; ``None`` or ``""``: DuckDB's own
    default).

    >>> resolve_memory_limit("auto", ram_bytes=24 * 1024**3)
    '4096MiB'
    >>> resolve_memory_limit("auto", ram_bytes=4 * 1024**3)
    '2048MiB'
    >>> resolve_memory_limit("2GB")
    '2GB'
    """
    if memory_limit is None or memory_limit.strip().lower() != "auto":
        return memory_limit
    ram = ram_bytes if ram_bytes is not None else _physical_memory()
    limit = AUTO_MEMORY_CAP if not ram or ram <= 0 else min(AUTO_MEMORY_CAP, ram // 2)
    return f"{max(limit // 2**20, 1)}MiB"


def _physical_memory() -> int | None:
    """The machine's physical memory in bytes, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def day_sql(column: str, dialect: Dialect = "duckdb") -> str:
    """SQL expression: the calendar day of ``column`` as days since 1970-01-01."""
    return _DAY_SQL[dialect].format(col=column)


def amount_units_sql(amount: str, dialect: Dialect = "duckdb") -> str:
    """SQL: ``amount`` as an exact whole number of billionths (:data:`AMOUNT_UNITS`)."""
    return f"CAST(ROUND({amount} * {AMOUNT_UNITS}) AS {_EXACT_INTEGER[dialect]})"


def amount_from_units_sql(units: str) -> str:
    """SQL: an exact sum of :func:`amount_units_sql` values back in currency (a float)."""
    return f"(CAST({units} AS DOUBLE) / {AMOUNT_UNITS})"


def is_occasion_sql(net_units: str = "net_units") -> str:
    """SQL condition: the day's net amount (exact units) makes it a purchase occasion."""
    return f"{net_units} > 0"


def daily_sql(table: str, dialect: Dialect = "duckdb") -> str:
    """SQL: one row per (customer, day) with the day's exact net amount.

    Columns: ``customer_id``, ``day`` (int) and ``net_units`` (the net amount, refunds
    included, in :data:`AMOUNT_UNITS`). A purchase occasion is a row where
    :func:`is_occasion_sql` holds (``retention.md``).
    """
    return f"""
        SELECT customer_id,
               {day_sql(_QUOTE[dialect].format("timestamp"), dialect)} AS day,
               SUM({amount_units_sql("amount", dialect)}) AS net_units
        FROM {table}
        GROUP BY 1, 2
    """


def day_number(date: dt.date | pd.Timestamp) -> int:
    """Days since 1970-01-01 of a date (a date-time counts by its calendar day)."""
    import pandas as pd

    return int((pd.Timestamp(date).normalize() - pd.Timestamp(_EPOCH_DATE)).days)


def from_day_number(day: int) -> dt.date:
    """The date of a day number."""
    return dt.date.fromordinal(_EPOCH_ORDINAL + int(day))
