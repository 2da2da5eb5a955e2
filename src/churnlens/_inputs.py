"""Load the optional inputs beside transactions: the customer table and the event table.

The same strict loading as transactions (:mod:`churnlens._loading`): the same readers
(CSV, TSV, Parquet, a DataFrame), the same customer-id rule (so an id is the same
customer in every file), the same timestamp rule (ISO 8601, UTC offsets converted, naive
values as given, unparseable values named by file line), errors that say what, where and
what to do, and a cleaning report. The rules themselves are the loader's; this module only
applies them to two more tables.

Two point-in-time helpers say what a feature computed at a cutoff may see:
:func:`attributes_at` (per customer, the attribute row valid at the cutoff) and
:func:`events_until` (the events on or before the cutoff's day). Nothing valid after the
cutoff ever passes them.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
from collections import Counter
from pathlib import Path
from typing import NamedTuple, TypeAlias

import numpy as np
import pandas as pd

from churnlens._loading import (
    RowsReport,
    _clean_customer_ids,
    _parse_timestamps,
    _read_header_line,
    _read_source,
    _require_delimiter,
    check_time_format,
    file_kind,
    on_or_before,
)
from churnlens._validation import (
    format_bad_rows,
    parse_date,
    require_plausible_date,
    require_unique_columns,
)
from churnlens.exceptions import DataValidationError, EmptyDataError, MissingColumnError

__all__ = [
    "CleanCustomers",
    "CleanEvents",
    "CustomersReport",
    "EventsReport",
    "InputSource",
    "attributes_at",
    "events_until",
    "load_customers",
    "load_events",
]

# Standard column names of the clean tables.
CUSTOMER = "customer_id"
VALID_FROM = "valid_from"
TIMESTAMP = "timestamp"
EVENT_TYPE = "event_type"
VALUE = "value"

InputSource: TypeAlias = str | os.PathLike[str] | pd.DataFrame

# How the options that name each column are spelled, for messages.
_CUSTOMER_HINTS = {
    CUSTOMER: "id_col= (Python), or rename it to customer_id",
    VALID_FROM: "--valid-from-col (CLI) or valid_from_col= (Python)",
}
_EVENT_HINTS = {
    CUSTOMER: "id_col= (Python), or rename it to customer_id",
    TIMESTAMP: "time_col= (Python), or rename it to timestamp",
    EVENT_TYPE: "type_col= (Python), or rename it to event_type",
    VALUE: "value_col= (Python)",
}

# How many distinct values (event types, unknown types) a report lists by name.
_LISTED = 10


# --- the customer table ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CustomersReport(RowsReport):
    """What :func:`load_customers` read, kept, dropped and how it typed each attribute.

    Attributes
    ----------
    source
        The file path, or ``"DataFrame"``.
    rows_read, rows_kept
        Data rows in the input (header excluded) and in the clean table.
    dropped_missing_customer_id
        Rows without a customer id (dropped, as in transactions).
    dropped_duplicates
        Rows repeating an earlier row exactly (same id, ``valid_from`` and attributes):
        dropped, counted here. Two rows with the same id and ``valid_from`` but different
        attributes are an error.
    customers
        Distinct customer ids kept.
    valid_from_column
        The ``valid_from`` column read, or ``None`` (one static row per customer).
    rows_without_valid_from
        Rows whose ``valid_from`` is empty: valid from the beginning of time.
    first_valid_from, last_valid_from
        The range of the ``valid_from`` days given.
    timestamps_converted_to_utc
        ``valid_from`` values with a UTC offset, converted to UTC.
    numeric_attributes, categorical_attributes
        Attribute columns by type: numeric when every present value is a number,
        categorical (text) otherwise.
    missing_values
        Empty cells per attribute column (kept as missing).
    distinct_values
        Distinct present values per attribute column.
    """

    source: str
    rows_read: int
    rows_kept: int
    dropped_missing_customer_id: int
    dropped_duplicates: int
    customers: int
    valid_from_column: str | None
    rows_without_valid_from: int
    first_valid_from: dt.date | None
    last_valid_from: dt.date | None
    timestamps_converted_to_utc: int
    numeric_attributes: tuple[str, ...]
    categorical_attributes: tuple[str, ...]
    missing_values: dict[str, int]
    distinct_values: dict[str, int]

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a printed report."""
        out = [
            ("source", self.source),
            ("rows read", f"{self.rows_read:,}"),
            ("rows kept", f"{self.rows_kept:,}"),
            ("dropped: missing customer id", f"{self.dropped_missing_customer_id:,}"),
            ("dropped: exact duplicates", f"{self.dropped_duplicates:,}"),
            ("customers", f"{self.customers:,}"),
            ("valid_from column", self.valid_from_column or "none (static attributes)"),
        ]
        if self.valid_from_column:
            out += [
                ("rows valid from the start (no valid_from)",
                 f"{self.rows_without_valid_from:,}"),
                ("first valid_from", str(self.first_valid_from)),
                ("last valid_from", str(self.last_valid_from)),
                ("timestamps converted to UTC", f"{self.timestamps_converted_to_utc:,}"),
            ]
        for name in self.numeric_attributes:
            out.append((f"attribute {name}",
                        f"numeric, {self.missing_values[name]:,} missing"))
        for name in self.categorical_attributes:
            out.append((f"attribute {name}",
                        f"categorical, {self.distinct_values[name]:,} values, "
                        f"{self.missing_values[name]:,} missing"))
        return out


class CleanCustomers(NamedTuple):
    """The clean customer table and the report of how it was cleaned.

    Attributes
    ----------
    customers
        ``customer_id`` (the transactions' id rule), ``valid_from`` (naive datetimes,
        ``NaT`` for "from the start"; present only when a ``valid_from`` column was read)
        and the attribute columns: numeric ones as float64, categorical ones as text
        (``string`` dtype), missing cells as missing. Sorted by id and ``valid_from``.
    report
        The :class:`CustomersReport`.
    """

    customers: pd.DataFrame
    report: CustomersReport


def load_customers(
    source: InputSource,
    *,
    id_col: str = CUSTOMER,
    valid_from_col: str | None = None,
    attribute_cols: tuple[str, ...] | list[str] | None = None,
    time_format: str | None = None,
    delimiter: str | None = None,
) -> CleanCustomers:
    """Read, validate and clean a customer table (one or more attribute rows per customer).

    Parameters
    ----------
    source
        A CSV path (``.csv``, ``.csv.gz``, ``.tsv``), a Parquet path or a DataFrame.
    id_col
        The customer id column, renamed ``customer_id``. Ids follow the transactions'
        rule exactly (:func:`churnlens.load_transactions`): kept as given, ``12.0`` is
        ``12``, rows without an id (empty, ``NA``, ``null``...) dropped and counted.
    valid_from_col
        Optional column of the day (or time) from which a row's attributes hold, for
        attributes that change; renamed ``valid_from``. Parsed by the transactions'
        timestamp rule. An empty cell means "valid from the start". ``None``: the
        attributes are static, one row per customer.
    attribute_cols
        The attribute columns to keep; ``None`` (the default) keeps every other column.
    time_format
        A ``strftime`` format for ``valid_from`` values that are not ISO 8601.
    delimiter
        The field separator of a CSV file (default ``,``, a tab for ``.tsv``).

    Returns
    -------
    CleanCustomers
        ``(customers, report)``.

    Raises
    ------
    DataValidationError
        A missing or repeated column, an unreadable or empty file, an unparseable
        ``valid_from`` (naming the file lines), or two rows with the same id and
        ``valid_from`` but different attributes. The message names the source.

    Examples
    --------
    >>> raw = pd.DataFrame({"customer_id": ["007", "007", "8"],
    ...                     "valid_from": ["2024-01-01", "2024-06-01", None],
    ...                     "channel": ["web", "app", "store"], "age": ["31", "31", "40"]})
    >>> customers, report = load_customers(raw, valid_from_col="valid_from")
    >>> report.numeric_attributes, report.categorical_attributes
    (('age',), ('channel',))
    >>> attributes_at(customers, "2024-03-31")["channel"].tolist()
    ['web', 'store']
    """
    if time_format is not None:
        check_time_format(time_format)
    _check_delimiter(delimiter)
    roles = {CUSTOMER: id_col}
    if valid_from_col is not None:
        roles[VALID_FROM] = valid_from_col
    header = _header_names(source, roles, delimiter, table="customer table",
                           hints=_CUSTOMER_HINTS)
    if attribute_cols is None:
        attributes = [name for name in header if name not in roles.values()]
    else:
        attributes = [str(name) for name in attribute_cols]
    clashes = [name for name in attributes if name in (CUSTOMER, VALID_FROM)
               or name in roles.values()]
    if clashes:
        raise DataValidationError(
            f"attribute column(s) {clashes} in {_source_name(source)} have the name of the "
            f"id or valid_from column. Suggestion: if {VALID_FROM!r} says from when each row "
            f"holds, name it as the valid-from column (valid_from_col={VALID_FROM!r}, or "
            f"--valid-from-col {VALID_FROM} in the CLI); otherwise rename the column(s) (the "
            f"clean table names its key columns {CUSTOMER!r} and {VALID_FROM!r})."
        )
    wanted = {**roles, **{name: name for name in attributes}}
    frame, source_name, file_rows, rows_read, dropped_missing = _read_with_ids(
        source, wanted, roles, delimiter, id_col=id_col, table="customer table")

    converted, without_valid_from = 0, 0
    if valid_from_col is not None:
        frame[VALID_FROM], converted, without_valid_from = _parse_valid_from(
            frame[VALID_FROM], source_name, valid_from_col, file_rows, time_format)

    numeric: list[str] = []
    categorical: list[str] = []
    for name in attributes:
        column, is_numeric = _type_attribute(frame[name])
        frame[name] = column
        (numeric if is_numeric else categorical).append(name)

    frame, dropped_duplicates = _drop_repeats(frame, source_name, file_rows,
                                              keyed=valid_from_col is not None)
    sort_keys = [CUSTOMER, VALID_FROM] if valid_from_col is not None else [CUSTOMER]
    frame = frame.sort_values(sort_keys, kind="stable", na_position="first")
    frame = frame.reset_index(drop=True)
    valid = frame[VALID_FROM].dropna() if valid_from_col is not None else pd.Series([])
    report = CustomersReport(
        source=source_name,
        rows_read=rows_read,
        rows_kept=len(frame),
        dropped_missing_customer_id=dropped_missing,
        dropped_duplicates=dropped_duplicates,
        customers=int(frame[CUSTOMER].nunique()),
        valid_from_column=valid_from_col,
        rows_without_valid_from=without_valid_from,
        first_valid_from=valid.min().date() if len(valid) else None,
        last_valid_from=valid.max().date() if len(valid) else None,
        timestamps_converted_to_utc=converted,
        numeric_attributes=tuple(numeric),
        categorical_attributes=tuple(categorical),
        missing_values={name: int(frame[name].isna().sum()) for name in attributes},
        distinct_values={name: int(frame[name].nunique()) for name in attributes},
    )
    return CleanCustomers(frame, report)


def _parse_valid_from(values: pd.Series, source: str, column: str, file_rows: bool,
                      time_format: str | None) -> tuple[pd.Series, int, int]:
    """Parse ``valid_from`` with the transactions' timestamp rule; empty cells are NaT."""
    text = values.astype("string").str.strip() if not (
        pd.api.types.is_datetime64_any_dtype(values)) else values
    present = text.notna() & (text.astype("string") != "")
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    converted = 0
    if present.any():
        stamps, converted = _parse_timestamps(values.loc[present], source, column, file_rows,
                                              time_format)
        parsed.loc[present] = stamps.astype("datetime64[us]")
    return parsed, converted, int((~present).sum())


def _type_attribute(values: pd.Series) -> tuple[pd.Series, bool]:
    """An attribute as float64 when every present value is a number, else as text."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("string"), False
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64"), True
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("string"), False
    text = values.astype("string")
    stripped = text.str.strip()
    text = text.mask(stripped == "")  # an empty cell is missing
    present = text.notna()
    if present.any():
        numbers = pd.to_numeric(stripped.where(present), errors="coerce")
        if numbers[present].notna().all() and np.isfinite(numbers[present].astype(float)).all():
            return numbers.astype("float64"), True
    return text, False


def _drop_repeats(frame: pd.DataFrame, source: str, file_rows: bool, *,
                  keyed: bool) -> tuple[pd.DataFrame, int]:
    """Drop exact repeats; refuse two different rows for the same (id, valid_from)."""
    exact = frame.duplicated(keep="first")
    dropped = int(exact.sum())
    if dropped:
        frame = frame.loc[~exact]
    key = [CUSTOMER, VALID_FROM] if keyed else [CUSTOMER]
    clash = frame.duplicated(key, keep=False)
    if clash.any():
        rows = frame.loc[clash, CUSTOMER]
        what = "customer id and valid_from" if keyed else "customer id"
        suggestion = ("keep one row per customer and valid_from day" if keyed else
                      "keep one row per customer, or give a valid_from column "
                      "(--valid-from-col, valid_from_col=) for attributes that change")
        raise DataValidationError(
            f"{source} has {len(rows):,} rows sharing a {what} with different attributes: "
            f"{format_bad_rows(rows, file_rows=file_rows)}. Suggestion: {suggestion}."
        )
    return frame, dropped


def attributes_at(customers: CleanCustomers | pd.DataFrame,
                  cutoff: str | dt.date | pd.Timestamp) -> pd.DataFrame:
    """Per customer, the attribute row valid at ``cutoff``: the point-in-time join.

    The row valid at the cutoff is the one with the latest ``valid_from`` on or before
    the cutoff's day (the whole day included, as transactions' ``as_of``); a row without
    ``valid_from`` is valid from the start. A customer whose rows all start after the
    cutoff gets missing attributes: a row valid after the cutoff is never used.

    Parameters
    ----------
    customers
        A :class:`CleanCustomers` (or its ``customers`` frame).
    cutoff
        The cutoff day.

    Returns
    -------
    pandas.DataFrame
        One row per customer of the table (sorted by id): ``customer_id`` and the
        attribute columns (no ``valid_from``).
    """
    frame = customers.customers if isinstance(customers, CleanCustomers) else customers
    if CUSTOMER not in frame.columns:
        raise DataValidationError(
            f"the customer table has no {CUSTOMER!r} column. Suggestion: load it with "
            "churnlens.load_customers first."
        )
    day = parse_date(cutoff, name="cutoff")
    attributes = [c for c in frame.columns if c not in (CUSTOMER, VALID_FROM)]
    everyone = pd.Index(pd.unique(frame[CUSTOMER]), name=CUSTOMER)
    if VALID_FROM in frame.columns:
        valid_from = frame[VALID_FROM]
        valid = frame.loc[valid_from.isna() | on_or_before(valid_from, day)]
        order = valid[VALID_FROM].isna().map({True: 0, False: 1})
        valid = valid.assign(_static=order).sort_values(
            [CUSTOMER, "_static", VALID_FROM], kind="stable")
        latest = valid.drop_duplicates(CUSTOMER, keep="last")
    else:
        latest = frame.drop_duplicates(CUSTOMER, keep="last")
    out = latest.set_index(CUSTOMER)[attributes].reindex(everyone)
    out = out.sort_index(kind="stable").reset_index()
    for name in attributes:  # reindexing keeps the dtypes of text, widens nothing else
        out[name] = out[name].astype(frame[name].dtype)
    return out


# --- the event table ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EventsReport(RowsReport):
    """What :func:`load_events` read, kept and dropped, and why.

    Attributes
    ----------
    source
        The file path, or ``"DataFrame"``.
    rows_read, rows_kept
        Data rows in the input and in the clean table.
    dropped_missing_customer_id, dropped_missing_event_type, dropped_unknown_event_type,
    dropped_after_as_of
        Rows dropped, by reason.
    unknown_event_types
        The unknown types seen (with ``event_types`` given), most frequent first, with
        their row counts (the first ten).
    duplicate_rows
        Rows repeating an earlier row exactly (kept: two opens of one email are two).
    timestamps_converted_to_utc
        Timestamps with a UTC offset, converted to UTC.
    customers
        Distinct customer ids kept.
    event_types
        Rows kept per event type, most frequent first.
    value_column, rows_with_value
        The value column read (or ``None``) and the kept rows that have a value.
    first_day, last_day
        Date range of the kept rows.
    as_of
        The as-of date applied, if any.
    """

    source: str
    rows_read: int
    rows_kept: int
    dropped_missing_customer_id: int
    dropped_missing_event_type: int
    dropped_unknown_event_type: int
    dropped_after_as_of: int
    unknown_event_types: dict[str, int]
    duplicate_rows: int
    timestamps_converted_to_utc: int
    customers: int
    event_types: dict[str, int]
    value_column: str | None
    rows_with_value: int
    first_day: dt.date | None
    last_day: dt.date | None
    as_of: dt.date | None

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a printed report."""
        types = ", ".join(f"{name} {count:,}" for name, count in
                          list(self.event_types.items())[:_LISTED])
        unknown = ", ".join(f"{name} {count:,}" for name, count in
                            self.unknown_event_types.items())
        return [
            ("source", self.source),
            ("rows read", f"{self.rows_read:,}"),
            ("rows kept", f"{self.rows_kept:,}"),
            ("dropped: missing customer id", f"{self.dropped_missing_customer_id:,}"),
            ("dropped: missing event type", f"{self.dropped_missing_event_type:,}"),
            ("dropped: unknown event type",
             f"{self.dropped_unknown_event_type:,}" + (f" ({unknown})" if unknown else "")),
            ("dropped: after as-of date", f"{self.dropped_after_as_of:,}"),
            ("exact duplicate rows seen", f"{self.duplicate_rows:,}"),
            ("timestamps converted to UTC", f"{self.timestamps_converted_to_utc:,}"),
            ("customers", f"{self.customers:,}"),
            ("event types", types or "none"),
            ("value column", self.value_column or "none"),
            ("rows with a value", f"{self.rows_with_value:,}"),
            ("first day", str(self.first_day)),
            ("last day", str(self.last_day)),
            ("as-of date", str(self.as_of) if self.as_of else "none"),
        ]


class CleanEvents(NamedTuple):
    """The clean event table and the report of how it was cleaned.

    Attributes
    ----------
    events
        ``customer_id`` (the transactions' id rule), ``timestamp`` (naive, UTC offsets
        converted to UTC), ``event_type`` (text, surrounding spaces removed) and, with a
        value column, ``value`` (float64, missing allowed). In the input's order.
    report
        The :class:`EventsReport`.
    """

    events: pd.DataFrame
    report: EventsReport


def load_events(
    source: InputSource,
    *,
    id_col: str = CUSTOMER,
    time_col: str = TIMESTAMP,
    type_col: str = EVENT_TYPE,
    value_col: str | None = None,
    event_types: tuple[str, ...] | list[str] | None = None,
    as_of: str | dt.date | pd.Timestamp | None = None,
    time_format: str | None = None,
    delimiter: str | None = None,
) -> CleanEvents:
    """Read, validate and clean an event table (email opens, site visits, tickets...).

    Parameters
    ----------
    source
        A CSV path (``.csv``, ``.csv.gz``, ``.tsv``), a Parquet path or a DataFrame.
    id_col, time_col, type_col
        The customer id, timestamp and event type columns, renamed ``customer_id``,
        ``timestamp`` and ``event_type``. Ids and timestamps follow the transactions'
        rules exactly (an unparseable or missing timestamp is an error naming the file
        lines). Rows without an id or without a type are dropped and counted.
    value_col
        Optional numeric value per event (pages viewed, minutes...), renamed ``value``;
        empty cells are missing, text that is not a number is an error.
    event_types
        The event types expected. Rows of other types are dropped and counted (the
        report names them); a file whose types are all unknown is an error. ``None``
        keeps every type.
    as_of
        Drop (and count) events after this day (its whole day kept).
    time_format
        A ``strftime`` format for timestamps that are not ISO 8601.
    delimiter
        The field separator of a CSV file (default ``,``, a tab for ``.tsv``).

    Returns
    -------
    CleanEvents
        ``(events, report)``.

    Raises
    ------
    DataValidationError
        A missing or repeated column, an unreadable or empty file, unparseable
        timestamps or values, only unknown event types, or nothing left.

    Examples
    --------
    >>> raw = pd.DataFrame({"customer_id": ["007", "007", "8"],
    ...                     "timestamp": ["2024-01-10", "2024-02-01T10:00:00+02:00",
    ...                                   "2024-03-01"],
    ...                     "event_type": ["email_open", "site_visit", "email_open"]})
    >>> events, report = load_events(raw, as_of="2024-02-15")
    >>> events["event_type"].tolist(), report.dropped_after_as_of
    (['email_open', 'site_visit'], 1)
    """
    if time_format is not None:
        check_time_format(time_format)
    _check_delimiter(delimiter)
    expected = _expected_types(event_types)
    as_of_ts = parse_date(as_of, name="as_of") if as_of is not None else None
    if as_of_ts is not None:
        require_plausible_date(as_of_ts, name="as_of")
    roles = {CUSTOMER: id_col, TIMESTAMP: time_col, EVENT_TYPE: type_col}
    wanted = dict(roles)
    if value_col is not None:
        wanted[VALUE] = value_col
    _header_names(source, roles, delimiter, table="event table", hints=_EVENT_HINTS)
    frame, source_name, file_rows, rows_read, dropped_missing = _read_with_ids(
        source, wanted, roles, delimiter, id_col=id_col, table="event table")

    types = frame[EVENT_TYPE].astype("string").str.strip()
    has_type = types.notna() & (types != "")
    dropped_no_type = int((~has_type).sum())
    frame, types = frame.loc[has_type], types.loc[has_type]
    frame[EVENT_TYPE] = types
    if frame.empty:
        raise EmptyDataError(
            f"{source_name}: no row has an event type in column {type_col!r}. "
            "Suggestion: check the type column (type_col=)."
        )
    dropped_unknown, unknown_types = 0, {}
    if expected is not None:
        known = types.isin(expected)
        dropped_unknown = int((~known).sum())
        unknown_types = dict(Counter(types[~known].tolist()).most_common(_LISTED))
        if not known.any():
            raise DataValidationError(
                f"{source_name}: none of the {len(types):,} events has a known type in "
                f"column {type_col!r}: found {sorted(unknown_types)}, expected "
                f"{sorted(expected)}. Suggestion: check the type column, or list the "
                "types the file uses (event_types=)."
            )
        frame = frame.loc[known]

    frame[TIMESTAMP], converted = _parse_timestamps(
        frame[TIMESTAMP], source_name, time_col, file_rows, time_format)
    if VALUE in frame:
        frame[VALUE] = _parse_values(frame[VALUE], source_name, value_col or VALUE,
                                     file_rows)

    dropped_after = 0
    if as_of_ts is not None:
        keep = on_or_before(frame[TIMESTAMP], as_of_ts)
        dropped_after = int((~keep).sum())
        frame = frame.loc[keep]
        if frame.empty:
            raise EmptyDataError(
                f"{source_name}: no events on or before the as-of date {as_of_ts.date()} "
                f"({dropped_after:,} rows are after it). Suggestion: choose a later "
                "--as-of date."
            )

    frame = frame.reset_index(drop=True)
    counts = frame[EVENT_TYPE].value_counts(sort=False)
    ranked = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    report = EventsReport(
        source=source_name,
        rows_read=rows_read,
        rows_kept=len(frame),
        dropped_missing_customer_id=dropped_missing,
        dropped_missing_event_type=dropped_no_type,
        dropped_unknown_event_type=dropped_unknown,
        dropped_after_as_of=dropped_after,
        unknown_event_types=unknown_types,
        duplicate_rows=int(frame.duplicated().sum()),
        timestamps_converted_to_utc=converted,
        customers=int(frame[CUSTOMER].nunique()),
        event_types={str(name): int(count) for name, count in ranked},
        value_column=value_col,
        rows_with_value=int(frame[VALUE].notna().sum()) if VALUE in frame else 0,
        first_day=frame[TIMESTAMP].min().date(),
        last_day=frame[TIMESTAMP].max().date(),
        as_of=as_of_ts.date() if as_of_ts is not None else None,
    )
    return CleanEvents(frame, report)


def events_until(events: CleanEvents | pd.DataFrame,
                 cutoff: str | dt.date | pd.Timestamp) -> pd.DataFrame:
    """The clean events on or before ``cutoff``'s day: what a feature at the cutoff may see.

    The same rule as transactions' history (:func:`churnlens._loading.history_until`):
    the whole cutoff day is included, nothing after it.

    Parameters
    ----------
    events
        A :class:`CleanEvents` (or its ``events`` frame).
    cutoff
        The cutoff date: events on that day count, later ones never do.

    Returns
    -------
    pandas.DataFrame
        The events with a timestamp on or before the cutoff's day (the frame itself
        when none is later).

    Raises
    ------
    DataValidationError
        If the frame has no clean (naive datetime) ``timestamp`` column.
    """
    frame = events.events if isinstance(events, CleanEvents) else events
    if TIMESTAMP not in frame.columns or not pd.api.types.is_datetime64_dtype(frame[TIMESTAMP]):
        raise DataValidationError(
            f"the event table has no naive {TIMESTAMP!r} column. Suggestion: load it with "
            "churnlens.load_events first."
        )
    keep = on_or_before(frame[TIMESTAMP], parse_date(cutoff, name="cutoff"))
    return frame if keep.all() else frame.loc[keep]


def _expected_types(event_types: tuple[str, ...] | list[str] | None) -> frozenset[str] | None:
    if event_types is None:
        return None
    if isinstance(event_types, str) or not all(isinstance(t, str) and t.strip()
                                               for t in event_types) or not event_types:
        raise DataValidationError(
            f"event_types must be a non-empty list of type names, got {event_types!r}. "
            "Suggestion: for example event_types=['email_open', 'site_visit']."
        )
    return frozenset(t.strip() for t in event_types)


def _parse_values(values: pd.Series, source: str, column: str, file_rows: bool) -> pd.Series:
    """Event values as float64; empty cells missing, anything else not a number an error."""
    if pd.api.types.is_bool_dtype(values):
        raise DataValidationError(
            f"column {column!r} in {source} holds booleans (true/false), not values. "
            "Suggestion: check the value column (value_col=)."
        )
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
        present = numbers.notna()
    else:
        text = values.astype("string").str.strip()
        present = text.notna() & (text != "")
        numbers = pd.to_numeric(text.where(present), errors="coerce").astype("float64")
    bad = values[(present & ~np.isfinite(numbers.fillna(0.0))) | (present & numbers.isna())]
    if len(bad):
        raise DataValidationError(
            f"column {column!r} in {source} has {len(bad):,} values that are not finite "
            f"numbers: {format_bad_rows(bad, file_rows=file_rows)}. Suggestion: values must "
            "be plain numbers such as 3 or 12.5; leave the cell empty when an event has none."
        )
    return numbers


# --- reading --------------------------------------------------------------------------


def _read_with_ids(source: InputSource, wanted: dict[str, str], roles: dict[str, str],
                   delimiter: str | None, *, id_col: str, table: str
                   ) -> tuple[pd.DataFrame, str, bool, int, int]:
    """Read a table's columns (named by role) and keep the rows with a customer id.

    The ids are normalised by the transactions loader's own rule. Returns the frame,
    the source's name, whether row numbers are file lines, the rows read and the rows
    dropped for a missing id.
    """
    raw, source_name, file_rows = _read_source(source, wanted, roles, delimiter)
    rows_read = len(raw)
    if rows_read == 0:
        raise EmptyDataError(
            f"{source_name} has no data rows (only a header). Suggestion: check that the "
            f"{table} was exported."
        )
    frame = pd.DataFrame({role: raw[name] for role, name in wanted.items()})
    ids = _clean_customer_ids(frame[CUSTOMER], source_name, id_col, file_rows)
    has_id = ids.notna()
    dropped_missing = int((~has_id).sum())
    frame = frame.loc[has_id].copy()
    frame[CUSTOMER] = ids.loc[has_id]
    if frame.empty:
        raise EmptyDataError(
            f"{source_name}: all {rows_read:,} rows have no customer id in column "
            f"{id_col!r}. Suggestion: check the id column (id_col=)."
        )
    return frame, source_name, file_rows, rows_read, dropped_missing


def _check_delimiter(delimiter: str | None) -> None:
    if delimiter is not None and len(delimiter) != 1:
        raise DataValidationError(
            f"delimiter {delimiter!r} must be one character. Suggestion: for example "
            "--delimiter ';' or --delimiter tab."
        )


def _source_name(source: InputSource) -> str:
    return "the DataFrame" if isinstance(source, pd.DataFrame) else str(source)


def _header_names(source: InputSource, required: dict[str, str], delimiter: str | None,
                  *, table: str, hints: dict[str, str]) -> list[str]:
    """The column names of ``source`` (its header or Parquet schema only), checked.

    A path that does not exist, a folder, an empty or unreadable file fail with the
    transactions loader's messages; a header split by another separator names it; a
    missing ``required`` column names the columns found and the option that maps it
    (``hints``: role -> "--flag (CLI) or kwarg= (Python)"); a repeated name is refused.
    """
    if isinstance(source, pd.DataFrame):
        names, where = [str(c) for c in source.columns], "the DataFrame"
    elif not isinstance(source, str | os.PathLike):
        raise DataValidationError(
            f"the {table} must be a file path or a pandas DataFrame, got "
            f"{type(source).__name__}. Suggestion: pass a CSV/Parquet path or a DataFrame."
        )
    else:
        path = Path(source)
        where = str(path)
        if not path.exists() or path.is_dir():
            _read_source(source, required, required, delimiter)  # raises its message
        if file_kind(path) == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                names = list(pq.read_schema(path).names)
            except (pa.ArrowException, OSError) as exc:
                raise DataValidationError(
                    f"{path}: cannot read as Parquet ({exc}). Suggestion: check that the "
                    "file is a complete Parquet file."
                ) from exc
        else:
            sep = delimiter or ("\t" if ".tsv" in path.suffixes else ",")
            line = _read_header_line(path)
            names = next(csv.reader(io.StringIO(line), delimiter=sep))
            _require_delimiter(names, line, sep, required, path)
    missing = {role: name for role, name in required.items() if name not in names}
    if missing:
        listed = ", ".join(repr(name) for name in missing.values())
        how = "; ".join(f"name the {role} column with {hints[role]}" for role in missing)
        raise MissingColumnError(
            f"the {table} {where} has no column {listed}; columns found: {names}. "
            f"Suggestion: {how}."
        )
    require_unique_columns(names, names, source=where)
    return names
