"""Input checks shared by the library, the CLI and the API.

One helper per kind of check. Messages say what is wrong, where (source, column,
first offending rows) and end with ``Suggestion: ...`` saying what to do.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
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

# The one form of a date a user types (CLI options, API fields): ISO 8601 YYYY-MM-DD.
# Other forms are ambiguous (01/10/2024 is 1 October or 10 January) or relative
# ("today"), so they are refused rather than guessed. ASCII digits only.
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# How many days an as-of date may fall after the data's last day. A week: a feed that
# lags by a weekend or a holiday still scores; a feed that has been down for longer is
# caught. Each day of gap adds a day to every customer's recency (7 days are under 8% of
# the default 91-day horizon), so a larger gap must be asked for.
DEFAULT_MAX_STALENESS_DAYS = 7

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
        candidates = [lower[a] for a in (name.lower().strip(), role, *_ALIASES.get(role, ()))
                      if a in lower]
        if candidates and role in _FLAGS:
            # quoted for the shell when needed: a name with spaces stays one value
            hints.append(
                f"map it with {_FLAGS[role]} {shlex.quote(candidates[0])} (CLI) or "
                f"{_KWARGS[role]}={candidates[0]!r} (Python)"
            )
        elif candidates:  # an optional or extra column (--segment-col, --order-col...)
            hints.append(f"it is named {candidates[0]!r} here (names are case-sensitive)")
    names = ", ".join(repr(n) for n in missing.values())
    if hints:
        hint = "; ".join(hints)
    elif any(role in _FLAGS for role in missing):
        hint = ("name the columns with --customer-col, --time-col and --amount-col (CLI) "
                "or customer_col=, time_col=, amount_col= (Python)")
    else:  # only columns an option asked for by name
        hint = ("check the column name given to the option that asked for it (names are "
                "case-sensitive), or leave the option out")
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


def parse_iso_day(text: Any, *, name: str) -> dt.date:
    """Read a date a user typed, in the one accepted form ``YYYY-MM-DD`` (ISO 8601).

    The rule of every date typed on the command line (``--as-of``, ``--start``,
    ``--end``...) and of the API's date fields: exactly four digits, two and two,
    separated by ``-``, naming a calendar day within :data:`PLAUSIBLE_DATES`. Nothing
    else is guessed: ``01/10/2024`` (1 October or 10 January?), ``31.12.2024``,
    ``Oct 1 2024``, ``today``, ``2024-1-5`` and ``20241231`` are refused. Timestamps
    inside data files keep their own rule (the loader's, with ``time_format``).

    Parameters
    ----------
    text
        What the user typed.
    name
        The option or field, for the message (``--as-of``).

    Raises
    ------
    ChurnlensError
        Not of the form ``YYYY-MM-DD``, not a calendar day (``2024-02-30``), or outside
        :data:`PLAUSIBLE_DATES`; the message names ``name`` and the accepted form.

    Examples
    --------
    >>> parse_iso_day("2024-03-31", name="--as-of")
    datetime.date(2024, 3, 31)
    >>> try:
    ...     parse_iso_day("31/03/2024", name="--as-of")
    ... except ChurnlensError as exc:
    ...     print(str(exc).split(";")[0])
    --as-of: '31/03/2024' is not a date of the form YYYY-MM-DD
    """
    if not isinstance(text, str) or not ISO_DAY.fullmatch(text):
        raise ChurnlensError(
            f"{name}: {text!r} is not a date of the form YYYY-MM-DD; churnlens cannot read "
            "other forms without guessing (is 01/10/2024 the 1st of October or the 10th of "
            "January?). Suggestion: use ISO format YYYY-MM-DD, for example 2024-03-31."
        )
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ChurnlensError(
            f"{name}: {text!r} is not a calendar day ({exc}). Suggestion: use ISO format "
            "YYYY-MM-DD with a real day, for example 2024-03-31."
        ) from None
    require_plausible_date(day, name=name)
    return day


def require_recent_data(
    as_of: dt.date,
    last_day: dt.date,
    *,
    max_staleness_days: int = DEFAULT_MAX_STALENESS_DAYS,
    source: str | None = None,
) -> None:
    """Refuse an as-of date more than ``max_staleness_days`` after the data's last day.

    Data that stop long before the as-of date usually mean a feed that stopped: scored
    at that date, every customer looks silent for the whole gap (high risk, retention
    predicted far off the last actual) and nothing else says so. The one rule for
    every command that takes an as-of date and data, and for the library paths
    behind them (``load_transactions(max_staleness_days=...)``).

    Parameters
    ----------
    as_of
        The as-of date asked for.
    last_day
        The last day of the data (before any as-of filter).
    max_staleness_days
        The gap allowed, in days (``--max-staleness-days``, settings
        ``data.max_staleness_days``; default :data:`DEFAULT_MAX_STALENESS_DAYS`).
    source
        Where the data come from (a file path), for the message.

    Raises
    ------
    DataValidationError
        Saying how stale the data are and how to allow the gap.

    Examples
    --------
    >>> require_recent_data(dt.date(2025, 1, 5), dt.date(2024, 12, 31))  # 5 days: fine
    >>> try:
    ...     require_recent_data(dt.date(2025, 3, 31), dt.date(2024, 12, 31))
    ... except DataValidationError as exc:
    ...     print(str(exc).split(":")[0])
    the data end 2024-12-31, 90 days before the as-of date 2025-03-31
    """
    require_positive_int(max_staleness_days, name="max_staleness_days", minimum=0)
    gap = (as_of - last_day).days
    if gap <= max_staleness_days:
        return
    raise DataValidationError(
        f"the data{_where(source)} end {last_day}, {gap} days before the as-of date {as_of}: "
        f"more than the {max_staleness_days} days allowed, so the data feed may have "
        f"stopped, and every customer would look {gap} days more silent than they are. "
        f"Suggestion: check that the data are up to date, or use --as-of {last_day}; if "
        f"the gap is expected, allow it with --max-staleness-days {gap} (settings: "
        f"data.max_staleness_days; Python: max_staleness_days={gap})."
    )


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
