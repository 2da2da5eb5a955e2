"""Point-in-time features, churn labels and training snapshots.

Every feature is defined once, as SQL, in :mod:`churnlens._features_sql`; this module
checks its own arguments (dates, windows), takes transactions clean from the loader
(:func:`churnlens._loading.ensure_clean`: the one transactions contract) and runs those
statements on the embedded engine (DuckDB, for pandas frames and files) or on Spark
(for a PySpark DataFrame, which gives a PySpark DataFrame back, computed natively by
Spark SQL). pandas results come sorted by customer id (and cutoff).

Time rules (``retention.md``): a cutoff or as-of date includes its whole day; the
features at ``as_of`` read the transactions with day ``<= as_of`` only, so adding
later transactions never changes them; the label at cutoff ``c`` with horizon ``H``
reads the days ``(c, c+H]`` and is missing (not "churned") when that horizon is not
fully observed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeAlias

import duckdb
import pandas as pd

from churnlens._engine import Dialect, connect, day_number
from churnlens._features_sql import (
    DEFAULT_WINDOWS_DAYS,
    FEATURES,
    Feature,
    check_windows,
    feature_names,
    features_select_sql,
    labels_select_sql,
    last_day_sql,
    sequence_select_sql,
)
from churnlens._loading import AMOUNT, CUSTOMER, TIMESTAMP, ensure_clean, load_transactions
from churnlens._loading_sql import CleanTransactions
from churnlens._validation import parse_date, require_columns, require_positive_int
from churnlens.exceptions import ChurnlensError, DataValidationError

__all__ = [
    "DEFAULT_WINDOWS_DAYS",
    "FEATURES",
    "Feature",
    "SnapshotSample",
    "build_snapshots",
    "compute_features",
    "compute_labels",
    "create_features_table",
    "feature_names",
    "feature_table_markdown",
    "sample_quotas",
    "training_snapshots",
]

DateLike: TypeAlias = str | dt.date | pd.Timestamp
# A pandas DataFrame (clean or raw), a CSV/Parquet path, the out-of-core view of files
# (_loading_sql.CleanTransactions, run in its connection), or a PySpark DataFrame.
Transactions = Any

_REQUIRED = {CUSTOMER: CUSTOMER, TIMESTAMP: TIMESTAMP, AMOUNT: AMOUNT}
_TX_VIEW = "churnlens_transactions"
_SEQUENCE = "churnlens_sequence"


# --- public API -------------------------------------------------------------------


def compute_features(
    transactions: Transactions,
    as_of: DateLike,
    *,
    windows_days: Sequence[int] = DEFAULT_WINDOWS_DAYS,
) -> Any:
    """Features of every customer acquired by ``as_of``, from history ``<= as_of`` only.

    Parameters
    ----------
    transactions
        The clean transactions of :func:`churnlens.load_transactions` (columns
        ``customer_id``, ``timestamp``, ``amount``); a raw pandas frame or a CSV /
        Parquet path, which is loaded with :func:`~churnlens.load_transactions` first;
        or a PySpark DataFrame with those three columns (rows missing one of them are
        ignored).
    as_of
        The as-of date (its whole day included). Transactions after it are ignored.
    windows_days
        Lengths of the activity windows ``(as_of - w, as_of]`` for the windowed
        features (``occasions_{w}d``, ``spend_{w}d``, ``rate_trend_{w}d``,
        ``basket_trend_{w}d``).

    Returns
    -------
    pandas.DataFrame or pyspark.sql.DataFrame
        One row per customer whose first purchase occasion is on or before
        ``as_of``: ``customer_id`` (as given), ``as_of`` (date), then the features of
        :data:`FEATURES` in order (see ``docs/features.md``). Counts and day numbers
        that are always defined are ``int64``; everything else is ``float64`` with NaN
        where undefined (gap statistics of a single-purchase customer, for example).
        pandas rows are sorted by ``customer_id`` (ascending, as ``sort_values``
        orders the ids: numbers by value, text by code point) with a fresh
        ``RangeIndex``, so callers need not re-sort; a Spark result has no order.

    Examples
    --------
    >>> import pandas as pd
    >>> tx = pd.DataFrame({"customer_id": ["A", "A", "B"],
    ...                    "timestamp": ["2024-01-10", "2024-03-05", "2024-02-01"],
    ...                    "amount": [30.0, 20.0, 50.0]})
    >>> f = compute_features(tx, "2024-03-31")
    >>> f[["customer_id", "frequency", "recency_days", "tenure_days", "monetary_total"]]
      customer_id  frequency  recency_days  tenure_days  monetary_total
    0           A          2            26           81            50.0
    1           B          1            59           59            50.0
    """
    return _run(transactions, _features_builder(as_of, windows_days))


def create_features_table(
    clean: CleanTransactions,
    as_of: DateLike,
    table: str,
    *,
    windows_days: Sequence[int] = DEFAULT_WINDOWS_DAYS,
    extra_columns: str = "",
    sorted_by_customer: bool = False,
) -> int:
    """:func:`compute_features` on an out-of-core view, kept as a DuckDB table.

    The features of every customer of ``clean`` (the open view of
    :func:`churnlens._loading_sql.load_transactions_sql`) at ``as_of``, written to the
    temporary table ``table`` in ``clean.connection`` (its memory limit; beyond it
    DuckDB spills), never read into pandas. The rows are those of
    :func:`compute_features` on the pandas loader's frame of the same file, to the bit
    (a parity test), in no order (``as_of`` is a timestamp, undefined floats NaN).
    ``extra_columns`` (``", expr AS name"``) adds columns computed from the features.
    ``sorted_by_customer``: the rows are stored sorted by customer id (a plain scan
    returns them in that order while the connection's ``preserve_insertion_order`` is on).

    Returns
    -------
    int
        The number of rows (customers).
    """
    build = _features_builder(as_of, windows_days)
    with _duckdb_source(clean) as (con, source, materialise, _dtype):
        sql = build(source, "duckdb", materialise)
        order = " ORDER BY customer_id" if sorted_by_customer else ""
        con.execute(f"CREATE TEMP TABLE {table} AS SELECT *{extra_columns} FROM ({sql}) "
                    f"AS churnlens_features{order}")
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def _features_builder(as_of: DateLike, windows_days: Sequence[int]
                      ) -> Callable[[str, Dialect, Callable[[str], str]], str]:
    """The checked arguments of :func:`compute_features` as its SQL builder."""
    as_of_day = day_number(parse_date(as_of, name="as_of"))
    windows = check_windows(windows_days)

    def build(source: str, dialect: Dialect, materialise: Callable[[str], str]) -> str:
        # One cutoff reads the sequence once: a sub-query, nothing materialised.
        sequence = f"({sequence_select_sql(source, as_of_day, dialect)}) AS sequence"
        return features_select_sql(sequence, [as_of_day], windows, dialect,
                                   date_column="as_of")

    return build


def compute_labels(
    transactions: Transactions,
    cutoff: DateLike,
    horizon_days: int,
    *,
    observed_until: DateLike | None = None,
) -> Any:
    """The churn label at ``cutoff`` with horizon ``horizon_days`` (``retention.md``).

    Parameters
    ----------
    transactions
        As for :func:`compute_features`.
    cutoff
        The cutoff date ``c`` (its whole day belongs to the history).
    horizon_days
        ``H``: the label looks at the days ``(c, c+H]``.
    observed_until
        The last day the data covers. Defaults to the last day with any transaction.
        When ``c + H`` is later, the horizon is not fully observed and the label is
        missing: right-censoring is not churn.

    Returns
    -------
    pandas.DataFrame or pyspark.sql.DataFrame
        ``customer_id``, ``cutoff`` (date), ``churned``: 1 if the customer has no
        purchase occasion in ``(c, c+H]``, 0 if they have one, missing (``<NA>``,
        nullable ``Int8``; NULL on Spark) if ``c + H > observed_until``. One row per
        customer acquired by ``c``; pandas rows sorted by ``customer_id`` (as
        :func:`compute_features`).

    Examples
    --------
    >>> import pandas as pd
    >>> tx = pd.DataFrame({"customer_id": ["A", "A", "B"],
    ...                    "timestamp": ["2024-01-10", "2024-05-20", "2024-02-01"],
    ...                    "amount": [30.0, 25.0, 50.0]})
    >>> labels = compute_labels(tx, "2024-03-31", 91, observed_until="2024-06-30")
    >>> labels
      customer_id     cutoff  churned
    0           A 2024-03-31        0
    1           B 2024-03-31        1

    Without ``observed_until`` the data ends on 2024-05-20, before the horizon does, so
    the labels are missing rather than "churned":

    >>> bool(compute_labels(tx, "2024-03-31", 91)["churned"].isna().all())
    True
    """
    cutoff_day = day_number(parse_date(cutoff, name="cutoff"))
    horizon = require_positive_int(horizon_days, name="horizon_days")
    observed_day = _optional_day(observed_until, name="observed_until")

    def build(source: str, dialect: Dialect, materialise: Callable[[str], str]) -> str:
        observed = str(observed_day) if observed_day is not None else last_day_sql(
            source, dialect)
        return labels_select_sql(source, cutoff_day, horizon, observed, dialect)

    return _run(transactions, build)


def build_snapshots(
    transactions: Transactions,
    cutoffs: Iterable[DateLike],
    *,
    horizon_days: int,
    windows_days: Sequence[int] = DEFAULT_WINDOWS_DAYS,
    observed_until: DateLike | None = None,
) -> Any:
    """Training snapshots: features and churn label at many cutoffs, in one pass.

    The transactions are read and reduced to one row per (customer, day) once; each
    cutoff then only aggregates that compact table. The result equals
    :func:`compute_features` and :func:`compute_labels` at each cutoff.

    Parameters
    ----------
    transactions
        As for :func:`compute_features`.
    cutoffs
        Cutoff dates (for example month ends). Duplicates are ignored.
    horizon_days, observed_until
        As for :func:`compute_labels`.
    windows_days
        As for :func:`compute_features`.

    Returns
    -------
    pandas.DataFrame or pyspark.sql.DataFrame
        One row per (customer acquired by the cutoff, cutoff): ``customer_id``,
        ``cutoff`` (date), the features of :func:`compute_features`, then ``churned``
        (1, 0, or missing when the horizon is not fully observed). pandas rows are
        sorted by ``cutoff``, then ``customer_id`` (as :func:`compute_features`).

    Examples
    --------
    >>> import pandas as pd
    >>> tx = pd.DataFrame({"customer_id": ["A", "A", "B"],
    ...                    "timestamp": ["2024-01-10", "2024-05-20", "2024-02-01"],
    ...                    "amount": [30.0, 25.0, 50.0]})
    >>> snapshots = build_snapshots(tx, ["2024-01-31", "2024-03-31"], horizon_days=91,
    ...                             observed_until="2024-06-30")
    >>> columns = ["customer_id", "cutoff", "frequency", "recency_days", "churned"]
    >>> snapshots[columns]
      customer_id     cutoff  frequency  recency_days  churned
    0           A 2024-01-31          1            21        1
    1           A 2024-03-31          1            81        0
    2           B 2024-03-31          1            59        1
    """
    return _run(transactions, _snapshots_builder(cutoffs, horizon_days, windows_days,
                                                 observed_until))


def _snapshots_builder(
    cutoffs: Iterable[DateLike], horizon_days: int, windows_days: Sequence[int],
    observed_until: DateLike | None,
) -> Callable[[str, Dialect, Callable[[str], str]], str]:
    """The checked arguments of :func:`build_snapshots` as its SQL builder."""
    cutoff_days = sorted({day_number(parse_date(c, name="cutoffs")) for c in _as_list(cutoffs)})
    if not cutoff_days:
        raise ChurnlensError("cutoffs is empty. Suggestion: give at least one cutoff date.")
    horizon = require_positive_int(horizon_days, name="horizon_days")
    windows = check_windows(windows_days)
    observed_day = _optional_day(observed_until, name="observed_until")
    last_needed = cutoff_days[-1] + horizon
    if observed_day is not None:
        last_needed = min(last_needed, max(observed_day, cutoff_days[-1]))

    def build(source: str, dialect: Dialect, materialise: Callable[[str], str]) -> str:
        sequence = materialise(
            sequence_select_sql(source, last_needed, dialect, with_next_day=True))
        observed = str(observed_day) if observed_day is not None else last_day_sql(
            source, dialect)
        # DuckDB: the sequence is a materialised table, and one aggregation per
        # cutoff over it is cheapest. Spark: one aggregation over sequence x cutoffs
        # avoids re-running the sequence's sub-plan once per cutoff.
        strategy = "union" if dialect == "duckdb" else "join"
        return features_select_sql(
            sequence, cutoff_days, windows, dialect, horizon_days=horizon,
            observed_until=observed, strategy=strategy, date_column="cutoff",
        )

    return build


@dataclasses.dataclass(frozen=True)
class SnapshotSample:
    """How the labelled snapshots were sampled for training (``docs/scale.md``).

    Attributes
    ----------
    max_rows
        The most rows asked for (``training.max_snapshot_rows``); ``None``: no limit.
    seed
        The seed of the sampling hash.
    strata
        One ``(cutoff, churned, rows, kept)`` per stratum, by cutoff then label: the
        labelled rows of that cutoff and label, and how many were kept.
    """

    max_rows: int | None
    seed: int
    strata: tuple[tuple[dt.date, int, int, int], ...]

    @property
    def sampled(self) -> bool:
        """Whether any row was left out."""
        return any(kept < rows for _, _, rows, kept in self.strata)

    @property
    def rows_before(self) -> int:
        """Labelled snapshot rows before sampling."""
        return sum(rows for _, _, rows, _ in self.strata)

    @property
    def rows_after(self) -> int:
        """Rows kept (what the models are fitted on)."""
        return sum(kept for _, _, _, kept in self.strata)

    def by_cutoff(self) -> list[dict[str, Any]]:
        """Per cutoff: ``cutoff``, ``rows`` (labelled rows) and ``kept``."""
        out: dict[dt.date, dict[str, Any]] = {}
        for cutoff, _, rows, kept in self.strata:
            entry = out.setdefault(cutoff, {"cutoff": str(cutoff), "rows": 0, "kept": 0})
            entry["rows"] += rows
            entry["kept"] += kept
        return list(out.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``churnlens train/backtest --json``, MLflow)."""
        return {"sampled": self.sampled, "max_rows": self.max_rows, "seed": self.seed,
                "rows_before": self.rows_before, "rows_after": self.rows_after,
                "by_cutoff": self.by_cutoff()}

    def note(self) -> str | None:
        """One sentence for reports when rows were left out, else ``None``."""
        if not self.sampled:
            return None
        return (f"training snapshots sampled: {self.rows_after:,} of {self.rows_before:,} "
                f"labelled rows (at most {self.max_rows:,}; stratified by cutoff and label, "
                f"seed {self.seed})")


def sample_quotas(counts: dict[Any, int], max_rows: int | None) -> dict[Any, int]:
    """Rows each stratum keeps: all of them when the total fits, else ``n * M // N``.

    ``counts`` maps a stratum to its ``n`` rows; ``N`` is their total and ``M``
    ``max_rows`` (``None`` or 0: no limit). Integer arithmetic, so the quotas do not
    depend on the engine; their sum is at most ``M``.

    Examples
    --------
    >>> sample_quotas({"a": 700, "b": 300}, 100)
    {'a': 70, 'b': 30}
    >>> sample_quotas({"a": 7, "b": 3}, None)
    {'a': 7, 'b': 3}
    """
    total = sum(counts.values())
    if not max_rows or total <= max_rows:
        return dict(counts)
    return {key: n * int(max_rows) // total for key, n in counts.items()}


def _sample_sql(table: str, columns: Sequence[str], quotas: dict[tuple[dt.date, int], int],
                seed: int, dialect: Dialect, *, everything: bool) -> str:
    """The labelled rows of ``table``; with ``everything`` False, in each (cutoff, label)
    stratum the ``quota`` rows with the smallest ``md5(customer_id|cutoff|seed)`` (ties,
    which need an md5 collision, by customer id as text). Same SQL on DuckDB and Spark."""
    listed = ", ".join(columns)
    if everything:
        return f"SELECT {listed} FROM {table} WHERE churned IS NOT NULL"
    text = "VARCHAR" if dialect == "duckdb" else "STRING"
    # The cutoff as 'YYYY-MM-DD' on both engines (a TIMESTAMP column on DuckDB, a DATE
    # on Spark).
    key = (f"md5(concat(CAST(customer_id AS {text}), '|', "
           f"CAST(CAST(cutoff AS DATE) AS {text}), '|', '{int(seed)}'))")
    cases = " ".join(f"WHEN cutoff = DATE '{c}' AND churned = {int(y)} THEN {int(q)}"
                     for (c, y), q in quotas.items())
    return f"""
SELECT {listed} FROM (
    SELECT {listed}, ROW_NUMBER() OVER (PARTITION BY cutoff, churned
                                        ORDER BY {key}, CAST(customer_id AS {text}))
                     AS churnlens_rank
    FROM {table} WHERE churned IS NOT NULL
) AS ranked
WHERE churnlens_rank <= CASE {cases} ELSE 0 END
"""


def training_snapshots(
    transactions: Transactions,
    cutoffs: Iterable[DateLike],
    *,
    horizon_days: int,
    windows_days: Sequence[int] = DEFAULT_WINDOWS_DAYS,
    observed_until: DateLike | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, SnapshotSample]:
    """The labelled snapshots the models are fitted on, sampled by the engine, in pandas.

    :func:`build_snapshots` without the rows whose label is missing, kept where the
    transactions are (DuckDB, in the out-of-core view's connection, spilling beyond
    its memory limit; or Spark) and sampled there to at most ``max_rows`` rows,
    stratified by cutoff and label (:func:`sample_quotas`: every row when they fit,
    else ``n * max_rows // N`` per stratum; within a stratum the rows with the smallest
    ``md5(customer_id || '|' || cutoff || '|' || seed)``). Only the sample reaches
    pandas. Both engines draw the same rows, and with every row kept the frame equals
    ``build_snapshots(...)`` filtered to labelled rows.

    Parameters
    ----------
    transactions
        A clean pandas frame, the out-of-core view of files
        (:class:`~churnlens._loading_sql.CleanTransactions`) or a PySpark DataFrame.
    cutoffs, horizon_days, windows_days, observed_until
        As for :func:`build_snapshots`.
    max_rows
        The most rows to return; ``None`` or 0: every labelled row.
    seed
        Seed of the sampling hash.

    Returns
    -------
    tuple of (pandas.DataFrame, SnapshotSample)
        The rows, sorted by ``cutoff`` then ``customer_id``, ``churned`` never missing;
        and the rows before and after sampling per stratum.
    """
    if max_rows is not None and max_rows < 0:
        raise ChurnlensError(f"max_rows must be 0 or more, got {max_rows}.")
    build = _snapshots_builder(cutoffs, horizon_days, windows_days, observed_until)
    if _is_spark(transactions):
        return _training_snapshots_spark(transactions, build, max_rows, seed)
    with _duckdb_source(transactions) as (con, source, materialise, customer_dtype):
        table = materialise(build(source, "duckdb", materialise))
        columns = list(con.sql(f"SELECT * FROM {table} LIMIT 0").columns)
        counts = {(cutoff, int(label)): int(n) for cutoff, label, n in con.execute(
            f"SELECT cutoff, churned, count(*) FROM {table} WHERE churned IS NOT NULL "
            "GROUP BY cutoff, churned").fetchall()}
        quotas = sample_quotas(counts, max_rows)
        out = _arrow_to_pandas(con.sql(_sample_sql(
            table, columns, quotas, seed, "duckdb", everything=quotas == counts)))
    out = _tidy_pandas(out, customer_dtype if customer_dtype is not None
                       else out[CUSTOMER].dtype)
    return out, _sample_report(counts, quotas, max_rows, seed)


def _training_snapshots_spark(
    frame: Any, build: Callable[[str, Dialect, Callable[[str], str]], str],
    max_rows: int | None, seed: int,
) -> tuple[pd.DataFrame, SnapshotSample]:
    snapshots = _run_spark(frame, build)
    spark = snapshots.sparkSession
    view = f"churnlens_snapshots_{uuid.uuid4().hex}"
    snapshots.createOrReplaceTempView(view)
    try:
        counts = {(row[0], int(row[1])): int(row[2]) for row in spark.sql(
            f"SELECT cutoff, churned, count(*) FROM {view} WHERE churned IS NOT NULL "
            "GROUP BY cutoff, churned").collect()}
        quotas = sample_quotas(counts, max_rows)
        sample = spark.sql(_sample_sql(view, list(snapshots.columns), quotas, seed, "spark",
                                       everything=quotas == counts))
        # Arrow straight from the engine (Spark Connect too): PySpark's own pandas
        # conversion predates pandas 3.
        out = sample.toArrow().to_pandas()
    finally:
        spark.catalog.dropTempView(view)
    return _tidy_pandas(out, out[CUSTOMER].dtype), _sample_report(counts, quotas, max_rows,
                                                                    seed)


def _sample_report(counts: dict[tuple[Any, int], int], quotas: dict[tuple[Any, int], int],
                   max_rows: int | None, seed: int) -> SnapshotSample:
    strata = tuple((pd.Timestamp(c).date(), y, n, quotas[(c, y)])
                   for (c, y), n in sorted(counts.items(), key=lambda kv: (
                       pd.Timestamp(kv[0][0]), kv[0][1])))
    return SnapshotSample(max_rows=max_rows or None, seed=int(seed), strata=strata)


def feature_table_markdown() -> str:
    """The feature registry as a Markdown table (name, unit, type, definition).

    This is what ``docs/features.md`` shows; a test checks that they agree.
    Windowed features appear once, with ``{w}`` standing for each window length.

    Returns
    -------
    str
        A Markdown table, one row per feature, ending with a newline.

    Examples
    --------
    >>> print(feature_table_markdown().splitlines()[0])
    | feature | unit | type | definition |
    """
    lines = [
        "| feature | unit | type | definition |",
        "|---|---|---|---|",
    ]
    for feature in FEATURES:
        kind = "integer" if feature.dtype == "int64" else "float (NaN if undefined)"
        definition = feature.definition.replace("|", "\\|")
        lines.append(f"| `{feature.name}` | {feature.unit} | {kind} | {definition} |")
    return "\n".join(lines) + "\n"


def features_document() -> str:
    """The whole ``docs/features.md`` page, generated from :data:`FEATURES`."""
    windows = ", ".join(str(w) for w in DEFAULT_WINDOWS_DAYS)
    return (
        "# Features\n\n"
        "<!-- Generated from churnlens._features_sql.FEATURES by "
        "`python docs/update_features.py`; do not edit by hand. -->\n\n"
        "`churnlens.compute_features(transactions, as_of)` returns one row per customer "
        "acquired by `as_of` (first purchase occasion on or before it), computed from "
        "the transactions with day `<= as_of` only: `customer_id`, `as_of`, then the "
        "features below in this order. `build_snapshots` returns the same features "
        "per `(customer_id, cutoff)` plus the label `churned`. pandas results come "
        "sorted by `customer_id` (snapshots: by `cutoff`, then `customer_id`), so "
        "callers never re-sort; Spark results have no order.\n\n"
        "The transactions are those of `churnlens.load_transactions` (the one "
        "transactions contract, in `churnlens._loading`): a frame that does not meet it "
        "yet (text dates, a time zone, integer amounts...) goes through the loader "
        "first, with its rules and errors; time zones are converted to UTC.\n\n"
        "A **purchase occasion** is a distinct (customer, day) whose net amount is "
        "positive; refunds (negative amounts) reduce money totals but never create an "
        "occasion "
        "(`retention.md`). Days are calendar days; a **gap** is the number of days "
        "between two consecutive occasions. Amounts are added exactly, as whole "
        "billionths of the currency unit, so money features do not depend on the order "
        "in which the engine adds them, and a day whose refund cancels its items "
        "(10.10 + 5.20 - 15.30) nets to exactly 0.\n\n"
        f"Windowed features exist once per window `w` in `windows_days` (default "
        f"{windows}), for the window `(as_of - w, as_of]`: `occasions_30d`, "
        "`spend_30d`, ...\n\n"
        + feature_table_markdown()
        + "\n## Label\n\n"
        "`churned` at cutoff `c` with horizon `H` (`compute_labels`, `build_snapshots`): "
        "1 if the customer has no purchase occasion in `(c, c+H]`, 0 if they have one, "
        "missing (NA / NULL) when `c + H` is after `observed_until` (default: the last "
        "day of the data): a horizon that is not fully observed is censored, not churn.\n"
        + _richer_inputs_section()
    )


def _richer_inputs_section() -> str:
    """The section of the richer inputs' features (``_input_features_sql``'s registry)."""
    from churnlens._input_features_sql import input_features_markdown

    return (
        "\n## Features from richer inputs\n\n"
        "With the transactions' optional columns, a customer table, an event table or a "
        "long enough history, a model also learns the columns below (`churnlens."
        "_input_features`; which ones a model uses is decided once at training, from data "
        "on or before its as-of date, and kept in the model). They are computed at every "
        "cutoff from rows dated on or before it only, by the same SQL on DuckDB and Spark, "
        "and joined on `(customer_id, cutoff)` (`as_of` when scoring). A **purchase row** "
        "is a transaction row with a positive amount; money is added exactly, as above. "
        "The `calendar` group is off unless asked (`--calendar`, `calendar=True`; "
        "[training.md](training.md) says why); `calendar=None` learns it when the history "
        "before the training as-of date spans at least 365 + H days (H: the horizon).\n\n"
        + input_features_markdown()
    )


# --- running ----------------------------------------------------------------------


def _run(
    transactions: Transactions,
    build: Callable[[str, Dialect, Callable[[str], str]], str],
) -> Any:
    """Run the SQL that ``build(source, dialect, materialise)`` returns on the right engine.

    ``materialise(select_sql)`` turns a SELECT into something a FROM clause can read:
    a materialised temporary table on DuckDB, a parenthesised sub-query on Spark
    (whose optimiser plans the whole statement at once).
    """
    if _is_spark(transactions):
        return _run_spark(transactions, build)
    with _duckdb_source(transactions) as (con, source, materialise, customer_dtype):
        sql = build(source, "duckdb", materialise)
        out = _arrow_to_pandas(con.sql(sql))
    return _tidy_pandas(out, customer_dtype if customer_dtype is not None
                        else out[CUSTOMER].dtype)


@contextlib.contextmanager
def _duckdb_source(
    transactions: Transactions,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, str, Callable[[str], str], Any]]:
    """A DuckDB connection, the name of the transactions in it (``customer_id``,
    ``event_time``, ``amount``), a ``materialise`` and the pandas id dtype (or None).

    A pandas frame (or a path, read by the pandas loader) is registered in a fresh
    connection, closed afterwards. The out-of-core view of files
    (:class:`~churnlens._loading_sql.CleanTransactions`) is read in its own connection
    (its memory limit and spill folder), through a temporary view; the temporary
    objects made here are dropped afterwards and the connection stays open.
    """
    if isinstance(transactions, CleanTransactions):
        con = transactions.connection
        tag = uuid.uuid4().hex
        source = f"churnlens_transactions_{tag}"
        made: list[tuple[str, str]] = [("VIEW", source)]
        con.execute(f'CREATE TEMP VIEW {source} AS SELECT customer_id, "timestamp" AS '
                    f"event_time, amount FROM {transactions.view}")

        def materialise_view(select_sql: str) -> str:
            name = f"churnlens_table_{tag}_{len(made)}"
            con.execute(f"CREATE TEMP TABLE {name} AS {select_sql}")
            made.append(("TABLE", name))
            return name

        try:
            yield con, source, materialise_view, None
        finally:
            for kind, name in reversed(made):
                con.execute(f"DROP {kind} IF EXISTS {name}")
        return
    frame = _pandas_transactions(transactions)
    con = connect()
    try:
        con.register(_TX_VIEW, frame[[CUSTOMER, TIMESTAMP, AMOUNT]].rename(
            columns={TIMESTAMP: "event_time"}))
        count = [0]

        def materialise(select_sql: str) -> str:
            name = f"{_SEQUENCE}_{count[0]}" if count[0] else _SEQUENCE
            count[0] += 1
            con.execute(f"CREATE TEMP TABLE {name} AS {select_sql}")
            return name

        yield con, _TX_VIEW, materialise, frame[CUSTOMER].dtype
    finally:
        con.close()


def _arrow_to_pandas(relation: duckdb.DuckDBPyRelation) -> pd.DataFrame:
    # Through Arrow: about twice as fast as .df() for wide results; the Arrow
    # buffers are released column by column as pandas takes them over.
    table = relation.to_arrow_table()
    out = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    return out


def _run_spark(frame: Any, build: Callable[[str, Dialect, Callable[[str], str]], str]) -> Any:
    require_columns(list(frame.columns), _REQUIRED, source="the Spark DataFrame")
    spark = frame.sparkSession
    view = f"churnlens_transactions_{uuid.uuid4().hex}"
    frame.selectExpr(
        f"`{CUSTOMER}` AS customer_id",
        f"`{TIMESTAMP}` AS event_time",
        f"CAST(`{AMOUNT}` AS DOUBLE) AS amount",
    ).where("customer_id IS NOT NULL AND event_time IS NOT NULL AND amount IS NOT NULL"
            ).createOrReplaceTempView(view)
    try:
        sql = build(view, "spark", lambda select_sql: f"({select_sql})")
        # Analysed now: the plan no longer needs the view's name once this returns.
        return spark.sql(sql)
    finally:
        spark.catalog.dropTempView(view)


def _tidy_pandas(out: pd.DataFrame, customer_dtype: Any) -> pd.DataFrame:
    if out[CUSTOMER].dtype != customer_dtype:
        out[CUSTOMER] = out[CUSTOMER].astype(customer_dtype)
    for column in ("as_of", "cutoff"):
        if column in out:
            out[column] = out[column].astype("datetime64[us]")
    for column in out.columns:
        if column in (CUSTOMER, "as_of", "cutoff", "churned"):
            continue
        # DuckDB hands integer columns over as nullable Int64 when it cannot rule out
        # NULLs; these are never NULL (see FEATURES), so plain int64.
        if isinstance(out[column].dtype, pd.Int64Dtype):
            out[column] = out[column].astype("int64")
    if "churned" in out:
        out["churned"] = out["churned"].astype("Int8")
    # The documented order: by customer id (within each cutoff for snapshots).
    keys = ["cutoff", CUSTOMER] if "cutoff" in out else [CUSTOMER]
    return out.sort_values(keys, kind="stable", ignore_index=True)


def _is_spark(obj: Any) -> bool:
    """A PySpark DataFrame (classic or Connect), detected without importing pyspark."""
    return type(obj).__module__.startswith("pyspark.") and hasattr(obj, "sparkSession")


def _pandas_transactions(transactions: Transactions, *, optional: Sequence[str] = ()
                         ) -> pd.DataFrame:
    """Clean transactions for DuckDB: the loader's contract, checked by the loader
    (``optional``: the optional columns whose rules apply too, when present)."""
    if isinstance(transactions, str | os.PathLike):
        # Follow-up: read Parquet/CSV out of core with DuckDB instead of pandas.
        return load_transactions(transactions).transactions
    if not isinstance(transactions, pd.DataFrame):
        raise DataValidationError(
            f"transactions must be a pandas DataFrame, a CSV/Parquet path, the out-of-core "
            f"view or a PySpark DataFrame, got {type(transactions).__name__}. Suggestion: "
            "load them with churnlens.load_transactions."
        )
    present = [c for c in optional if c in transactions.columns]
    return ensure_clean(transactions, optional=present) if present else ensure_clean(
        transactions)


def _optional_day(value: DateLike | None, *, name: str) -> int | None:
    return None if value is None else day_number(parse_date(value, name=name))


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, str | dt.date | pd.Timestamp | int):
        return [values]
    return list(values)
