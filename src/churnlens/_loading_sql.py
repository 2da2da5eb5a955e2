"""The transactions contract run by DuckDB on the files themselves (out of core).

:func:`load_transactions_sql` applies the rules of :func:`churnlens._loading.load_transactions`
to a Parquet or CSV path (one file, a glob such as ``data/*.parquet``, or a directory of
Parquet files, hive partitions included) without reading the transactions into pandas:
DuckDB scans the files, checks every row in SQL, counts the cleaning report and leaves
a view of the clean rows for the next stage (retention, cohorts). Memory is bounded by
:class:`EngineLimits` (DuckDB's memory limit; beyond it DuckDB spills to the temporary
directory), not by the size of the input.

One definition, two executions: the SQL accepts a value only where the pandas rules
accept it with the same result (ISO 8601 text, plain numbers, typed Parquet columns).
Anything else is *suspicious*: those rows alone (with their row numbers) go through
the pandas rules of :mod:`churnlens._loading`, which raise the loader's own error and
message. If the pandas rules accept a suspicious value (text dates pandas reads but the
SQL does not, ``time_format``, an unusual column type), a single file is loaded by the
pandas loader instead (``CleanTransactions.out_of_core`` is then False) and several
files are refused with a message saying why.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from churnlens._engine import (
    AMOUNT_UNITS,
    DEFAULT_MEMORY_LIMIT,
    MAX_ABS_AMOUNT,
    Dialect,
    amount_units_sql,
    connect,
)
from churnlens._loading import (
    AMOUNT,
    CATEGORY,
    CHANNEL,
    CUSTOMER,
    DISCOUNT,
    MISSING_ID_TEXT,
    QUANTITY,
    TIMESTAMP,
    CleaningReport,
    LoadResult,
    arrow_frame,
    check_csv_header,
    check_parquet_columns,
    check_time_format,
    clean_text,
    file_kind,
    load_transactions,
    optional_roles,
    parse_discounts,
)
from churnlens._loading import _parse_amounts as _pandas_amounts
from churnlens._loading import _parse_timestamps as _pandas_timestamps
from churnlens._validation import (
    PLAUSIBLE_DATES,
    parse_date,
    require_plausible_date,
    require_recent_data,
)
from churnlens.exceptions import ChurnlensError, DataValidationError, EmptyDataError

__all__ = [
    "CleanTransactions",
    "EngineLimits",
    "is_file_source",
    "load_transactions_sql",
]

_GLOB_CHARS = ("*", "?", "[")
_SPACES = " \t\n\r\v\f"
_TIME_PART = r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)?"
_NAIVE_ISO = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}{_TIME_PART}$"
_OFFSET_ISO = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
               r"(?:Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)$")
_PLAIN_NUMBER = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_ZERO_FRACTION = r"^-?(?:0|[1-9][0-9]*)\.0+$"
# the text id as read, beside the rules' customer_id in the view ``parsed`` (DuckDB)
_RAW_ID = "churnlens_raw_customer_id"


@dataclasses.dataclass(frozen=True)
class EngineLimits:
    """How much the embedded engine may hold in memory, and where it spills the rest.

    Attributes
    ----------
    memory_limit
        DuckDB's ``memory_limit``: a size (``"4GB"``, ``"500MB"``), a share of the
        machine's RAM (``"50%"``), or ``"auto"`` (the default: half the RAM, at most
        4 GiB; DuckDB's own default is 80% of RAM).
    temp_directory
        Where DuckDB writes what does not fit (``temp_directory``). ``None``: a fresh
        folder in the system's temporary directory, removed when the connection closes.
    """

    memory_limit: str = DEFAULT_MEMORY_LIMIT
    temp_directory: str | None = None


class CleanTransactions:
    """Clean transactions as a DuckDB view over the files, and their cleaning report.

    Attributes
    ----------
    connection
        The DuckDB connection holding the view (memory limit and spill folder set).
    view
        The view's name: columns ``customer_id``, ``timestamp`` (naive, UTC offsets
        converted), ``amount`` (DOUBLE) and the optional columns asked for.
    report
        The :class:`~churnlens._loading.CleaningReport`, equal to the pandas loader's.
    out_of_core
        False when the pandas loader did the work (values only it reads).
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, view: str,
                 report: CleaningReport, *, out_of_core: bool,
                 temp_directory: str | None = None) -> None:
        self.connection = connection
        self.view = view
        self.report = report
        self.out_of_core = out_of_core
        # closed and removed when closed, collected, or at exit (whichever comes first)
        self._release = weakref.finalize(self, _release, connection, temp_directory)

    def to_pandas(self) -> pd.DataFrame:
        """The clean rows in memory (tests and small data; order not defined)."""
        return self.connection.execute(f"SELECT * FROM {self.view}").df()

    def close(self) -> None:
        """Close the connection and remove the spill folder churnlens made."""
        self._release()

    def __enter__(self) -> CleanTransactions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release(connection: duckdb.DuckDBPyConnection, temp_directory: str | None) -> None:
    try:
        connection.close()
    finally:
        if temp_directory is not None:
            shutil.rmtree(temp_directory, ignore_errors=True)


def is_file_source(source: object) -> bool:
    """Whether ``source`` is a path (file, glob or directory) rather than a frame."""
    return isinstance(source, str | os.PathLike)


def load_transactions_sql(
    source: str | os.PathLike[str],
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
    limits: EngineLimits | None = None,
) -> CleanTransactions:
    """:func:`~churnlens._loading.load_transactions` on files, run by DuckDB out of core.

    Parameters
    ----------
    source
        A Parquet or CSV file, a glob (``"exports/*.parquet"``) or a directory of
        Parquet files (hive partitions such as ``year=2024/`` are columns, read when
        named in ``extra_cols``).
    customer_col, time_col, amount_col, order_col, quantity_col, category_col, \
channel_col, discount_col, extra_cols, as_of, time_format, deduplicate, delimiter, \
max_staleness_days
        As in :func:`~churnlens._loading.load_transactions`.
    limits
        Memory limit and spill folder of the engine (default :class:`EngineLimits`).

    Returns
    -------
    CleanTransactions
        The open view of the clean rows and the cleaning report; close it (or use it
        as a context manager) when done.

    Raises
    ------
    DataValidationError, EmptyDataError
        Where :func:`~churnlens._loading.load_transactions` raises, with its message.
    ChurnlensError
        A memory limit DuckDB does not read as a size.
    """
    limits = limits or EngineLimits()
    columns = {CUSTOMER: customer_col, TIMESTAMP: time_col, AMOUNT: amount_col}
    optional = optional_roles(order_col=order_col, quantity_col=quantity_col,
                              category_col=category_col, channel_col=channel_col,
                              discount_col=discount_col)
    wanted = {**columns, **optional, **{name: name for name in extra_cols}}
    pandas_options: dict[str, Any] = dict(
        customer_col=customer_col, time_col=time_col, amount_col=amount_col,
        order_col=order_col, quantity_col=quantity_col, category_col=category_col,
        channel_col=channel_col, discount_col=discount_col, extra_cols=tuple(extra_cols),
        as_of=as_of, time_format=time_format, deduplicate=deduplicate, delimiter=delimiter,
        max_staleness_days=max_staleness_days)
    as_of_ts = parse_date(as_of, name="as_of") if as_of is not None else None
    if as_of_ts is not None:
        require_plausible_date(as_of_ts, name="as_of")
    if time_format is not None:
        check_time_format(time_format)
    if delimiter is not None and len(delimiter) != 1:
        load_transactions(pd.DataFrame(), **pandas_options)  # raises the loader's message
    files, name, kind = _resolve(source)
    single = len(files) == 1 and not _is_pattern(source) and not Path(source).is_dir()
    for path in files:
        if kind == "parquet":
            # a hive partition folder (month=2024-01/) gives its files that column
            keys = {part.split("=", 1)[0] for part in path.parts[:-1] if "=" in part}
            try:
                check_parquet_columns(
                    path, {r: c for r, c in wanted.items() if c not in keys}, columns)
            except (pa.ArrowException, OSError):
                return _fallback(source, files, single, pandas_options, limits,
                                 "the file is not readable Parquet")
        else:
            delimiter = check_csv_header(path, wanted, columns, delimiter)
    if time_format is not None:
        return _fallback(source, files, single, pandas_options, limits,
                         "--time-format is read by the pandas rules")

    con, temp_dir = _connect(limits)
    try:
        scan = _scan_sql(files, kind, wanted, delimiter)
        try:
            types = {str(row[0]): str(row[1])
                     for row in con.execute(f"DESCRIBE {scan}").fetchall()}
        except duckdb.Error as exc:  # the pandas reader names the problem
            con.close()
            return _fallback(source, files, single, pandas_options, limits,
                             f"DuckDB cannot read it ({' '.join(str(exc).split())[:200]})",
                             temp_dir)
        rules = _Rules(wanted, types)
        if not rules.handled:
            con.close()
            return _fallback(source, files, single, pandas_options, limits,
                             f"column types {rules.unhandled} are read by the pandas rules",
                             temp_dir)
        con.execute(f"CREATE TEMP VIEW raw_rows AS {scan}")
        parsed = rules.parsed_columns()
        if types.get(CUSTOMER) == "VARCHAR":  # the id as read, for _check's shortcut
            parsed.append(f"{_ident(CUSTOMER)} AS {_RAW_ID}")
        con.execute(f"CREATE TEMP VIEW parsed AS SELECT {', '.join(parsed)} FROM raw_rows")
        report: CleaningReport | None = None
        try:
            tally: dict[str, int] = {}
            stats: list[Any] = []  # the report's counts, when the check scan made them
            outcome = _check(con, name, wanted, as_of_ts, max_staleness_days, tally,
                             stats=None if deduplicate else stats)
            report = (None if outcome else
                      _report(con, name, wanted, as_of_ts, deduplicate, tally, stats))
        except duckdb.Error as exc:  # a broken file: the pandas reader names the problem
            outcome = f"DuckDB cannot read it ({' '.join(str(exc).split())[:300]})"
        if outcome is not None or report is None:
            # the pandas rules accept what the SQL does not read, or explain the failure
            con.close()
            return _fallback(source, files, single, pandas_options, limits,
                             outcome or "", temp_dir)
    except BaseException:
        con.close()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return CleanTransactions(con, "transactions", report, out_of_core=True,
                             temp_directory=temp_dir)


# --- inputs -----------------------------------------------------------------------


def _is_pattern(source: str | os.PathLike[str]) -> bool:
    return any(char in str(source) for char in _GLOB_CHARS) and not Path(source).exists()


def _resolve(source: str | os.PathLike[str]) -> tuple[list[Path], str, str]:
    """The files of ``source``, its name for messages and their kind (parquet or csv)."""
    if not is_file_source(source):
        raise DataValidationError(
            f"transactions must be a file path, a glob or a directory, got "
            f"{type(source).__name__}. Suggestion: pass a CSV/Parquet path.")
    name = str(source)
    path = Path(source)
    if _is_pattern(source):
        files = sorted(Path(p) for p in glob.glob(name, recursive=True) if Path(p).is_file())
        if not files:
            raise DataValidationError(
                f"{name}: no file matches this pattern. Suggestion: check the path "
                f"(relative paths start from {Path.cwd()}).")
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and p.suffix.lower() in (".parquet", ".pq", ".parq"))
        if not files:
            raise DataValidationError(
                f"{name} is a directory without Parquet files. Suggestion: name a CSV "
                "file, a glob such as data/*.csv, or a directory of .parquet files.")
    elif not path.exists():
        raise DataValidationError(
            f"{name}: no such file. Suggestion: check the path (relative paths start "
            f"from {Path.cwd()}).")
    else:
        files = [path]
    kinds = {file_kind(p) for p in files}
    if len(kinds) > 1:
        raise DataValidationError(
            f"{name} mixes CSV and Parquet files. Suggestion: read one kind at a time.")
    return files, name, kinds.pop()


def _space_list(dialect: Dialect = "duckdb") -> str:
    return "(" + ", ".join(_quote(char, dialect) for char in _SPACES) + ")"


def _quote(text: str, dialect: Dialect = "duckdb") -> str:
    """A SQL string literal (Spark reads backslash escapes in its literals)."""
    if dialect == "spark":
        escaped = "".join(
            "\\\\" if char == "\\" else "\\'" if char == "'"
            else f"\\u{ord(char):04X}" if ord(char) < 32 else char for char in text)
        return "'" + escaped + "'"
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str, dialect: Dialect = "duckdb") -> str:
    if dialect == "spark":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _full_match(text: str, pattern: str, dialect: Dialect) -> str:
    """SQL: ``text`` matches the anchored regular expression ``pattern`` entirely."""
    if dialect == "spark":
        # Java's $ also matches before a final line break; \z only at the very end (RE2's $)
        return f"({text} RLIKE {_quote(pattern.removesuffix('$') + chr(92) + 'z', dialect)})"
    return f"regexp_full_match({text}, {_quote(pattern)})"


def _trim(text: str, dialect: Dialect) -> str:
    if dialect == "spark":
        return f"trim(BOTH {_quote(_SPACES, dialect)} FROM {text})"
    return f"trim({text}, {_quote(_SPACES)})"


def _try_cast(value: str, kind: str, dialect: Dialect) -> str:
    return f"{'try_cast' if dialect == 'spark' else 'TRY_CAST'}({value} AS {kind})"


def _scan_sql(files: list[Path], kind: str, wanted: dict[str, str],
              delimiter: str | None) -> str:
    """SELECT of the wanted columns (as roles), plus the row number in file order."""
    listed = "[" + ", ".join(_quote(str(p)) for p in files) + "]"
    if kind == "parquet":
        reader = f"read_parquet({listed}, union_by_name = true)"
    else:
        # Everything as text, as the pandas loader reads CSV: the rules convert it.
        reader = (f"read_csv({listed}, header = true, all_varchar = true, auto_detect = false, "
                  f"delim = {_quote(delimiter or ',')}, quote = '\"', escape = '\"', "
                  f"columns = {{{_csv_columns(files[0], delimiter)}}}, union_by_name = false)")
    names = ", ".join(f"{_ident(column)} AS {_ident(role)}" for role, column in wanted.items())
    return f"SELECT {names} FROM {reader}"


def _csv_columns(path: Path, delimiter: str | None) -> str:
    import csv
    import io

    from churnlens._loading import _read_header_line

    header = next(csv.reader(io.StringIO(_read_header_line(path)), delimiter=delimiter or ","))
    return ", ".join(f"{_quote(name)}: 'VARCHAR'" for name in header)


def _connect(limits: EngineLimits) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    try:
        con = connect(memory_limit=limits.memory_limit)
    except duckdb.Error as exc:
        raise ChurnlensError(
            f"memory limit {limits.memory_limit!r} (engine.memory_limit) is not a size: "
            f"{' '.join(str(exc).split())[:200]}. Suggestion: for example 4GB, 500MB, 50% or auto."
        ) from None
    made = None
    folder = limits.temp_directory
    if folder is None:
        folder = made = tempfile.mkdtemp(prefix="churnlens-duckdb-")
    else:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # missing parent on a read-only file system, a file...
            con.close()
            why = ("it is a file, not a folder" if Path(folder).is_file()
                   else exc.strerror or str(exc))
            raise ChurnlensError(
                f"cannot use {folder} as the engine's spill folder (engine.temp_directory): "
                f"{why}. Suggestion: set engine.temp_directory to a folder "
                "that can be created and written, or remove it (a fresh temporary folder "
                "is used)."
            ) from None
    con.execute("SET temp_directory = ?", [folder])
    con.execute("SET TimeZone = 'UTC'")
    # Memory a query freed goes back to the system in the background: without this the
    # allocator kept the last query's hash tables (about 0.5 GB at 10M rows) while the
    # scores were computed beside them (docs/scale.md).
    con.execute("SET allocator_background_threads = true")
    # and sooner: after a task that allocated more than 16MB, and after a bulk free
    con.execute("SET allocator_flush_threshold = '16MB'")
    con.execute("SET allocator_bulk_deallocation_flush_threshold = '64MB'")
    return con, made


# --- the rules in SQL ---------------------------------------------------------------

_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT")
_FLOAT_TYPES = ("FLOAT", "DOUBLE")


class _Rules:
    """The SQL twin of the column rules, chosen by the column types the engine reads.

    ``types`` are in DuckDB's names (:func:`churnlens._spark_loading` maps Spark's);
    ``dialect`` chooses the SQL the rules are written in (DuckDB or Spark SQL), the
    rules being the same.
    """

    def __init__(self, wanted: dict[str, str], types: dict[str, str],
                 dialect: Dialect = "duckdb") -> None:
        self.wanted = wanted
        self.types = types
        self.dialect = dialect
        self.unhandled = {role: kind for role, kind in types.items()
                          if not self._handled(role, kind)}
        self.handled = not self.unhandled

    def _handled(self, role: str, kind: str) -> bool:
        if role == CUSTOMER:
            return kind == "VARCHAR" or kind in _INTEGER_TYPES or kind in _FLOAT_TYPES
        if role == TIMESTAMP:
            return kind in ("VARCHAR", "DATE") or kind.startswith("TIMESTAMP")
        if role in (AMOUNT, QUANTITY, DISCOUNT):
            return (kind == "VARCHAR" or kind in _INTEGER_TYPES or kind in _FLOAT_TYPES
                    or kind.startswith("DECIMAL"))
        if role in (CATEGORY, CHANNEL):  # names: text or integer codes
            return kind == "VARCHAR" or kind in _INTEGER_TYPES
        return True

    def parsed_sql(self, table: str) -> str:
        """Per row: the clean values and one flag per rule (``*_suspicious``)."""
        return f"SELECT {', '.join(self.parsed_columns())} FROM {table}"

    def parsed_columns(self) -> list[str]:
        """The select list of :meth:`parsed_sql` (later items use earlier aliases)."""
        parts = self._id()
        parts += self._timestamp()
        parts += self._number(AMOUNT)
        if QUANTITY in self.wanted:
            parts += self._number(QUANTITY)
        parts += [self._text(role) for role in (CATEGORY, CHANNEL) if role in self.wanted]
        if DISCOUNT in self.wanted:
            parts += self._discount()
        parts += [self._ident(role) for role in self.wanted
                  if role not in (CUSTOMER, TIMESTAMP, AMOUNT, QUANTITY, CATEGORY, CHANNEL,
                                  DISCOUNT)]
        # the values as read, for the pandas rules' messages on suspicious rows
        parts += [f"{self._ident(role)} AS {self._ident('raw_' + role)}"
                  for role in (TIMESTAMP, AMOUNT, QUANTITY, DISCOUNT) if role in self.wanted]
        return parts

    def _text(self, role: str) -> str:
        """A category or channel: text without surrounding spaces; empty is missing."""
        raw = self._ident(role)
        if self.types[role] != "VARCHAR":  # integer codes: their digits
            raw = f"CAST({raw} AS {'STRING' if self.dialect == 'spark' else 'VARCHAR'})"
        return f"nullif({_trim(raw, self.dialect)}, '') AS {self._ident(role)}"

    def _discount(self) -> list[str]:
        """A discount: a number >= 0; empty or blank is 0 (``_loading.parse_discounts``)."""
        raw = self._ident(DISCOUNT)
        value, flag = self._number(DISCOUNT)
        value = value.removesuffix(f" AS {DISCOUNT}")
        flag = flag.removesuffix(f" AS {DISCOUNT}_suspicious")
        blank = (f"{raw} IS NULL" if self.types[DISCOUNT] != "VARCHAR"
                 else f"({raw} IS NULL OR {_trim(raw, self.dialect)} = '')")
        return [f"CASE WHEN {blank} THEN CAST(0 AS DOUBLE) ELSE {value} END AS {DISCOUNT}",
                f"(NOT {blank} AND ({flag} OR coalesce({value} < 0, false))) "
                f"AS {DISCOUNT}_suspicious"]

    def _ident(self, name: str) -> str:
        return _ident(name, self.dialect)

    def _quote(self, text: str) -> str:
        return _quote(text, self.dialect)

    def _id(self) -> list[str]:
        kind, raw, spark = self.types[CUSTOMER], self._ident(CUSTOMER), self.dialect == "spark"
        if kind in _INTEGER_TYPES:
            return [f"{raw} AS customer_id", "false AS id_suspicious"]
        if kind in _FLOAT_TYPES:
            # a whole-number float id is the integer id (pandas widened it for gaps)
            infinite = (f"{raw} IN (double('Infinity'), double('-Infinity'))" if spark
                        else f"isinf({raw})")
            fraction = f"{raw} % 1 <> 0" if spark else f"{raw} <> floor({raw})"
            bad = f"({raw} IS NOT NULL AND (isnan({raw}) OR {infinite} OR {fraction}))"
            return [f"CASE WHEN {bad} THEN NULL "
                    f"ELSE {_try_cast(raw, 'BIGINT', self.dialect)} END AS customer_id",
                    f"{bad} AS id_suspicious"]
        words = ", ".join(self._quote(word) for word in MISSING_ID_TEXT)
        longest = max(len(word) for word in MISSING_ID_TEXT)
        # As in _loading._missing_id_text: only short ids or ids with surrounding spaces
        # can be one of those words; CASE looks at the rest only when the cheap test holds.
        first, last = ((f"substr({raw}, 1, 1)", f"substr({raw}, -1, 1)") if spark
                       else (f"{raw}[1]", f"{raw}[-1]"))
        spaces = _space_list(self.dialect)
        maybe = f"(length({raw}) <= {longest} OR {first} IN {spaces} OR {last} IN {spaces})"
        missing = f"lower({_trim(raw, self.dialect)}) IN ({words})"
        zero_fraction = _full_match(raw, _ZERO_FRACTION, self.dialect)
        return [f"CASE WHEN {raw} IS NULL THEN NULL "
                f"WHEN {maybe} AND {missing} THEN NULL "
                f"WHEN contains({raw}, '.') AND {zero_fraction} "
                f"THEN split_part({raw}, '.', 1) ELSE {raw} END AS customer_id",
                "false AS id_suspicious"]

    def _timestamp(self) -> list[str]:
        kind, raw, dialect = self.types[TIMESTAMP], self._ident(TIMESTAMP), self.dialect
        if kind == "VARCHAR":
            text = _trim(raw, dialect)
            offset = _full_match(text, _OFFSET_ISO, dialect)
            naive = _full_match(text, _NAIVE_ISO, dialect)
            if dialect == "spark":  # an instant, then its wall-clock time in UTC
                as_utc = _utc_wall_clock(_try_cast(text, "TIMESTAMP", dialect))
                value = (f"CASE WHEN {offset} THEN {as_utc} "
                         f"WHEN {naive} THEN {_try_cast(text, 'TIMESTAMP_NTZ', dialect)} END")
            else:
                value = (f"CASE WHEN {offset} THEN CAST(TRY_CAST({text} AS TIMESTAMPTZ) "
                         f"AS TIMESTAMP) WHEN {naive} THEN TRY_CAST({text} AS TIMESTAMP) END")
            converted = offset
        elif kind.startswith("TIMESTAMP WITH TIME ZONE") or kind == "TIMESTAMPTZ":
            value = (_utc_wall_clock(raw) if dialect == "spark"
                     else f"CAST({raw} AS TIMESTAMP)")
            converted = f"{raw} IS NOT NULL"
        else:  # naive timestamps (any unit) and dates
            naive_type = "TIMESTAMP_NTZ" if dialect == "spark" else "TIMESTAMP"
            value, converted = f"CAST({raw} AS {naive_type})", "false"
        first, last = PLAUSIBLE_DATES
        literal = "TIMESTAMP_NTZ" if dialect == "spark" else "TIMESTAMP"
        in_range = (f"ts_value >= {literal} '{first}' AND "
                    f"ts_value < {literal} '{last}' + INTERVAL 1 DAY")
        return [f"{value} AS ts_value", f"coalesce({converted}, false) AS ts_converted",
                f"(ts_value IS NULL OR NOT ({in_range})) AS ts_suspicious",
                f"ts_value AS {self._ident('timestamp')}"]

    def _number(self, role: str) -> list[str]:
        kind, raw = self.types[role], self._ident(role)
        if kind == "VARCHAR":
            text = _trim(raw, self.dialect)
            value = (f"CASE WHEN {_full_match(text, _PLAIN_NUMBER, self.dialect)} "
                     f"THEN {_try_cast(text, 'DOUBLE', self.dialect)} END")
        else:
            value = f"CAST({raw} AS DOUBLE)"
        good = (f"({value} IS NOT NULL AND NOT isnan({value}) "
                f"AND abs({value}) < {MAX_ABS_AMOUNT!r})")
        return [f"{value} AS {role}", f"NOT coalesce({good}, false) AS {role}_suspicious"]


def _utc_wall_clock(instant: str) -> str:
    """Spark SQL: a TIMESTAMP (an instant) as the naive UTC time (TIMESTAMP_NTZ).

    The cast gives the wall clock of the session's time zone; ``convert_timezone`` takes
    it from there to UTC, whatever the session's zone.
    """
    return f"convert_timezone('UTC', CAST({instant} AS TIMESTAMP_NTZ))"


# --- checks, in the pandas loader's order -----------------------------------------


def _check(con: duckdb.DuckDBPyConnection, name: str, wanted: dict[str, str],
           as_of_ts: pd.Timestamp | None, max_staleness_days: int | None,
           tally: dict[str, int], *, stats: list[Any] | None = None) -> str | None:
    """Raise the loader's error for the first broken rule; a reason to fall back, or None.

    One scan of the files; the counts the report needs go into ``tally``. With a
    ``stats`` list (no deduplication), the same scan also counts :func:`stats_sql`'s
    numbers over the kept rows and puts them there (one scan fewer).

    Text ids: the scan also counts the ids the rules change (missing-value words, ``12.0``
    for ``12``); when none is, the later scans (``kept``) read the id as it is, without
    the rules' string work on every row (the same values).
    """
    after = after_as_of_sql(as_of_ts)
    raw_id = _RAW_ID in {str(row[0]) for row in con.execute("DESCRIBE parsed").fetchall()}
    extra = "" if stats is None else ",\n" + _kept_stats_sql(after)
    if raw_id:
        extra += f",\ncount(*) FILTER (WHERE customer_id IS DISTINCT FROM {_RAW_ID})"
    counts = con.execute(check_sql("parsed", QUANTITY in wanted, after, extra=extra,
                                   discount=DISCOUNT in wanted)).fetchall()[0]
    assert counts is not None
    outcome = judge_counts(counts[:9], name, wanted, as_of_ts, max_staleness_days, tally,
                           lambda role, flag: _suspicious(con, role, flag))
    if stats is not None:
        stats[:] = counts[9:16]
    if outcome is None:
        if raw_id and counts[-1] == 0:  # every id as read: skip the rules' CASE
            con.execute(f"CREATE TEMP VIEW kept AS SELECT * REPLACE ({_RAW_ID} AS customer_id) "
                        f"FROM parsed WHERE {_RAW_ID} IS NOT NULL AND NOT ({after})")
        else:
            con.execute(f"CREATE TEMP VIEW kept AS SELECT * FROM parsed "
                        f"WHERE customer_id IS NOT NULL AND NOT ({after})")
    return outcome


def _kept_stats_sql(after: str) -> str:
    """:func:`stats_sql`'s items over the rows ``kept`` would hold, as extra items of
    :func:`check_sql` (used only when the checks pass: no suspicious value then)."""
    kept = f"customer_id IS NOT NULL AND NOT ({after})"
    ts = _ident("timestamp")
    # CASE: the exact units of the refunds only (a suspicious amount, which the checks
    # refuse anyway, could overflow the cast)
    refund = (f"CASE WHEN {kept} AND amount < 0 AND NOT amount_suspicious "
              f"THEN {amount_units_sql('(-amount)')} END")
    return (f"count(*) FILTER (WHERE {kept}), count(*) FILTER (WHERE {kept} AND amount < 0), "
            f"coalesce(sum({refund}), 0), count(*) FILTER (WHERE {kept} AND amount = 0), "
            f"count(DISTINCT customer_id) FILTER (WHERE {kept}), "
            f"min({ts}) FILTER (WHERE {kept}), max({ts}) FILTER (WHERE {kept})")


def after_as_of_sql(as_of_ts: pd.Timestamp | None, dialect: Dialect = "duckdb") -> str:
    """SQL condition: the row is dated after the as-of day (``false`` without one)."""
    if as_of_ts is None:
        return "false"
    day_after = (as_of_ts + pd.Timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    literal = "TIMESTAMP_NTZ" if dialect == "spark" else "TIMESTAMP"
    return f"{_ident('timestamp', dialect)} >= {literal} '{day_after}'"


def check_sql(table: str, quantity: bool, after: str, dialect: Dialect = "duckdb",
              extra: str = "", *, discount: bool = False) -> str:
    """The one scan of the checks over the parsed rows (:meth:`_Rules.parsed_sql`).

    ``extra``: more select items after the nine counts (an engine's own check).
    ``bad_quantities`` counts the suspicious quantities and, with ``discount``, discounts.
    """
    flags = [f"{role}_suspicious" for role, asked in (("quantity", quantity),
                                                       ("discount", discount)) if asked]
    bad_optional = (f"count(*) FILTER (WHERE customer_id IS NOT NULL AND ({' OR '.join(flags)}))"
                    if flags else "0")
    ts = _ident("timestamp", dialect)
    return f"""
        SELECT count(*) AS rows_read,
               count(*) FILTER (WHERE id_suspicious) AS bad_ids,
               count(*) FILTER (WHERE customer_id IS NOT NULL) AS with_id,
               count(*) FILTER (WHERE customer_id IS NOT NULL AND ts_converted) AS converted,
               count(*) FILTER (WHERE customer_id IS NOT NULL AND {after}) AS after_as_of,
               count(*) FILTER (WHERE customer_id IS NOT NULL AND ts_suspicious) AS bad_ts,
               count(*) FILTER (WHERE customer_id IS NOT NULL AND amount_suspicious)
                   AS bad_amounts,
               {bad_optional} AS bad_quantities,
               max({ts}) FILTER (WHERE customer_id IS NOT NULL) AS last_seen{extra}
        FROM {table}
    """


def judge_counts(counts: Any, name: str, wanted: dict[str, str],
                 as_of_ts: pd.Timestamp | None, max_staleness_days: int | None,
                 tally: dict[str, int], suspicious: Callable[[str, str], pd.Series],
                 *, file_rows: bool = True) -> str | None:
    """The loader's rules on the counts of :func:`check_sql`, in the loader's order.

    Raises the loader's error for the first broken rule; returns a reason to hand the
    input to the pandas loader, or None (then ``tally`` has the counts the report needs).
    ``suspicious(role, flag)`` gives the raw values of the flagged rows (with an id),
    indexed by row number, for the pandas rules' messages.
    """
    (rows_read, bad_ids, with_id, converted, after_as_of, bad_ts, bad_amounts, bad_quantities,
     last_seen) = counts
    if rows_read == 0:
        raise EmptyDataError(
            f"{name} has no data rows (only a header). "
            "Suggestion: check that the right file was exported."
        )
    if bad_ids:
        return "customer ids that are not whole numbers are read by the pandas rules"
    if with_id == 0:
        raise EmptyDataError(
            f"{name}: all {rows_read:,} rows have no customer id in column "
            f"{wanted[CUSTOMER]!r}. Suggestion: check --customer-col."
        )
    if bad_ts:
        values = suspicious(TIMESTAMP, "ts_suspicious")
        _pandas_timestamps(values, name, wanted[TIMESTAMP], file_rows, None)
        return "timestamps that only the pandas rules read"
    if bad_amounts:
        _pandas_amounts(suspicious(AMOUNT, "amount_suspicious"), name,
                        wanted[AMOUNT], file_rows)
        return "amounts that only the pandas rules read"
    if bad_quantities:
        for role in (QUANTITY, DISCOUNT):
            if role in wanted:
                pandas_optional_rule(role, suspicious(role, f"{role}_suspicious"), name,
                                     wanted[role], file_rows)
        return "quantities or discounts that only the pandas rules read"
    if as_of_ts is not None and max_staleness_days is not None:
        require_recent_data(as_of_ts.date(), pd.Timestamp(last_seen).date(),
                            max_staleness_days=max_staleness_days, source=name)
    tally.update(rows_read=rows_read, with_id=with_id, converted=converted,
                 kept=with_id - after_as_of)
    if as_of_ts is not None and after_as_of == with_id:
        raise EmptyDataError(
            f"{name}: no transactions on or before the as-of date "
            f"{as_of_ts.date()} ({with_id:,} rows are after it). "
            "Suggestion: choose a later --as-of date."
        )
    return None


def pandas_optional_rule(role: str, values: pd.Series, name: str, column: str,
                         file_rows: bool = True) -> None:
    """The pandas loader's rule for the flagged values of an optional column.

    A quantity is read as an amount is, a discount by :func:`parse_discounts`, a category
    or channel by :func:`clean_text`; each raises the loader's error (naming ``name``,
    ``column`` and the rows) when it refuses a value, else returns.
    """
    if role == QUANTITY:
        _pandas_amounts(values, name, column, file_rows)
    elif role == DISCOUNT:
        parse_discounts(values, name, column, file_rows)
    else:
        clean_text(values, name, column, file_rows)


def _suspicious(con: duckdb.DuckDBPyConnection, role: str, flag: str) -> pd.Series:
    """The raw values of the suspicious rows (with an id), indexed by their row number.

    Read back through Arrow the way the pandas loader reads files, so the pandas rules
    see the same values and dtypes and write the same message.
    """
    # Row numbers follow the files' order only while insertion order is kept (the
    # connection drops it elsewhere: faster, less memory).
    con.execute("SET preserve_insertion_order = true")
    try:
        table = con.sql(
            f"SELECT value, _row FROM (SELECT row_number() OVER () - 1 AS _row, customer_id, "
            f"{flag}, {_ident('raw_' + role)} AS value FROM parsed) "
            f"WHERE customer_id IS NOT NULL AND {flag} ORDER BY _row"
        ).to_arrow_table()
    finally:
        con.execute("SET preserve_insertion_order = false")
    frame = arrow_frame(table)
    values = frame["value"]
    values.index = pd.Index(frame["_row"].to_numpy())
    return values


def _report(con: duckdb.DuckDBPyConnection, name: str, wanted: dict[str, str],
            as_of_ts: pd.Timestamp | None, deduplicate: bool,
            tally: dict[str, int], stats: list[Any] | None = None) -> CleaningReport:
    """The cleaning report from one or two more scans; leaves the view ``transactions``.

    ``stats``: :func:`stats_sql`'s numbers when the check scan counted them already.
    """
    duplicate_rows = _count_duplicates(con, "kept", wanted)
    con.execute(f"CREATE TEMP VIEW transactions AS {clean_rows_sql('kept', wanted, deduplicate)}")
    if not stats:
        stats = list(con.execute(stats_sql("transactions")).fetchall()[0])
    return make_report(name, tally, duplicate_rows, stats, as_of_ts, deduplicate)


def _count_duplicates(con: duckdb.DuckDBPyConnection, table: str,
                      wanted: dict[str, str]) -> int:
    """:func:`duplicates_sql`'s number, exactly, for less time and memory (DuckDB).

    First the rows are grouped by a 64-bit hash of every column (one small key per
    group instead of every column's values); only the rows whose hash is shared (true
    repeats, or rarely a collision) are then grouped by their values. DuckDB's ``hash``
    is the one its ``GROUP BY`` uses, so rows equal as a group key have equal hashes.
    """
    listed = ", ".join(_ident(role) for role in wanted)
    shared = f"churnlens_shared_hashes_{os.getpid()}_{id(con)}"
    con.execute(f"CREATE TEMP TABLE {shared} AS SELECT h FROM (SELECT hash({listed}) AS h, "
                f"count(*) AS n FROM {table} GROUP BY h) AS g WHERE n > 1")
    try:
        found = con.execute(f"SELECT count(*) FROM {shared}").fetchall()[0][0]
        if not found:
            return 0
        groups = con.execute(duplicates_sql(
            f"(SELECT * FROM {table} WHERE hash({listed}) IN (SELECT h FROM {shared}))",
            wanted)).fetchall()[0]
        return int(groups[0]) if groups is not None and groups[0] is not None else 0
    finally:
        con.execute(f"DROP TABLE IF EXISTS {shared}")


def duplicates_sql(table: str, wanted: dict[str, str], dialect: Dialect = "duckdb") -> str:
    """SQL: rows that repeat an earlier row exactly (every column kept)."""
    listed = ", ".join(_ident(role, dialect) for role in wanted)
    return (f"SELECT coalesce(sum(n - 1), 0) FROM "
            f"(SELECT count(*) AS n FROM {table} GROUP BY {listed}) AS g")


def clean_rows_sql(table: str, wanted: dict[str, str], deduplicate: bool,
                   dialect: Dialect = "duckdb") -> str:
    """SQL: the clean rows (columns named by role), without repeats if ``deduplicate``."""
    listed = ", ".join(_ident(role, dialect) for role in wanted)
    return f"SELECT {'DISTINCT ' if deduplicate else ''}{listed} FROM {table}"


def stats_sql(table: str, dialect: Dialect = "duckdb") -> str:
    """SQL: the report's counts over the clean rows; the refund total in exact units."""
    refund_units = amount_units_sql("(-amount)", dialect)
    ts = _ident("timestamp", dialect)
    return f"""
        SELECT count(*), count(*) FILTER (WHERE amount < 0),
               coalesce(sum({refund_units}) FILTER (WHERE amount < 0), 0),
               count(*) FILTER (WHERE amount = 0), count(DISTINCT customer_id),
               min({ts}), max({ts})
        FROM {table}
    """


def make_report(name: str, tally: dict[str, int], duplicate_rows: int, stats: Any,
                as_of_ts: pd.Timestamp | None, deduplicate: bool) -> CleaningReport:
    """The :class:`CleaningReport` from :func:`judge_counts`' tally and :func:`stats_sql`."""
    rows_read, kept_rows, with_id = tally["rows_read"], tally["kept"], tally["with_id"]
    rows_kept, refund_rows, refund_units_total, zero_rows, customers, first_ts, last_ts = stats
    return CleaningReport(
        source=name,
        rows_read=rows_read,
        rows_kept=int(rows_kept),
        dropped_missing_customer_id=rows_read - with_id,
        dropped_after_as_of=with_id - kept_rows,
        dropped_duplicates=duplicate_rows if deduplicate else 0,
        duplicate_rows=duplicate_rows,
        refund_rows=int(refund_rows),
        # the exact billionths, turned into a float once (as _loading.exact_total)
        refund_total=float(int(refund_units_total)) / AMOUNT_UNITS,
        zero_amount_rows=int(zero_rows),
        timestamps_converted_to_utc=tally["converted"],
        customers=int(customers),
        first_day=pd.Timestamp(first_ts).date(),
        last_day=pd.Timestamp(last_ts).date(),
        as_of=as_of_ts.date() if as_of_ts is not None else None,
    )


# --- the pandas loader where the SQL does not read a value ---------------------------


def _fallback(source: str | os.PathLike[str], files: list[Path], single: bool,
              options: dict[str, Any], limits: EngineLimits, reason: str,
              temp_dir: str | None = None) -> CleanTransactions:
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)
    if not single:
        raise DataValidationError(
            f"{source}: {reason}, which read one file at a time ({len(files)} files match). "
            "Suggestion: write ISO 8601 timestamps and plain numbers, or load the files "
            "one by one."
        )
    loaded: LoadResult = load_transactions(files[0], **options)
    con, made = _connect(limits)
    con.register("_loaded", loaded.transactions)
    con.execute("CREATE TEMP VIEW transactions AS SELECT * FROM _loaded")
    return CleanTransactions(con, "transactions", loaded.report, out_of_core=False,
                             temp_directory=made)
