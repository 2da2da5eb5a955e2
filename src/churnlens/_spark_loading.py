"""The transactions contract run by Spark: the same rules, checks and report, distributed.

:func:`load_transactions_spark` applies the rules of
:func:`churnlens._loading.load_transactions` to a PySpark DataFrame or to CSV/Parquet
files read by Spark, and returns the clean rows as a Spark DataFrame with the cleaning
report. It is :func:`churnlens._loading_sql.load_transactions_sql` in the Spark dialect:
the column rules are :class:`churnlens._loading_sql._Rules` written in Spark SQL, the
checks and the report are the same SQL (``check_sql``, ``duplicates_sql``,
``stats_sql``) and the same Python judging them (``judge_counts``, ``make_report``), so
the messages and the error classes are the loader's own:

- rows the SQL does not accept (*suspicious*) are collected to the driver, alone and
  with their row numbers, and given to the pandas rules, which raise the loader's error;
- if the pandas rules accept them after all (a date form only pandas reads,
  ``time_format``, an unusual column type) or Spark cannot read the file, a single file
  is loaded by the pandas loader and handed to Spark (``SparkLoadResult.distributed``
  is then False); several files are refused with a message saying why;
- the refund total is an exact sum of whole billionths (``DECIMAL(38,0)``), equal to
  the bit to the pandas loader's.

Timestamps come out as ``TIMESTAMP_NTZ``: naive, in UTC (offsets converted), so the
day of a row does not depend on the session's time zone. Nothing here uses
``sparkContext``: it runs on Spark Connect as on a classic session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from churnlens._loading import (
    AMOUNT,
    CATEGORY,
    CHANNEL,
    CUSTOMER,
    DISCOUNT,
    QUANTITY,
    TIMESTAMP,
    CleaningReport,
    arrow_frame,
    check_csv_header,
    check_parquet_columns,
    check_time_format,
    load_transactions,
    optional_roles,
)
from churnlens._loading_sql import (
    _ident,
    _resolve,
    _Rules,
    after_as_of_sql,
    check_sql,
    clean_rows_sql,
    duplicates_sql,
    is_file_source,
    judge_counts,
    make_report,
    stats_sql,
)
from churnlens._validation import parse_date, require_columns, require_plausible_date
from churnlens.exceptions import ChurnlensError, DataValidationError

__all__ = [
    "SparkLoadResult",
    "is_spark_frame",
    "load_transactions_spark",
    "spark_session",
    "spark_session_for",
]

#: Spark's type names (``DataFrame.dtypes``) in the DuckDB names the rules are chosen by.
#: Spark's TIMESTAMP is an instant (DuckDB's TIMESTAMPTZ); TIMESTAMP_NTZ is naive.
_TYPES = {"string": "VARCHAR", "tinyint": "TINYINT", "smallint": "SMALLINT",
          "int": "INTEGER", "bigint": "BIGINT", "float": "FLOAT", "double": "DOUBLE",
          "date": "DATE", "timestamp": "TIMESTAMPTZ", "timestamp_ntz": "TIMESTAMP"}
_PARTITION_BITS = 33  # monotonically_increasing_id: partition id above, row below


@dataclasses.dataclass(frozen=True)
class SparkLoadResult:
    """Clean transactions on Spark and their cleaning report.

    Unpacks as ``transactions, report`` (as :class:`churnlens._loading.LoadResult`).

    Attributes
    ----------
    transactions
        A PySpark DataFrame: ``customer_id``, ``timestamp`` (``TIMESTAMP_NTZ``, UTC),
        ``amount`` (double) and the optional columns asked for. Lazy: each action reads
        the input again; cache it if you use it several times.
    report
        The :class:`~churnlens._loading.CleaningReport`, equal to the pandas loader's.
    distributed
        False when the pandas loader read the file (values only it reads).
    """

    transactions: Any
    report: CleaningReport
    distributed: bool = True

    def __iter__(self) -> Iterator[Any]:
        yield self.transactions
        yield self.report


def is_spark_frame(value: object) -> bool:
    """Whether ``value`` is a PySpark DataFrame (classic or Spark Connect), cheaply."""
    kind = type(value)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pyspark.")


def spark_session(master: str, app_name: str = "churnlens", *,
                  config: Mapping[str, str] | None = None) -> tuple[Any, bool]:
    """The active Spark session, or a new one on ``master``; and whether it was started.

    A new session is in UTC, without UI, its executors running this interpreter, with
    ``config``'s settings on top. Stop it (``session.stop()``) when you started it.
    ``sparkContext`` is not used.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master).appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(max(4, 2 * (os.cpu_count() or 1))))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")
        .config("spark.driver.memory", os.environ.get("CHURNLENS_SPARK_DRIVER_MEMORY", "2g"))
    )
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate(), True


@contextlib.contextmanager
def spark_session_for(master: str, app_name: str = "churnlens") -> Iterator[Any]:
    """:func:`spark_session` as a context: stops the session on exit if it started it.

    Raises
    ------
    ChurnlensError
        PySpark is not installed.
    """
    try:
        import pyspark  # noqa: F401 (only whether it is there)
    except ImportError:
        raise ChurnlensError(
            "--engine spark needs PySpark, which is not installed. Suggestion: "
            "pip install 'churnlens[spark]' (and Java 17), or use --engine duckdb.") from None
    session, started = spark_session(master, app_name)
    try:
        yield session
    finally:
        if started:
            session.stop()


def load_transactions_spark(
    source: Any,
    *,
    spark: Any = None,
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
) -> SparkLoadResult:
    """:func:`~churnlens._loading.load_transactions` on Spark.

    Parameters
    ----------
    source
        A PySpark DataFrame, or a local CSV or Parquet path: one file, a glob
        (``"exports/*.parquet"``) or a directory of Parquet files.
    spark
        The SparkSession reading a path (default: the active session). Not needed for a
        DataFrame (its own session).
    customer_col, time_col, amount_col, order_col, quantity_col, category_col, \
channel_col, discount_col, extra_cols, as_of, time_format, deduplicate, delimiter, \
max_staleness_days
        As in :func:`~churnlens._loading.load_transactions`.

    Returns
    -------
    SparkLoadResult
        The clean rows (a lazy Spark DataFrame) and the cleaning report.

    Raises
    ------
    DataValidationError, EmptyDataError
        Where :func:`~churnlens._loading.load_transactions` raises, with its message.
    ChurnlensError
        A path without a Spark session to read it.
    """
    columns = {CUSTOMER: customer_col, TIMESTAMP: time_col, AMOUNT: amount_col}
    optional = optional_roles(order_col=order_col, quantity_col=quantity_col,
                              category_col=category_col, channel_col=channel_col,
                              discount_col=discount_col)
    wanted = {**columns, **optional, **{name: name for name in extra_cols}}
    options: dict[str, Any] = dict(
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
        load_transactions(pd.DataFrame(), **options)  # raises the loader's message

    if is_spark_frame(source):
        spark = source.sparkSession
        found = list(source.columns)
        require_columns(found, columns, source="the DataFrame")
        missing = [name for name in wanted.values() if name not in found]
        if missing:
            require_columns(found, {name: name for name in missing}, source="the DataFrame")

        def on_driver(reason: str) -> SparkLoadResult:
            # values only the pandas rules read: those rules, on the collected frame
            loaded = load_transactions(source.toPandas(), **options)
            return SparkLoadResult(_from_pandas(spark, loaded.transactions), loaded.report,
                                   distributed=False)

        if len(set(found)) < len(found) or time_format is not None:
            return on_driver("repeated column names or --time-format")
        raw = source.select(*[source[_ident(name, "spark")].alias(role)
                              for role, name in wanted.items()])
        return _run(spark, raw, "DataFrame", wanted, as_of_ts, max_staleness_days,
                    deduplicate, file_rows=False, fallback=on_driver)

    if not is_file_source(source):
        raise DataValidationError(
            f"transactions must be a file path or a PySpark DataFrame, got "
            f"{type(source).__name__}. Suggestion: pass a CSV/Parquet path or a DataFrame.")
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            raise ChurnlensError(
                f"{source}: no Spark session to read it with. Suggestion: pass spark= "
                "(a SparkSession) or start one (churnlens._spark_loading.spark_session).")
    files, name, kind = _resolve(source)
    is_dir = Path(source).is_dir()
    single = len(files) == 1 and not is_dir and not any(c in str(source) for c in "*?[")

    def fallback(reason: str) -> SparkLoadResult:
        if not single:
            raise DataValidationError(
                f"{source}: {reason}, which read one file at a time ({len(files)} files "
                "match). Suggestion: write ISO 8601 timestamps and plain numbers, or load "
                "the files one by one.")
        loaded = load_transactions(files[0], **options)
        return SparkLoadResult(_from_pandas(spark, loaded.transactions), loaded.report,
                               distributed=False)

    header: list[str] = []
    for path in files:
        if kind == "parquet":
            keys = {part.split("=", 1)[0] for part in path.parts[:-1] if "=" in part}
            try:
                check_parquet_columns(
                    path, {r: c for r, c in wanted.items() if c not in keys}, columns)
            except (pa.ArrowException, OSError):
                return fallback("the file is not readable Parquet")
        else:
            delimiter = check_csv_header(path, wanted, columns, delimiter)
    if time_format is not None:
        return fallback("--time-format is read by the pandas rules")
    try:
        if kind == "parquet":
            paths = [str(source)] if is_dir else [str(p) for p in files]
            frame = spark.read.option("mergeSchema", "true").parquet(*paths)
            raw = frame.select(*[frame[_ident(name, "spark")].alias(role)
                                 for role, name in wanted.items()])
        else:
            header = _csv_header(files[0], delimiter)
            raw = _read_csv(spark, files, header, delimiter)
            raw = raw.select(*[raw[f"_c{header.index(name)}"].alias(role)
                               for role, name in wanted.items()])
        return _run(spark, raw, name, wanted, as_of_ts, max_staleness_days, deduplicate,
                    file_rows=True, fallback=fallback, text=kind == "csv")
    except ChurnlensError:
        raise
    except Exception as exc:  # Spark cannot read it: the pandas reader names the problem
        if not _is_spark_error(exc):
            raise
        return fallback(f"Spark cannot read it ({' '.join(str(exc).split())[:200]})")


# --- reading ----------------------------------------------------------------------


def _csv_header(path: Path, delimiter: str | None) -> list[str]:
    import csv
    import io

    from churnlens._loading import _read_header_line

    return next(csv.reader(io.StringIO(_read_header_line(path)), delimiter=delimiter or ","))


def _read_csv(spark: Any, files: list[Path], header: list[str], delimiter: str | None) -> Any:
    """Every column as text (as the pandas loader reads CSV), by position: ``_c0 ..``."""
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField(f"_c{i}", StringType()) for i in range(len(header))])
    return (spark.read.schema(schema).option("header", True)
            .option("sep", delimiter or ",").option("quote", '"').option("escape", '"')
            .option("mode", "FAILFAST").option("encoding", "UTF-8")
            # quoted fields may hold line breaks (the pandas reader reads them): a file
            # is then read by one task, as a compressed file is anyway
            .option("multiLine", True)
            .csv([str(p) for p in files]))


def _is_spark_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("pyspark", "py4j"))


def _from_pandas(spark: Any, frame: pd.DataFrame) -> Any:
    """The pandas loader's clean frame on Spark, timestamps as naive ``TIMESTAMP_NTZ``."""
    text = frame.assign(**{TIMESTAMP: frame[TIMESTAMP].dt.strftime("%Y-%m-%d %H:%M:%S.%f")})
    if text[CUSTOMER].dtype != "int64":
        text[CUSTOMER] = text[CUSTOMER].astype(object)
    for role in (CATEGORY, CHANNEL):  # pandas' NA as Spark's NULL
        if role in text:
            text[role] = text[role].astype(object).where(text[role].notna(), None)
    loaded = spark.createDataFrame(text)
    ts = _ident(TIMESTAMP, "spark")
    return loaded.withColumn(TIMESTAMP, loaded[ts].cast("timestamp_ntz"))


# --- the contract -----------------------------------------------------------------


def _run(spark: Any, raw: Any, name: str, wanted: dict[str, str],
         as_of_ts: pd.Timestamp | None, max_staleness_days: int | None, deduplicate: bool,
         *, file_rows: bool, fallback: Callable[[str], SparkLoadResult],
         text: bool = False) -> SparkLoadResult:
    """The checks and the report on ``raw`` (the wanted columns, named by role).

    ``text``: ``raw`` is text Spark decoded from a file. Spark replaces bytes that are
    not UTF-8 with U+FFFD where the pandas reader refuses the file: a row holding that
    character sends the file to the pandas reader, which says what is wrong (or, for a
    genuine U+FFFD, reads it).
    """
    types = {role: _TYPES.get(kind, kind.upper()) for role, kind in raw.dtypes}
    types = {role: ("DECIMAL" if kind.startswith("DECIMAL") else kind)
             for role, kind in types.items()}
    rules = _Rules(wanted, types, dialect="spark")
    if not rules.handled:
        return fallback(f"column types {rules.unhandled} are read by the pandas rules")
    replaced = " OR ".join(f"contains({_ident(role, 'spark')}, '\\uFFFD')" for role in wanted)
    parsed = raw.selectExpr(*rules.parsed_columns(),
                            f"coalesce({replaced if text else 'false'}, false) AS _replaced")
    after = after_as_of_sql(as_of_ts, "spark")
    counts = tuple(spark.sql(check_sql("{parsed}", QUANTITY in wanted, after, "spark",
                                       ", count(*) FILTER (WHERE _replaced) AS replaced",
                                       discount=DISCOUNT in wanted),
                             parsed=parsed).collect()[0])
    if counts[-1]:
        return fallback("text that is not UTF-8 (Spark replaced it)")
    counts = counts[:-1]
    tally: dict[str, int] = {}
    outcome = judge_counts(counts, name, wanted, as_of_ts, max_staleness_days, tally,
                           lambda role, flag: _suspicious(parsed, role, flag),
                           file_rows=file_rows)
    if outcome is not None:
        return fallback(outcome)
    kept = parsed.where(f"customer_id IS NOT NULL AND NOT ({after})")
    duplicates = spark.sql(duplicates_sql("{kept}", wanted, "spark"), kept=kept).collect()[0][0]
    clean = spark.sql(clean_rows_sql("{kept}", wanted, deduplicate, "spark"), kept=kept)
    stats = tuple(spark.sql(stats_sql("{clean}", "spark"), clean=clean).collect()[0])
    report = make_report(name, tally, int(duplicates or 0), stats, as_of_ts, deduplicate)
    return SparkLoadResult(clean, report)


def _suspicious(parsed: Any, role: str, flag: str) -> pd.Series:
    """The raw values of the flagged rows (with an id) on the driver, by row number.

    A row's number is its position in the scan: the rows of the partitions before its
    own plus its place in its partition (``monotonically_increasing_id``'s low bits).
    Only the flagged rows and one count per partition come to the driver.
    """
    from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

    tagged = parsed.select(
        "*", F.spark_partition_id().alias("_part"),
        F.monotonically_increasing_id().alias("_mid"))
    sizes = dict(tagged.groupBy("_part").count().collect())
    offsets, total = {}, 0
    for part in sorted(sizes):
        offsets[part], total = total, total + int(sizes[part])
    bad = tagged.where(f"customer_id IS NOT NULL AND {flag}").select(
        F.col(_ident("raw_" + role, "spark")).alias("value"), "_part", "_mid")
    frame = arrow_frame(bad.toArrow())
    low = frame["_mid"].to_numpy() - (frame["_part"].to_numpy().astype("int64")
                                      << _PARTITION_BITS)
    rows = frame["_part"].map(offsets).to_numpy() + low
    values = frame["value"]
    values.index = pd.Index(rows)
    return values.sort_index()
