"""Load and validate transactions: the data contract of churnlens.

Everything downstream (features, retention, training, scoring, the API) reads
transactions through :func:`load_transactions`, so the rules live here and only here.
A frame already in memory is checked with :func:`is_clean` and, when it does not meet
the contract yet, loaded by :func:`ensure_clean`: later stages call that and never
check transactions (ids, dates, time zones, amounts) themselves.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime as dt
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnlens._engine import AMOUNT_UNITS, MAX_ABS_AMOUNT
from churnlens._io import GZIP, UTF16, ZIP, file_signature, json_ready
from churnlens._validation import (
    PLAUSIBLE_DATES,
    format_bad_rows,
    implausible_dates,
    parse_date,
    require_columns,
    require_no_missing,
    require_plausible_date,
    require_recent_data,
    require_unique_columns,
)
from churnlens.exceptions import DataValidationError, EmptyDataError

__all__ = [
    "MISSING_ID_TEXT",
    "OPTIONAL_COLUMNS",
    "CleaningReport",
    "LoadResult",
    "RowsReport",
    "TransactionSource",
    "ensure_clean",
    "history_until",
    "is_clean",
    "load_transactions",
    "on_or_before",
]

# Standard column names every later stage uses.
CUSTOMER = "customer_id"
TIMESTAMP = "timestamp"
AMOUNT = "amount"
ORDER = "order_id"
QUANTITY = "quantity"
CATEGORY = "category"
CHANNEL = "channel"
DISCOUNT = "discount"
#: The optional columns of the transactions, by their clean names, in this order.
OPTIONAL_COLUMNS = (ORDER, QUANTITY, CATEGORY, CHANNEL, DISCOUNT)
#: The spaces stripped from category and channel text (the SQL rules strip the same).
TEXT_SPACES = " \t\n\r\v\f"

TransactionSource: TypeAlias = str | os.PathLike[str] | pd.DataFrame

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv", ".tsv.gz", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
# A UTC offset ends a value only after a time of day ("2024-01-31" ends in "-31",
# which is a day, not an offset).
_OFFSET_PATTERN = r"[T ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)\s*$"
# How a missing id reads once it has been through text: pandas' str(nan), SQL NULL,
# R's NA, Excel's #N/A. Such ids are missing (dropped and counted), not a customer.
MISSING_ID_TEXT = ("", "nan", "none", "null", "<na>", "na", "n/a", "#n/a", "nat")


class RowsReport:
    """What every cleaning report shares (transactions, customer and event tables): rows
    read and kept, the rows dropped, and the JSON form. Its subclasses are dataclasses."""

    rows_read: int
    rows_kept: int

    @property
    def rows_dropped(self) -> int:
        """All rows dropped, whatever the reason."""
        return self.rows_read - self.rows_kept

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (dates as ISO strings)."""
        out = json_ready(dataclasses.asdict(self))  # type: ignore[call-overload]
        out["rows_dropped"] = self.rows_dropped
        return out


@dataclasses.dataclass(frozen=True)
class CleaningReport(RowsReport):
    """What loading read, kept, dropped and fixed, and why.

    Attributes
    ----------
    source
        The file path, or ``"DataFrame"``.
    rows_read
        Data rows in the input (header excluded).
    rows_kept
        Rows in the returned transactions.
    dropped_missing_customer_id, dropped_after_as_of, dropped_duplicates
        Rows dropped, by reason (duplicates only when ``deduplicate=True``).
    duplicate_rows
        Rows that repeat an earlier row exactly (kept unless ``deduplicate=True``:
        two identical items bought together are two rows).
    refund_rows, refund_total
        Rows with a negative amount (kept: they reduce monetary totals but never
        create a purchase occasion), and the sum of their absolute amounts.
    zero_amount_rows
        Rows with amount 0 (kept; a day whose net amount is <= 0 is no occasion).
    timestamps_converted_to_utc
        Timestamps that carried a UTC offset and were converted to UTC.
    customers
        Distinct customer ids kept.
    first_day, last_day
        Date range of the kept rows.
    as_of
        The as-of date applied, if any.
    """

    source: str
    rows_read: int
    rows_kept: int
    dropped_missing_customer_id: int
    dropped_after_as_of: int
    dropped_duplicates: int
    duplicate_rows: int
    refund_rows: int
    refund_total: float
    zero_amount_rows: int
    timestamps_converted_to_utc: int
    customers: int
    first_day: dt.date | None
    last_day: dt.date | None
    as_of: dt.date | None

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a printed report."""
        return [
            ("source", self.source),
            ("rows read", f"{self.rows_read:,}"),
            ("rows kept", f"{self.rows_kept:,}"),
            ("dropped: missing customer id", f"{self.dropped_missing_customer_id:,}"),
            ("dropped: after as-of date", f"{self.dropped_after_as_of:,}"),
            ("dropped: exact duplicates", f"{self.dropped_duplicates:,}"),
            ("exact duplicate rows seen", f"{self.duplicate_rows:,}"),
            ("refund rows (negative amount)", f"{self.refund_rows:,}"),
            ("refund total", f"{self.refund_total:,.2f}"),
            ("zero-amount rows", f"{self.zero_amount_rows:,}"),
            ("timestamps converted to UTC", f"{self.timestamps_converted_to_utc:,}"),
            ("customers", f"{self.customers:,}"),
            ("first day", str(self.first_day)),
            ("last day", str(self.last_day)),
            ("as-of date", str(self.as_of) if self.as_of else "none"),
        ]


class LoadResult(NamedTuple):
    """Clean transactions and the report of how they were cleaned.

    Attributes
    ----------
    transactions
        ``customer_id``, ``timestamp`` (naive, offsets converted to UTC), ``amount`` and
        any optional columns asked for.
    report
        The :class:`CleaningReport`: rows read, kept, dropped by reason, refunds...
    """

    transactions: pd.DataFrame
    report: CleaningReport


def load_transactions(
    source: TransactionSource,
    *,
    customer_col: str = CUSTOMER,
    time_col: str = TIMESTAMP,
    amount_col: str = AMOUNT,
    order_col: str | None = None,
    quantity_col: str | None = None,
    category_col: str | None = None,
    channel_col: str | None = None,
    discount_col: str | None = None,
    extra_cols: tuple[str, ...] | list[str] = (),
    as_of: str | dt.date | pd.Timestamp | None = None,
    time_format: str | None = None,
    deduplicate: bool = False,
    delimiter: str | None = None,
    max_staleness_days: int | None = None,
) -> LoadResult:
    """Read, validate and clean purchase transactions.

    Parameters
    ----------
    source
        A CSV path (``.csv``, ``.csv.gz``, ``.tsv``), a Parquet path or a pandas
        DataFrame.
    customer_col, time_col, amount_col
        Names of the required columns in ``source``; they are renamed to
        ``customer_id``, ``timestamp`` and ``amount``. Rows whose customer id is
        missing (empty, blank, or text a missing value turns into: ``nan``, ``NULL``,
        ``None``, ``NA``, ``#N/A``...) are dropped and counted.
    order_col, quantity_col
        Optional order id and quantity columns, kept as ``order_id`` (as given) and
        ``quantity`` (a number per row, the rules of amounts).
    category_col, channel_col
        Optional product category and sales channel columns, kept as ``category`` and
        ``channel``: text, surrounding spaces stripped; an empty value is missing (NA).
    discount_col
        Optional discount column, kept as ``discount``: the amount taken off the row's
        price, a number ``>= 0`` (float); an empty or blank cell is no discount (0). A negative
        value or one that is not a number is an error naming the rows.
    extra_cols
        Other columns to keep unchanged (for example a segment such as ``country``).
    as_of
        Drop (and count) rows whose day is after this date. The whole as-of day is
        kept. ``None`` keeps everything.
    time_format
        A ``strftime`` format for timestamps that are not ISO 8601.
    deduplicate
        Drop rows that repeat an earlier row exactly (they are always counted).
    delimiter
        The field separator of a CSV file (default: ``,``, a tab for ``.tsv``). A file
        whose header splits on another separator is refused with a message naming it.
    max_staleness_days
        With ``as_of``: refuse an as-of date more than this many days after the data's
        last day (:func:`churnlens._validation.require_recent_data`: the feed may have
        stopped). ``None`` (the default here) checks nothing; the CLI, training and
        scoring pass ``Settings.data.max_staleness_days`` (7 days by default).

    Returns
    -------
    LoadResult
        ``(transactions, report)``. ``transactions`` has the columns
        ``customer_id`` (as given: strings stay strings, integers stay integers;
        whole-number floats and text such as ``"12.0"`` read as 12, so an id is the
        same customer in every file format),
        ``timestamp`` (timezone-naive; values with a UTC offset converted to UTC),
        ``amount`` (float; negative amounts are refunds) and any optional columns.

    Raises
    ------
    DataValidationError
        A missing column, an unreadable file, an unparseable timestamp or amount,
        no rows, or data that end too long before ``as_of``. The message names the
        source, the column and the first rows.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"customer_id": ["007", "007", None],
    ...                     "timestamp": ["2024-01-10", "2024-02-01T10:00:00+02:00", "2024-02-03"],
    ...                     "amount": [30.0, -5.0, 12.0]})
    >>> tx, report = load_transactions(raw)
    >>> tx["customer_id"].tolist(), report.dropped_missing_customer_id, report.refund_rows
    (['007', '007'], 1, 1)
    """
    columns = {CUSTOMER: customer_col, TIMESTAMP: time_col, AMOUNT: amount_col}
    optional = optional_roles(order_col=order_col, quantity_col=quantity_col,
                              category_col=category_col, channel_col=channel_col,
                              discount_col=discount_col)
    extras = {name: name for name in extra_cols}
    wanted = {**columns, **optional, **extras}
    as_of_ts = parse_date(as_of, name="as_of") if as_of is not None else None
    if as_of_ts is not None:
        require_plausible_date(as_of_ts, name="as_of")
    if time_format is not None:
        check_time_format(time_format)
    if delimiter is not None and len(delimiter) != 1:
        raise DataValidationError(
            f"delimiter {delimiter!r} must be one character. Suggestion: for example "
            "--delimiter ';' or --delimiter tab."
        )

    raw, source_name, file_rows = _read_source(source, wanted, columns, delimiter)
    rows_read = len(raw)
    if rows_read == 0:
        raise EmptyDataError(
            f"{source_name} has no data rows (only a header). "
            "Suggestion: check that the right file was exported."
        )
    frame = pd.DataFrame({role: raw[name] for role, name in wanted.items()})

    # 1. customer ids: drop missing ones (counted), keep the rest exactly as given
    ids = _clean_customer_ids(frame[CUSTOMER], source_name, customer_col, file_rows)
    has_id = ids.notna()
    dropped_missing = int((~has_id).sum())
    if dropped_missing:  # (a selection copies every column: skip it when nothing goes)
        frame, ids = frame.loc[has_id], ids.loc[has_id]
    frame[CUSTOMER] = ids
    if frame.empty:
        raise EmptyDataError(
            f"{source_name}: all {rows_read:,} rows have no customer id in column "
            f"{customer_col!r}. Suggestion: check --customer-col."
        )

    # 2. timestamps and amounts: any bad value is an error naming the rows
    frame[TIMESTAMP], converted = _parse_timestamps(
        frame[TIMESTAMP], source_name, time_col, file_rows, time_format
    )
    frame[AMOUNT] = _parse_amounts(frame[AMOUNT], source_name, amount_col, file_rows)
    if QUANTITY in frame:
        frame[QUANTITY] = _parse_amounts(
            frame[QUANTITY], source_name, quantity_col or "", file_rows
        )
    for role, column in ((CATEGORY, category_col), (CHANNEL, channel_col)):
        if role in frame:
            frame[role] = clean_text(frame[role], source_name, column or "", file_rows)
    if DISCOUNT in frame:
        frame[DISCOUNT] = parse_discounts(frame[DISCOUNT], source_name, discount_col or "",
                                          file_rows)

    # 3. as-of: history includes the whole as-of day; data that end long before it
    #    are refused when asked (a stopped feed)
    dropped_after = 0
    if as_of_ts is not None and max_staleness_days is not None:
        require_recent_data(as_of_ts.date(), frame[TIMESTAMP].max().date(),
                            max_staleness_days=max_staleness_days, source=source_name)
    if as_of_ts is not None:
        keep = on_or_before(frame[TIMESTAMP], as_of_ts)
        dropped_after = int((~keep).sum())
        if dropped_after:
            frame = frame.loc[keep]
        if frame.empty:
            raise EmptyDataError(
                f"{source_name}: no transactions on or before the as-of date "
                f"{as_of_ts.date()} ({dropped_after:,} rows are after it). "
                "Suggestion: choose a later --as-of date."
            )

    # 4. duplicates: counted always, dropped only on request. Dropping a repeat never
    #    removes a customer, so the customers counted here are the customers kept.
    customer_codes, customer_ids = pd.factorize(frame[CUSTOMER])
    hashes = _row_hashes(frame, customer_codes)
    duplicate_rows = _count_repeats(hashes)
    dropped_duplicates = 0
    if deduplicate and duplicate_rows:
        frame = frame.loc[~pd.Series(hashes, index=frame.index).duplicated()]
        dropped_duplicates = duplicate_rows

    frame = frame.reset_index(drop=True)
    amounts = frame[AMOUNT].to_numpy()
    days = frame[TIMESTAMP]
    report = CleaningReport(
        source=source_name,
        rows_read=rows_read,
        rows_kept=len(frame),
        dropped_missing_customer_id=dropped_missing,
        dropped_after_as_of=dropped_after,
        dropped_duplicates=dropped_duplicates,
        duplicate_rows=duplicate_rows,
        refund_rows=int((amounts < 0).sum()),
        refund_total=exact_total(-amounts[amounts < 0]),  # never -0.0
        zero_amount_rows=int((amounts == 0).sum()),
        timestamps_converted_to_utc=converted,
        customers=len(customer_ids),
        first_day=days.min().date(),
        last_day=days.max().date(),
        as_of=as_of_ts.date() if as_of_ts is not None else None,
    )
    return LoadResult(frame, report)


def optional_roles(*, order_col: str | None = None, quantity_col: str | None = None,
                   category_col: str | None = None, channel_col: str | None = None,
                   discount_col: str | None = None) -> dict[str, str]:
    """The optional columns asked for, ``{clean name: column in the source}``, in order."""
    given = dict(zip(OPTIONAL_COLUMNS,
                     (order_col, quantity_col, category_col, channel_col, discount_col),
                     strict=True))
    return {role: name for role, name in given.items() if name}


# --- reading ---------------------------------------------------------------------


def on_or_before(timestamps: pd.Series, as_of: dt.date | pd.Timestamp) -> pd.Series:
    """Mask of the ``timestamps`` on or before ``as_of``: its whole day included."""
    return timestamps < pd.Timestamp(as_of) + pd.Timedelta(days=1)


def history_until(transactions: pd.DataFrame, as_of: dt.date | pd.Timestamp) -> pd.DataFrame:
    """The clean ``transactions`` on or before ``as_of`` (the frame itself if all are)."""
    keep = on_or_before(transactions[TIMESTAMP], as_of)
    return transactions if keep.all() else transactions.loc[keep]


# --- the contract for frames already in memory ------------------------------------


def is_clean(frame: pd.DataFrame, *, optional: Sequence[str] = ()) -> bool:
    """Whether ``frame`` already meets the contract that :func:`load_transactions` establishes.

    The columns ``customer_id``, ``timestamp`` and ``amount`` are present; timestamps
    are timezone-naive datetimes (values with an offset are converted to UTC by the
    loader, so a time zone means "not loaded yet"), none missing; amounts are floats,
    finite and within the engine's range; customer ids are integers or text, none
    missing, blank or reading as missing (``"NA"``, ``"null"``...). The optional columns
    named in ``optional`` (clean names, :data:`OPTIONAL_COLUMNS`) that the frame has meet
    their rules too (:func:`load_transactions`): ``quantity`` and ``discount`` floats,
    finite (a discount ``>= 0``), ``category`` and ``channel`` text without surrounding
    spaces (missing as NA, never empty). Other columns, whatever their names, are not
    looked at.

    Examples
    --------
    >>> raw = pd.DataFrame({"customer_id": ["a"], "timestamp": ["2024-01-10"],
    ...                     "amount": [3.0]})
    >>> is_clean(raw), is_clean(load_transactions(raw).transactions)
    (False, True)
    """
    if not all(column in frame.columns for column in (CUSTOMER, TIMESTAMP, AMOUNT)):
        return False
    stamps, amounts, ids = frame[TIMESTAMP], frame[AMOUNT], frame[CUSTOMER]
    if not (
        pd.api.types.is_datetime64_dtype(stamps)  # naive (tz-aware is not this dtype)
        and pd.api.types.is_float_dtype(amounts)
        and not stamps.isna().any()
        and amounts_in_range(amounts.to_numpy(dtype="float64", na_value=np.nan)).all()
        and not ids.isna().any()
    ):
        return False
    if optional and not _optional_clean(frame, optional):
        return False
    if pd.api.types.is_integer_dtype(ids) and not pd.api.types.is_bool_dtype(ids):
        return True
    if pd.api.types.infer_dtype(ids, skipna=False) != "string":
        return False  # categories, floats, mixed objects: the loader decides what they are
    return not _missing_id_text(ids).any()


def _optional_clean(frame: pd.DataFrame, optional: Sequence[str]) -> bool:
    """Whether the ``optional`` columns ``frame`` has (by clean name) meet their rules."""
    for role in (QUANTITY, DISCOUNT):
        if role in optional and role in frame.columns:
            values = frame[role]
            if not pd.api.types.is_float_dtype(values):
                return False
            numbers = values.to_numpy(dtype="float64", na_value=np.nan)
            if not amounts_in_range(numbers).all() or (role == DISCOUNT and (numbers < 0).any()):
                return False
    for role in (CATEGORY, CHANNEL):
        if role in optional and role in frame.columns:
            values = frame[role]
            if not isinstance(values.dtype, pd.StringDtype):
                return False
            text = _arrow_text(values)
            if not pc.all(pc.equal(pc.utf8_trim(text, TEXT_SPACES), text)).as_py() or (
                    pc.any(pc.equal(text, "")).as_py()):
                return False
    return True


def ensure_clean(transactions: pd.DataFrame, *, extra_cols: Sequence[str] = (),
                 optional: Sequence[str] = ()) -> pd.DataFrame:
    """``transactions`` as :func:`load_transactions` leaves them.

    A frame that already meets the contract (:func:`is_clean`) is returned as it is,
    with all its columns; any other frame goes through :func:`load_transactions`
    (keeping ``extra_cols``, and the ``optional`` columns it has, read by their rules),
    with its rules and its errors. Features, retention and scoring call this instead of
    checking transactions themselves.

    Parameters
    ----------
    transactions
        Clean or raw transactions with the standard column names.
    extra_cols
        Other columns the caller reads (for example a segment column).
    optional
        Optional columns (clean names among :data:`OPTIONAL_COLUMNS`: ``order_id``,
        ``quantity``, ``category``, ``channel``, ``discount``) the caller reads: those the
        frame has must meet their rules. By default none is looked at: a column with such
        a name is an ordinary extra column (kept only on a clean frame, as any other).

    Returns
    -------
    pandas.DataFrame
        Clean transactions.

    Raises
    ------
    DataValidationError
        Not a DataFrame, or raw rows that break the contract (see
        :func:`load_transactions`).
    """
    if not isinstance(transactions, pd.DataFrame):
        raise DataValidationError(
            f"transactions must be a pandas DataFrame, got {type(transactions).__name__}. "
            "Suggestion: read files with churnlens.load_transactions first."
        )
    if is_clean(transactions, optional=optional) and all(
            c in transactions.columns for c in extra_cols):
        return transactions
    present = [role for role in OPTIONAL_COLUMNS
               if role in optional and role in transactions.columns]
    order, quantity, category, channel, discount = (
        role if role in present else None for role in OPTIONAL_COLUMNS)
    return load_transactions(
        transactions, order_col=order, quantity_col=quantity, category_col=category,
        channel_col=channel, discount_col=discount,
        extra_cols=tuple(c for c in extra_cols if c not in present)).transactions


def _read_source(
    source: TransactionSource, wanted: dict[str, str], required: dict[str, str],
    delimiter: str | None = None,
) -> tuple[pd.DataFrame, str, bool]:
    """Return (raw frame with the wanted columns, source name, rows-are-file-lines)."""
    if isinstance(source, pd.DataFrame):
        require_columns(list(source.columns), required, source="the DataFrame")
        _require_optional(list(source.columns), wanted, "the DataFrame")
        require_unique_columns(list(source.columns), wanted.values(), source="the DataFrame")
        # Messages name rows by the caller's own index labels (what df.loc takes);
        # only an index with repeated labels is replaced by positions.
        frame = source if source.index.is_unique else source.reset_index(drop=True)
        return frame, "DataFrame", False
    if not isinstance(source, str | os.PathLike):
        raise DataValidationError(
            f"transactions must be a file path or a pandas DataFrame, got "
            f"{type(source).__name__}. Suggestion: pass a CSV/Parquet path or a DataFrame."
        )
    path = Path(source)
    name = str(path)
    if not path.exists():
        raise DataValidationError(
            f"{name}: no such file. Suggestion: check the path (relative paths start "
            f"from {Path.cwd()})."
        )
    if path.is_dir():
        raise DataValidationError(
            f"{name} is a directory; churnlens reads one CSV or Parquet file. "
            "Suggestion: name the file inside it."
        )
    if file_kind(path) == "parquet":
        return _read_parquet(path, wanted, required), name, True
    return _read_csv(path, wanted, required, delimiter), name, True


def file_kind(path: Path) -> str:
    """``"parquet"`` or ``"csv"``: how the loader reads this existing file (the one rule).

    Raises
    ------
    EmptyDataError
        The file has 0 bytes.
    DataValidationError
        A file type the loader does not read.
    """
    name = str(path)
    if path.stat().st_size == 0:
        raise EmptyDataError(f"{name} is empty (0 bytes). Suggestion: check the export.")
    suffix = "".join(path.suffixes[-2:]).lower() if len(path.suffixes) > 1 else path.suffix.lower()
    if path.suffix.lower() in _PARQUET_SUFFIXES or _is_parquet(path):
        return "parquet"
    if suffix in _CSV_SUFFIXES or path.suffix.lower() in _CSV_SUFFIXES:
        return "csv"
    raise DataValidationError(
        f"{name}: unsupported file type {path.suffix or '(no extension)'!r}. "
        "Suggestion: use a .csv, .csv.gz, .tsv or .parquet file."
    )


def _is_parquet(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError as exc:  # no permission, a special file...
        raise DataValidationError(
            f"{path}: cannot open ({exc.strerror or exc}). Suggestion: check that the file "
            "is readable."
        ) from exc


def _require_optional(found: list[str], wanted: dict[str, str], source: str) -> None:
    missing = [name for name in wanted.values() if name not in found]
    if missing:
        require_columns(found, {name: name for name in missing}, source=source)


def _read_parquet(path: Path, wanted: dict[str, str], required: dict[str, str]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        check_parquet_columns(path, wanted, required)
        table = pq.read_table(path, columns=list(dict.fromkeys(wanted.values())))
    except (pa.ArrowException, OSError) as exc:
        raise DataValidationError(
            f"{path}: cannot read as Parquet ({exc}). Suggestion: check that the file "
            "is a complete Parquet file."
        ) from exc
    return arrow_frame(table)


def check_parquet_columns(path: Path, wanted: dict[str, str], required: dict[str, str]) -> None:
    """Refuse a Parquet file without the ``required`` and ``wanted`` columns, or with repeats.

    Reads the schema only (the file's footer). Arrow and OS errors are left to the caller.
    """
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    require_columns(schema.names, required, source=str(path))
    _require_optional(schema.names, wanted, str(path))
    require_unique_columns(schema.names, wanted.values(), source=str(path))
    _require_flat_columns(schema, wanted, path)


# The options that name each column of the contract, for messages.
_COLUMN_FLAGS = {CUSTOMER: "--customer-col", TIMESTAMP: "--time-col", AMOUNT: "--amount-col"}


def _require_flat_columns(schema: pa.Schema, wanted: dict[str, str], path: Path) -> None:
    """Refuse a wanted column of nested values (struct, list, map): one value per row is
    the contract, and a nested id would otherwise become its text (or fail to convert)."""
    for role, name in wanted.items():
        kind = schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_nested(kind):
            flag = _COLUMN_FLAGS.get(role)
            other = f", or map another column with {flag}" if flag else ""
            raise DataValidationError(
                f"column {name!r} in {path} holds nested values ({kind}), not one plain "
                f"value per row. Suggestion: write the field you mean as its own column "
                f"(one value per row){other}."
            )


def arrow_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as the pandas frame the rules read (the loader's one conversion)."""
    frame = table.to_pandas()
    for position, field in enumerate(table.schema):
        # Integer columns with nulls would become float64 and lose ids above 2**53:
        # read those as pandas' nullable integers instead.
        if pa.types.is_integer(field.type) and table.column(position).null_count:
            frame.isetitem(position, table.column(position).to_pandas(
                types_mapper=_NULLABLE_INTEGERS.get))
    return frame


_NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
}


def _read_csv(path: Path, wanted: dict[str, str], required: dict[str, str],
              delimiter: str | None = None) -> pd.DataFrame:
    import pyarrow.csv as pacsv

    delimiter = check_csv_header(path, wanted, required, delimiter)
    names = list(dict.fromkeys(wanted.values()))
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                include_columns=names,
                # Everything is read as text and converted by the rules below, so that
                # ids keep their leading zeros and bad values are reported, not guessed.
                column_types={n: pa.string() for n in names},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except pa.ArrowInvalid as exc:
        if "utf8" in str(exc).lower() or "utf-8" in str(exc).lower():
            raise _not_utf8(path, exc) from None
        raise DataValidationError(
            f"{path}: cannot read as CSV ({_one_line(exc)}). Suggestion: save it as UTF-8 "
            "CSV with one header line and the same number of fields on every line."
        ) from None
    except (pa.ArrowException, OSError, EOFError) as exc:
        # truncated or corrupt compressed files ("Truncated compressed stream"...)
        raise DataValidationError(
            f"{path}: cannot read ({_one_line(exc)}); the file is incomplete or not "
            "what its name says. Suggestion: download or export it again (a .gz file "
            "must be a complete gzip file)."
        ) from None
    return table.to_pandas()


def check_csv_header(path: Path, wanted: dict[str, str], required: dict[str, str],
                     delimiter: str | None = None) -> str:
    """Check a CSV file's header line (separator, columns, repeats); return the separator."""
    if delimiter is None:
        delimiter = "\t" if ".tsv" in path.suffixes else ","
    line = _read_header_line(path)
    header = next(csv.reader(io.StringIO(line), delimiter=delimiter))
    _require_delimiter(header, line, delimiter, required, path)
    require_columns(header, required, source=str(path))
    _require_optional(header, wanted, str(path))
    require_unique_columns(header, wanted.values(), source=str(path))
    return delimiter


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _not_utf8(path: Path, exc: BaseException) -> DataValidationError:
    return DataValidationError(
        f"{path}: is not UTF-8 text ({_one_line(exc)}). Suggestion: export it as UTF-8 "
        "CSV (in Excel: Save As > CSV UTF-8), or convert it, for example with "
        "iconv -f latin1 -t utf-8."
    )


# Separators a CSV export may use instead of the expected one.
_OTHER_DELIMITERS = (",", ";", "\t", "|")


def _require_delimiter(header: list[str], line: str, delimiter: str,
                       required: dict[str, str], path: Path) -> None:
    """Refuse a header that the expected separator leaves whole but another one splits."""
    if all(name in header for name in required.values()):
        return
    for other in _OTHER_DELIMITERS:
        if other == delimiter:
            continue
        fields = next(csv.reader(io.StringIO(line), delimiter=other))
        if len(fields) > len(header) and all(name in fields for name in required.values()):
            shown = "tab" if other == "\t" else other
            raise DataValidationError(
                f"{path}: the header is separated by {shown!r}, not {delimiter!r} "
                f"(columns with {shown!r}: {fields}). Suggestion: pass --delimiter "
                f"{shown!r} (or data.delimiter in the config; delimiter= in Python)."
            )


# What a file that is not UTF-8 text turned out to be (_io.file_signature), as the loader
# names it, and what to do.
_NOT_CSV = {
    GZIP: (GZIP, "name it .csv.gz (it is then read as it is), or decompress it with gunzip"),
    ZIP: (f"{ZIP} (an Excel .xlsx workbook?)",
          "export the sheet as UTF-8 CSV (in Excel: Save As > CSV UTF-8), or unzip it"),
    UTF16: (UTF16, "convert it to UTF-8, for example with iconv -f utf-16 -t utf-8"),
}


def _known_binary(path: Path, first: bytes) -> DataValidationError | None:
    """The error for a file that is not UTF-8 text but a known kind of file, from its
    first bytes (``None``: unknown)."""
    signature = file_signature(first)
    if signature is None:
        return None
    kind, suggestion = _NOT_CSV[signature]
    return DataValidationError(f"{path}: is {kind}, not UTF-8 CSV text. Suggestion: {suggestion}.")


def _read_header_line(path: Path) -> str:
    import pyarrow as _pa  # compressed files are opened through pyarrow's codecs

    try:
        with _pa.input_stream(str(path), compression="detect") as raw:
            first = raw.read(1 << 16)
        # The chunk may end inside a multi-byte character: decode it as a stream
        # that continues, unless the chunk is the whole file.
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        text = decoder.decode(first, final=len(first) < 1 << 16)
    except UnicodeDecodeError as exc:
        known = _known_binary(path, first)
        if known is not None:
            raise known from exc
        raise DataValidationError(
            f"{path}: is not UTF-8 text (is it a spreadsheet or a binary file?). "
            "Suggestion: export it as UTF-8 CSV."
        ) from exc
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise DataValidationError(
            f"{path}: cannot open ({_one_line(exc)}). Suggestion: check that the file is "
            "complete (download or export it again) and what its name says (a .gz file "
            "must be gzip-compressed)."
        ) from exc
    if "\x00" in text:
        raise DataValidationError(
            f"{path}: contains binary data, not CSV text. Suggestion: export it as UTF-8 CSV."
        )
    line = text.splitlines()[0] if text.strip() else ""
    if not line.strip():
        raise EmptyDataError(
            f"{path}: the first line is empty; a header line is required. Suggestion: "
            "remove the blank lines before the header."
        )
    return line


# --- column rules ----------------------------------------------------------------


def _clean_customer_ids(ids: pd.Series, source: str, column: str, file_rows: bool) -> pd.Series:
    """Return ids as given, with missing ones as NA. Integers stay integers."""
    if pd.api.types.is_bool_dtype(ids):
        raise DataValidationError(
            f"column {column!r} in {source} holds booleans, not customer ids. "
            "Suggestion: check --customer-col."
        )
    if isinstance(ids.dtype, pd.CategoricalDtype):
        ids = ids.astype(ids.cat.categories.dtype)
    if pd.api.types.is_integer_dtype(ids):
        return ids  # plain int64 has no missing values; nullable Int64 keeps NA
    if pd.api.types.is_float_dtype(ids):
        # A float column of ids is usually an integer column that pandas widened
        # because of missing values: turn it back into integers.
        present = ids.dropna()
        fractional = present[present != np.floor(present)]
        if len(fractional) or not np.isfinite(present).all():
            raise DataValidationError(
                f"column {column!r} in {source} holds non-integer numbers, which are not "
                f"ids: {format_bad_rows(fractional, file_rows=file_rows)}. "
                "Suggestion: store customer ids as text or integers."
            )
        return ids.astype("Int64")
    kind = pd.api.types.infer_dtype(ids, skipna=True)
    if kind == "integer":
        # Python ints in an object column (None for missing): still integers.
        try:
            return ids.astype("Int64")
        except (OverflowError, TypeError, ValueError):
            pass  # beyond int64: compared as text below
    if kind in ("floating", "mixed-integer-float"):
        return _clean_customer_ids(ids.astype("float64"), source, column, file_rows)
    if kind not in ("string", "empty"):
        # Mixed Python objects (ints and strings...): compare them as text.
        ids = ids.map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v))
                      else str(v))
    ids = ids.astype(object).where(ids.notna(), None) if kind == "mixed" else ids
    blank = _missing_id_text(ids)
    if blank.any():
        ids = ids.mask(pd.Series(blank, index=ids.index))
    return _drop_zero_fractions(ids)


# A whole number written with a zero fraction, without leading zeros: "12.0", "-3.00".
_ZERO_FRACTION = r"^-?(?:0|[1-9][0-9]*)\.0+$"


def _drop_zero_fractions(ids: pd.Series) -> pd.Series:
    """Text ids such as ``"12.0"`` become ``"12"``: the id rule across file formats.

    An integer id column with gaps is widened to floats by pandas, so one export
    writes ``12.0`` to CSV while another keeps ``12`` (or the float ``12.0``, which the
    loader turns back into the integer ``12``). The text of an id is what identifies
    a customer in every format: ``12``, ``12.0`` and ``"12.0"`` all read as ``12``.
    Text that is not a whole number with a zero fraction is kept exactly (``"007"``,
    ``"007.0"``, ``"1.5"``, ``"A1"``).
    """
    text = _arrow_text(ids)
    has_dot = pc.fill_null(pc.match_substring(text, "."), False)
    if not pc.any(has_dot).as_py():  # the common case: one fast scan, no regex
        return ids
    whole = pc.fill_null(pc.match_substring_regex(text, _ZERO_FRACTION), False)
    if not pc.any(whole).as_py():
        return ids
    mask = np.asarray(whole.to_numpy(zero_copy_only=False), dtype=bool)
    trimmed = ids.astype(object).copy()
    trimmed[mask] = [value.split(".", 1)[0] for value in trimmed[mask]]
    return trimmed.astype(ids.dtype) if ids.dtype != object else trimmed


def _missing_id_text(ids: pd.Series) -> np.ndarray:
    """Which text ids are blank or the text a missing value turns into ("nan", "NULL"...)."""
    text = _arrow_text(ids)
    # Only short ids or ids with surrounding spaces can be one of those words: look at
    # those alone (ids of real data are rarely either, so this is fast).
    longest = max(len(word) for word in MISSING_ID_TEXT)
    maybe = pc.or_(pc.less_equal(pc.utf8_length(text), longest),
                   pc.or_(pc.utf8_is_space(pc.utf8_slice_codeunits(text, 0, 1)),
                          pc.utf8_is_space(pc.utf8_slice_codeunits(text, -1))))
    maybe = np.asarray(pc.fill_null(maybe, False).to_numpy(zero_copy_only=False), dtype=bool)
    missing = np.zeros(len(ids), dtype=bool)
    if maybe.any():
        words = pc.utf8_lower(pc.utf8_trim_whitespace(pc.filter(text, pa.array(maybe))))
        found = pc.fill_null(pc.is_in(words, value_set=pa.array(MISSING_ID_TEXT)), False)
        missing[maybe] = np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
    return missing


def _arrow_text(values: pd.Series) -> pa.ChunkedArray:
    """The column as text in Arrow (the text the rules read; no copy for Arrow strings)."""
    return values.astype("string").array.__arrow_array__()


def check_time_format(time_format: str) -> str:
    """Refuse a ``strftime`` format the parser does not support (``%s``, ``%Q``, a stray ``%``).

    Raises
    ------
    DataValidationError
        Naming the format and the directive, with the supported alternatives.
    """
    try:
        pd.to_datetime(pd.Series(["2024-01-31"]), format=time_format, errors="coerce")
    except (ValueError, TypeError) as exc:
        raise _bad_time_format(time_format, exc) from None
    return time_format


def _bad_time_format(time_format: str, exc: BaseException) -> DataValidationError:
    return DataValidationError(
        f"time format {time_format!r} (--time-format, or data.time_format in the config) "
        f"is not supported: {' '.join(str(exc).split())}. Suggestion: use strftime "
        "directives such as %Y-%m-%d %H:%M:%S or %d/%m/%Y; epoch seconds (%s) are not a "
        "format: convert them first, for example pandas.to_datetime(column, unit='s')."
    )


def _parse_timestamps(
    values: pd.Series, source: str, column: str, file_rows: bool, time_format: str | None
) -> tuple[pd.Series, int]:
    """Parse timestamps; return naive datetimes (offsets converted to UTC) and a count.

    Dates outside ``PLAUSIBLE_DATES`` are refused (year 1, 9999: typos, or stand-ins for a
    missing date).
    """
    try:
        parsed, converted = _read_timestamps(values, source, column, file_rows, time_format)
    except DataValidationError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        if time_format is not None:
            raise _bad_time_format(time_format, exc) from None
        raise DataValidationError(
            f"column {column!r} in {source}: cannot read the timestamps "
            f"({' '.join(str(exc).split())}). Suggestion: write ISO 8601 dates "
            "(2024-03-31 or 2024-03-31T14:05:00+02:00)."
        ) from None
    first, last = PLAUSIBLE_DATES
    if len(parsed) and (parsed.min() < pd.Timestamp(first)
                        or parsed.max() >= pd.Timestamp(last) + pd.Timedelta(days=1)):
        bad = values[implausible_dates(parsed).to_numpy()]
        raise DataValidationError(
            f"column {column!r} in {source} has {len(bad):,} dates outside the supported "
            f"range {first} .. {last}: {format_bad_rows(bad, file_rows=file_rows)}. "
            "Suggestion: fix or remove these rows (a year such as 1 or 9999 is usually a "
            "stand-in for a missing date)."
        )
    return parsed, converted


def _excel_serials(values: pd.Series) -> bool:
    """Whether the values look like Excel serial day numbers (45000 is 2023-03-15)."""
    numbers = pd.to_numeric(values.astype("string").str.strip(), errors="coerce")
    present = numbers.dropna()
    # 1 .. 109574: days since 1899-12-30 up to 2199; most data sits between 20000 and 80000
    return (len(present) > 0 and len(present) == values.notna().sum()
            and bool(((present >= 1) & (present < 109_574)).all()))


_EXCEL_SUGGESTION = (
    "these look like Excel serial day numbers (days since 1899-12-30): format the column "
    "as dates in the spreadsheet before exporting, or convert them, for example "
    "pandas.to_datetime(column, unit='D', origin='1899-12-30')"
)


# Epoch numbers by unit: pandas' name, the word, the unit's count per second.
_EPOCH_UNITS = (("s", "seconds", 1.0), ("ms", "milliseconds", 1e3),
                ("us", "microseconds", 1e6), ("ns", "nanoseconds", 1e9))


def _epoch_unit(values: pd.Series) -> tuple[str, str] | None:
    """The unit in which every value is an epoch time within :data:`PLAUSIBLE_DATES`,
    the coarsest first (``("ms", "milliseconds")``); ``None`` when no unit fits."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64").dropna()
    if numbers.empty or not np.isfinite(numbers.to_numpy()).all():
        return None
    epoch = pd.Timestamp("1970-01-01")
    first, last = PLAUSIBLE_DATES
    low = (pd.Timestamp(first) - epoch).total_seconds()
    high = (pd.Timestamp(last) + pd.Timedelta(days=1) - epoch).total_seconds()
    smallest, largest = float(numbers.min()), float(numbers.max())
    for unit, word, per_second in _EPOCH_UNITS:
        if low <= smallest / per_second and largest / per_second < high:
            return unit, word
    return None


def _epoch_suggestion(values: pd.Series) -> str:
    """What to do with a numeric timestamp column: the conversion for the unit the
    values' magnitude shows (epoch seconds, milli-, micro- or nanoseconds)."""
    iso = "write ISO dates (2024-03-31 or 2024-03-31T14:05:00+02:00)"
    found = _epoch_unit(values)
    if found is None:
        return (f"{iso}; epoch times can be converted with pandas.to_datetime(column, "
                "unit=...), unit 's', 'ms', 'us' or 'ns' for seconds, milli-, micro- or "
                "nanoseconds")
    unit, word = found
    sample = values.dropna().head(1).tolist()[0]  # a Python number
    day = pd.to_datetime(sample, unit=unit)
    return (f"{iso}; these look like epoch {word} ({sample} is {day}), which convert "
            f"with pandas.to_datetime(column, unit={unit!r})")


def _read_timestamps(
    values: pd.Series, source: str, column: str, file_rows: bool, time_format: str | None
) -> tuple[pd.Series, int]:
    require_no_missing(values, column=column, source=source, file_rows=file_rows,
                       what="timestamps")
    if pd.api.types.is_datetime64_any_dtype(values):
        return _to_naive_utc(values)
    if pd.api.types.is_bool_dtype(values):
        raise DataValidationError(
            f"column {column!r} in {source} holds booleans (true/false), not dates: "
            f"{format_bad_rows(values, file_rows=file_rows)}. Suggestion: check that "
            "--time-col (time_col= in Python) names the column of dates, written as ISO "
            "dates (2024-03-31 or 2024-03-31T14:05:00+02:00)."
        )
    if pd.api.types.is_numeric_dtype(values):
        suggestion = (_EXCEL_SUGGESTION if _excel_serials(values) else
                      _epoch_suggestion(values))
        raise DataValidationError(
            f"column {column!r} in {source} holds {values.dtype} numbers, not dates: "
            f"{format_bad_rows(values, file_rows=file_rows)}. Suggestion: {suggestion}."
        )
    fmt = time_format or "ISO8601"
    if time_format is None:
        fast = _arrow_timestamps(values)
        if fast is not None:
            return fast
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("date", "datetime", "datetime64"):
        aware = values.map(lambda v: getattr(v, "tzinfo", None) is not None).astype(bool)
        try:
            parsed, _ = _to_naive_utc(pd.to_datetime(values, utc=bool(aware.any())))
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataValidationError(
                f"column {column!r} in {source}: {exc}. Suggestion: give timestamps as "
                "datetime values or ISO 8601 text."
            ) from exc
        # Naive values beside aware ones are taken as given; only the aware ones
        # were converted.
        return parsed, int(aware.sum())
    # Surrounding spaces ("a, 2024-01-31, 12") are not part of a date.
    text = values.astype("string").str.strip()
    try:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        parsed, converted = _to_naive_utc(parsed)
    except (ValueError, TypeError):
        # Mixed UTC offsets (or offsets beside naive values): offsets are converted
        # to UTC, naive values are taken in the data's own time zone, as given.
        has_offset = text.str.contains(_OFFSET_PATTERN, regex=True).fillna(False).astype(bool)
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
        aware = pd.to_datetime(text[has_offset], format=fmt, errors="coerce", utc=True)
        parsed.loc[has_offset] = aware.dt.tz_localize(None).astype("datetime64[us]")
        naive = pd.to_datetime(text[~has_offset], format=fmt, errors="coerce")
        parsed.loc[~has_offset] = naive.astype("datetime64[us]")
        converted = int(aware.notna().sum())
    bad = values[parsed.isna()]
    if len(bad):
        expected = f"format {time_format!r}" if time_format else "ISO 8601 dates"
        suggestion = (_EXCEL_SUGGESTION if _excel_serials(bad) else
                      "fix these rows, or give the format with --time-format (for example "
                      "%d/%m/%Y)")
        raise DataValidationError(
            f"column {column!r} in {source} has {len(bad):,} timestamps that are not "
            f"{expected}: {format_bad_rows(bad, file_rows=file_rows)}. Suggestion: "
            f"{suggestion}."
        )
    return parsed.astype("datetime64[us]"), converted


def _arrow_timestamps(values: pd.Series) -> tuple[pd.Series, int] | None:
    """Parse ISO 8601 text with Arrow when it is all naive or all with a UTC offset.

    A shortcut for the common case (ten times faster than pandas on millions of rows).
    Arrow accepts a subset of what the pandas rules accept, with the same values, so
    anything it refuses (mixed offsets, spaces, bad values, Python objects) returns
    None and goes through those rules and their messages.
    """
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) != "string":
        return None
    text = _arrow_text(values)
    for target in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        try:
            parsed = pc.cast(text, target)
        except pa.ArrowInvalid:
            continue
        # Dropping the zone keeps the UTC wall time: Arrow stores instants in UTC.
        stamps = parsed.cast(pa.timestamp("us")).to_numpy()
        converted = len(values) if target.tz else 0
        return pd.Series(stamps, index=values.index, dtype="datetime64[us]"), converted
    return None


def _to_naive_utc(values: pd.Series) -> tuple[pd.Series, int]:
    if getattr(values.dt, "tz", None) is not None:
        converted = int(values.notna().sum())
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.astype("datetime64[us]"), converted
    return values.astype("datetime64[us]"), 0


def _parse_amounts(values: pd.Series, source: str, column: str, file_rows: bool, *,
                   what: str = "amounts") -> pd.Series:
    """Parse amounts as float64; non-numeric, missing, infinite or too large values are errors.

    Too large: beyond +-``MAX_ABS_AMOUNT``, where the exact sums of the engine
    (``_engine.amount_units_sql``) would lose their meaning. ``what`` names the values in
    the messages (``"discounts"``: the discount's own suggestion).
    """
    if pd.api.types.is_bool_dtype(values):
        flag = "--discount-col" if what == "discounts" else "--amount-col"
        raise DataValidationError(
            f"column {column!r} in {source} holds booleans (true/false), not {what}. "
            f"Suggestion: check {flag}."
        )
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
        bad = values[numbers.isna()]
    elif (fast := _arrow_numbers(values)) is not None:
        return fast
    else:
        numbers = pd.to_numeric(values.astype("string").str.strip(), errors="coerce")
        numbers = numbers.astype("float64")
        bad = values[numbers.isna()]
    if len(bad):
        missing = bad.isna().all()
        problem = f"missing {what}" if missing else f"{what} that are not numbers"
        suggestion = ("discounts must be plain numbers such as 2.5 (0 or more; an empty cell "
                      "is no discount); remove currency signs and thousands separators."
                      if what == "discounts" else
                      "amounts must be plain numbers such as 12.5 or -3 (refunds); remove "
                      "currency signs and thousands separators, and fill or drop empty cells.")
        raise DataValidationError(
            f"column {column!r} in {source} has {len(bad):,} {problem}: "
            f"{format_bad_rows(bad, file_rows=file_rows)}. Suggestion: {suggestion}"
        )
    too_large = values[~amounts_in_range(numbers.to_numpy())]
    if len(too_large):
        raise DataValidationError(
            f"column {column!r} in {source} has {len(too_large):,} infinite or too large "
            f"{what} (beyond +-{MAX_ABS_AMOUNT:,.0f}): "
            f"{format_bad_rows(too_large, file_rows=file_rows)}. Suggestion: check that "
            "the column holds amounts (not ids), and fix these rows."
        )
    return numbers


def clean_text(values: pd.Series, source: str, column: str, file_rows: bool) -> pd.Series:
    """A category or channel column as text (pandas ``string``), spaces stripped.

    Surrounding spaces (:data:`TEXT_SPACES`) are not part of a value; an empty value is
    missing (NA). Integer codes become their digits; other non-text values (booleans,
    fractional numbers, dates) are refused: they are not names.
    """
    if pd.api.types.is_bool_dtype(values) or (
        pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_integer_dtype(values)
    ) or pd.api.types.is_datetime64_any_dtype(values):
        raise DataValidationError(
            f"column {column!r} in {source} holds {values.dtype} values, not names: "
            f"{format_bad_rows(values.dropna(), file_rows=file_rows)}. Suggestion: store "
            "categories and channels as text (or integer codes), or check the column name."
        )
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if values.dtype == object and kind not in ("string", "empty", "integer"):
        bad = values[values.map(lambda v: v is not None and not isinstance(v, str | int)
                                and not (isinstance(v, float) and np.isnan(v)))]
        raise DataValidationError(
            f"column {column!r} in {source} holds values that are not text: "
            f"{format_bad_rows(bad, file_rows=file_rows)}. Suggestion: store categories "
            "and channels as text."
        )
    text = values.astype("string").str.strip(TEXT_SPACES)
    return text.mask(text == "")


def parse_discounts(values: pd.Series, source: str, column: str, file_rows: bool) -> pd.Series:
    """Parse discounts as float64 ``>= 0``: an empty (or blank) cell is no discount (0).

    Anything else follows the rules of amounts (:func:`_parse_amounts`: plain numbers,
    finite, within +-``MAX_ABS_AMOUNT``); a negative discount is an error naming the rows.
    """
    present = values.notna()
    if not pd.api.types.is_numeric_dtype(values):  # a blank cell is an empty one
        present &= values.astype("string").str.strip(TEXT_SPACES).ne("").fillna(False)
    numbers = pd.Series(0.0, index=values.index, dtype="float64")
    if present.any():
        numbers.loc[present] = _parse_amounts(values[present], source, column, file_rows,
                                              what="discounts")
    negative = values[(numbers < 0).to_numpy()]
    if len(negative):
        raise DataValidationError(
            f"column {column!r} in {source} has {len(negative):,} negative discounts: "
            f"{format_bad_rows(negative, file_rows=file_rows)}. Suggestion: a discount is "
            "the amount taken off the price, 0 or more; check --discount-col."
        )
    return numbers


def amounts_in_range(amounts: np.ndarray) -> np.ndarray:
    """Which amounts are finite and within +-``MAX_ABS_AMOUNT`` (exact sums need it)."""
    with np.errstate(invalid="ignore"):
        return np.abs(amounts) < MAX_ABS_AMOUNT


def _arrow_numbers(values: pd.Series) -> pd.Series | None:
    """Parse text amounts with Arrow when every value is a plain finite number.

    The fast path for the common case. Arrow accepts a subset of what
    ``pandas.to_numeric`` accepts, with the same values; anything else (spaces,
    missing, NaN, infinite or non-numeric values) returns None and goes through the
    rules of :func:`_parse_amounts` and their messages.
    """
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) != "string":
        return None
    try:
        numbers = pc.cast(_arrow_text(values), pa.float64())
    except pa.ArrowInvalid:
        return None
    if numbers.null_count:
        return None
    numbers = numbers.to_numpy()
    if not amounts_in_range(numbers).all():
        return None
    return pd.Series(numbers, index=values.index, dtype="float64")


def _row_hashes(frame: pd.DataFrame, customer_codes: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row, to find exact repeats fast on millions of rows.

    Text columns are hashed through their factorized codes: equal text, equal code,
    and hashing integers is many times faster than hashing strings.
    """
    columns = {}
    for position, name in enumerate(frame.columns):
        column = frame.iloc[:, position]
        if name == CUSTOMER:
            columns[position] = customer_codes
        elif pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(
            column
        ):
            columns[position] = column.array  # nullable integers keep their NA
        else:
            columns[position] = pd.factorize(column)[0]
    keys = pd.DataFrame(columns, copy=False)
    return pd.util.hash_pandas_object(keys, index=False).to_numpy()


def _count_repeats(hashes: np.ndarray) -> int:
    """Rows whose hash repeats an earlier row's (sorting beats a hash table here)."""
    ordered = np.sort(hashes)
    return int(np.count_nonzero(ordered[1:] == ordered[:-1]))


def exact_total(amounts: np.ndarray) -> float:
    """The sum of ``amounts`` as the engine adds money (``_engine.amount_units_sql``).

    Each amount becomes whole billionths (rounded half away from zero, as SQL ``ROUND``),
    the billionths are added exactly and the total turns into a float once: the same
    number whatever the order of the rows, in pandas and in SQL.
    """
    scaled = np.asarray(amounts, dtype="float64") * AMOUNT_UNITS
    whole = np.trunc(scaled)
    units = whole + np.where(np.abs(scaled - whole) >= 0.5, np.sign(scaled), 0.0)
    return math.fsum(units) / AMOUNT_UNITS


def day_numbers(timestamps: pd.Series) -> np.ndarray:
    """Calendar day of each timestamp as days since 1970-01-01 (int32)."""
    return timestamps.to_numpy().astype("datetime64[D]").astype(np.int32)


# --- the same rules for values already in memory (the API) -------------------------


class CleanValues(NamedTuple):
    """Values checked and normalised by the loader's rules (see :func:`clean_values`)."""

    customer_ids: pd.Series | None
    timestamps: pd.Series | None
    amounts: pd.Series | None


def clean_values(
    customer_ids: pd.Series | None = None,
    timestamps: pd.Series | None = None,
    amounts: pd.Series | None = None,
    *,
    source: str = "values",
) -> CleanValues:
    """Apply :func:`load_transactions`' rules for ids, timestamps and amounts to values.

    For callers that hold the values in memory rather than in a table (the HTTP API):
    the same code as the loader, so the same values are kept, dropped or refused. The
    series given are checked independently and may have different lengths (one id per
    customer, one timestamp and amount per purchase).

    Parameters
    ----------
    customer_ids
        Customer ids as given.
    timestamps
        Timestamps as ISO 8601 text or datetime values.
    amounts
        Amounts (numbers or text).
    source
        Where the values come from, for messages.

    Returns
    -------
    CleanValues
        ``customer_ids`` with the ids the loader reads as missing (``"NA"``, ``"null"``,
        blanks...) as NA (the loader drops their rows); ``timestamps`` naive, UTC offsets
        converted to UTC; ``amounts`` as float64. None for a series not given.

    Raises
    ------
    DataValidationError
        Where :func:`load_transactions` would raise (unparseable timestamps, amounts that
        are not numbers or beyond +-``MAX_ABS_AMOUNT``), with its message.

    Examples
    --------
    >>> ids, stamps, amounts = clean_values(
    ...     pd.Series(["C1", "NA"]), pd.Series(["2024-02-01T10:00:00+02:00"]),
    ...     pd.Series([12.5]))
    >>> ids.isna().tolist(), str(stamps.iloc[0]), amounts.tolist()
    ([False, True], '2024-02-01 08:00:00', [12.5])
    """
    ids = stamps = numbers = None
    if customer_ids is not None:
        ids = _clean_customer_ids(customer_ids, source, CUSTOMER, False)
    if timestamps is not None:
        stamps, _ = _parse_timestamps(timestamps, source, TIMESTAMP, False, None)
    if amounts is not None:
        numbers = _parse_amounts(amounts, source, AMOUNT, False)
    return CleanValues(ids, stamps, numbers)
