"""Input checks shared by the library, the CLI and the API.

One helper per kind of check. Messages say what is wrong, where (source, column,
first offending rows) and end with ``Suggestion: ...`` saying what to do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from churnlens.exceptions import ChurnlensError, DataValidationError, MissingColumnError

# How many offending rows an error message shows.
MAX_ROWS_SHOWN = 5

# The dates churnlens accepts in transactions and as as-of dates, first and last day
# included: the same bounds for the loader, the CLI and the API. A purchase in year 1
# or 9999 is a typo or a stand-in for a missing date, and would make a recency of 739,000 days.
PLAUSIBLE_DATES: tuple[dt.date, dt.date] = (dt.date(1900, 1, 1), dt.date(2100, 12, 31))

# Common alternative names, used only to suggest a mapping flag in error messages.
_ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": ("customer", "customerid", "cust_id", "client_id", "user_id", "userid",
                    "account_id", "buyer_id", "member_id", "id"),
    "timestamp": ("date", "datetime", "time", "order_date", "purchase_date", "created_at",
                  "invoice_date", "invoicedate", "transaction_date", "ts"),
    "amount": ("price", "revenue", "value", "total", "sales", "spend", "order_value",
               "amount_usd", "monetary", "dollar_value"),
}
_FLAGS = {"customer_id": "--customer-col", "timestamp": "--time-col", "amount": "--amount-col"}
_KWARGS = {"customer_id": "customer_col", "timestamp": "time_col", "amount": "amount_col"}


def _where(source: str | None) -> str:
    return f" in {source}" if source else ""


def row_label(index: Any, *, file_rows: bool) -> str:
    """Name a row for a message: data row number, plus the file line for files."""
    if file_rows:
        return f"row {int(index) + 1} (line {int(index) + 2})"
    return f"row {index!r}"


def format_bad_rows(values: pd.Series, *, file_rows: bool, limit: int = MAX_ROWS_SHOWN) -> str:
    """Render the first offending rows of a column as ``row N: 'value'`` items."""
    shown = [f"{row_label(i, file_rows=file_rows)}: {v!r}" for i, v in values.head(limit).items()]
    more = len(values) - len(shown)
    text = "; ".join(shown)
    return text + (f"; and {more} more" if more > 0 else "")


def require_columns(
    columns: Sequence[str],
    required: dict[str, str],
    *,
    source: str | None = None,
) -> None:
    """Check that every required column is present.

    Parameters
    ----------
    columns
        Column names found in the input.
    required
        Mapping of standard role (``customer_id``, ``timestamp``, ``amount``...) to the
        column name the user asked for.
    source
        Where the columns come from (a file path), for the message.

    Raises
    ------
    MissingColumnError
        Naming the missing columns, the columns found and a mapping suggestion.
    """
    found = [str(c) for c in columns]
    missing = {role: name for role, name in required.items() if name not in found}
    if not missing:
        return
    lower = {c.lower().strip(): c for c in found}
    hints = []
    for role, name in missing.items():
        candidates = [lower[a] for a in (name.lower(), *_ALIASES.get(role, ())) if a in lower]
        if candidates and role in _FLAGS:
            hints.append(
                f"map it with {_FLAGS[role]} {candidates[0]} (CLI) or "
                f"{_KWARGS[role]}={candidates[0]!r} (Python)"
            )
    names = ", ".join(repr(n) for n in missing.values())
    hint = "; ".join(hints) if hints else (
        "name the columns with --customer-col, --time-col and --amount-col (CLI) or "
        "customer_col=, time_col=, amount_col= (Python)"
    )
    raise MissingColumnError(
        f"missing required column{'s' if len(missing) > 1 else ''} {names}{_where(source)}; "
        f"columns found: {found}. Suggestion: {hint}."
    )


def require_unique_columns(
    columns: Sequence[Any],
    wanted: Iterable[str],
    *,
    source: str | None = None,
) -> None:
    """Check that no wanted column name appears more than once in the input.

    Two columns with the same name make "the amount column" ambiguous; which one a
    reader picks is an accident of the reader, so it is an error.

    Raises
    ------
    DataValidationError
        Naming the repeated columns, their positions and the columns found.
    """
    found = [str(c) for c in columns]
    repeated = {
        name: [i + 1 for i, c in enumerate(found) if c == name]
        for name in dict.fromkeys(wanted)
        if found.count(name) > 1
    }
    if repeated:
        where = "; ".join(
            f"{name!r} at positions {', '.join(map(str, spots))}"
            for name, spots in repeated.items()
        )
        raise DataValidationError(
            f"column names repeat{_where(source)}: {where}; columns found: {found}. "
            "Suggestion: rename or remove the extra columns so each name appears once."
        )


def parse_date(value: str | dt.date | dt.datetime | pd.Timestamp, *, name: str) -> pd.Timestamp:
    """Parse a calendar date given by a user (``--as-of``, ``start``...).

    Returns a timezone-naive midnight :class:`pandas.Timestamp`. A datetime keeps only
    its date (after conversion to UTC when it has an offset).

    Examples
    --------
    >>> parse_date("2024-03-31", name="as_of")
    Timestamp('2024-03-31 00:00:00')
    """
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date) and not isinstance(value, str):
        ts = pd.Timestamp(value)
    else:
        text = str(value).strip()
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ChurnlensError(
                f"{name}: cannot read {value!r} as a date. Suggestion: use ISO format "
                "YYYY-MM-DD, for example 2024-03-31."
            ) from exc
        if ts is pd.NaT:
            raise ChurnlensError(f"{name}: a date is required, got {value!r}. "
                                 "Suggestion: use ISO format YYYY-MM-DD.")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    try:
        return ts.normalize().as_unit("ns")
    except (ValueError, OverflowError) as exc:  # free text such as "31st of March" can
        first, last = PLAUSIBLE_DATES          # parse to year 1
        raise ChurnlensError(
            f"{name}: {value!r} reads as {ts.date()}, outside the supported dates "
            f"{first} .. {last}. Suggestion: use ISO format YYYY-MM-DD, for example "
            "2024-03-31."
        ) from exc


def implausible_dates(values: pd.Series) -> pd.Series:
    """Which timestamps fall outside :data:`PLAUSIBLE_DATES` (missing values are not)."""
    first, last = PLAUSIBLE_DATES
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values
    else:
        stamps = pd.Series([pd.Timestamp(v) if v is not None and v is not pd.NaT else pd.NaT
                            for v in values], index=values.index)
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    early = stamps < pd.Timestamp(first)
    late = stamps >= pd.Timestamp(last) + pd.Timedelta(days=1)
    return (early | late).fillna(False).astype(bool)


def require_plausible_date(value: dt.date | pd.Timestamp, *, name: str) -> None:
    """Refuse a date outside :data:`PLAUSIBLE_DATES` (``name`` says which option or field).

    Examples
    --------
    >>> try:
    ...     require_plausible_date(dt.date(9999, 12, 31), name="--as-of")
    ... except ChurnlensError as exc:
    ...     print(str(exc).split(". Suggestion")[0])
    --as-of: 9999-12-31 is outside the supported dates 1900-01-01 .. 2100-12-31
    """
    first, last = PLAUSIBLE_DATES
    day = value.date() if isinstance(value, dt.datetime) else value
    if not first <= day <= last:
        raise ChurnlensError(
            f"{name}: {day} is outside the supported dates {first} .. {last}. Suggestion: "
            "check the date (a year such as 9999 or 1 is usually a typo, or a stand-in for a "
            "missing date)."
        )


def require_positive_int(value: int, *, name: str, minimum: int = 1) -> int:
    """Check an integer option such as ``horizon_days``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ChurnlensError(f"{name} must be an integer >= {minimum}, got {value!r}. "
                             f"Suggestion: give a whole number of at least {minimum}.")
    return int(value)


def require_choice(value: str, *, name: str, allowed: Iterable[str]) -> str:
    """Check that an option takes one of the allowed values, listing them if not."""
    allowed = list(allowed)
    if value not in allowed:
        raise ChurnlensError(f"{name} must be one of {allowed}, got {value!r}. "
                             f"Suggestion: use one of {', '.join(map(str, allowed))}.")
    return value


def require_no_missing(series: pd.Series, *, column: str, source: str | None,
                       file_rows: bool, what: str) -> None:
    """Raise if a column has missing values, showing the first rows."""
    bad = series[series.isna()]
    if len(bad):
        raise DataValidationError(
            f"column {column!r}{_where(source)} has {len(bad)} missing {what}: "
            f"{format_bad_rows(bad, file_rows=file_rows)}. "
            f"Suggestion: fill or remove these rows."
        )
