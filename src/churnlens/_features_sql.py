"""The feature definitions, written once as SQL that DuckDB and Spark SQL both run.

Every feature is one entry of :data:`FEATURES`: its name, unit, a plain-language
definition (rendered into ``docs/features.md``) and the SQL expression that computes
it. The expressions read a handful of per-(customer, cutoff) aggregates
(:data:`AGGREGATES`), which are computed from one row per (customer, day).

Dates are integer day numbers (days since 1970-01-01), so the statements are the
same text for both engines; the only dialect pieces are in :data:`_DIALECTS`
(how a timestamp becomes a day number and a day number a date).

The three stages:

1. ``daily``: one row per (customer, day) with the day's net amount and refunds,
   from the transactions up to the last day any cutoff (or label horizon) needs.
   Money is summed exactly, in whole billionths (``_engine.amount_units_sql``), and
   becomes a float once, in the per-cutoff aggregates: the features do not depend
   on the order in which a multi-threaded engine adds.
2. ``sequence``: the days flagged as purchase occasions (net amount > 0, as in
   ``retention.md``), each occasion with the previous and next occasion day and the
   customer's first occasion day (one window pass per customer, the only sort).
3. per cutoff ``c``: aggregate the sequence rows with ``day <= c`` per customer,
   then derive the features. Several cutoffs are computed from the same
   ``sequence`` (one pass over the transactions, then one aggregation per cutoff
   over the compact daily table), either as a ``UNION ALL`` of one aggregation per
   cutoff or as one aggregation over ``sequence JOIN cutoffs``.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

from churnlens._engine import (
    Dialect,
    amount_from_units_sql,
    amount_units_sql,
    day_sql,
    is_occasion_sql,
)
from churnlens.exceptions import ChurnlensError

__all__ = [
    "AGGREGATES",
    "DEFAULT_WINDOWS_DAYS",
    "FEATURES",
    "Feature",
    "check_windows",
    "expand_features",
    "feature_names",
    "features_select_sql",
    "labels_select_sql",
    "last_day_sql",
    "sequence_select_sql",
]

DEFAULT_WINDOWS_DAYS: tuple[int, ...] = (30, 90, 180, 365)

# The dialect pieces of the output: how a day number becomes the date column, and what
# an undefined float feature is. DuckDB hands its result to pandas through Arrow, so it
# gives a TIMESTAMP (Arrow -> datetime64 directly; a DATE becomes Python date objects,
# converted again afterwards: 0.5 s for 9 million snapshot rows) and NaN rather than
# NULL (no validity bitmap for Arrow to turn into NaN). pandas shows both the same way.
# Spark keeps SQL's DATE and NULL.
_DIALECTS: dict[str, dict[str, str]] = {
    "duckdb": {
        "date_from_day": "CAST(DATE '1970-01-01' + {day} AS TIMESTAMP)",
        "double": "COALESCE(CAST({sql} AS DOUBLE), CAST('NaN' AS DOUBLE))",
    },
    "spark": {
        "date_from_day": "date_add(DATE '1970-01-01', {day})",
        "double": "CAST({sql} AS DOUBLE)",
    },
}


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature: name, unit, definition and the SQL that computes it.

    ``name``, ``definition`` and ``sql`` may contain ``{w}``: the feature then exists
    once per activity window of ``w`` days (``windows_days``).

    Attributes
    ----------
    name
        Column name, units included (``recency_days``, ``spend_{w}d``).
    unit
        Unit shown in ``docs/features.md`` (days, occasions, currency, ratio...).
    dtype
        ``"int64"`` (always defined) or ``"float64"`` (NaN where undefined).
    definition
        One sentence for the docs.
    sql
        The SQL expression, shared by DuckDB and Spark SQL.
    """

    name: str
    unit: str
    dtype: str  # "int64" (always defined) or "float64" (NaN where undefined)
    definition: str
    sql: str

    @property
    def windowed(self) -> bool:
        """Whether the feature exists once per window (its name contains ``{w}``)."""
        return "{w}" in self.name


# Per (customer, cutoff) aggregates over the sequence rows with day <= c (``{c}``
# is the cutoff day). Columns of the sequence: day, net_units, refund_units (exact
# integers, see _engine.amount_units_sql), is_occasion (1/0), occasion_day,
# previous_day, next_day, first_day (the last four only on occasion rows:
# previous/next occasion day, the customer's first occasion).
AGGREGATES: tuple[tuple[str, str], ...] = (
    ("n_occasions", "SUM(is_occasion)"),
    ("first_day", "MIN(occasion_day)"),
    ("last_day", "MAX(occasion_day)"),
    # previous_day grows along the occasions, so its maximum is the occasion before
    # the last one
    ("before_last_day", "MAX(previous_day)"),
    ("second_day", "MIN(CASE WHEN previous_day IS NOT NULL THEN day END)"),
    ("net_total", amount_from_units_sql("SUM(net_units)")),
    ("refunds", amount_from_units_sql("SUM(refund_units)")),
    ("repeat_net_total",
     amount_from_units_sql("SUM(CASE WHEN previous_day IS NOT NULL THEN net_units END)")),
    ("gap_square_sum", "SUM(CAST(day - previous_day AS BIGINT) * (day - previous_day))"),
    ("gap_median", "MEDIAN(CAST(day - previous_day AS DOUBLE))"),
    ("last_quarter_occasions",
     "SUM(CASE WHEN is_occasion = 1 AND 4 * (day - first_day) >= 3 * ({c} - first_day) "
     "THEN 1 ELSE 0 END)"),
)
# An aggregate a dialect computes another way, to the same value. DuckDB's MEDIAN
# aggregate stops scaling past about a million groups (2M customers: 105 s instead of
# 25 s and twice the memory, docs/scale-profile.md); its list form is the same median
# function over each group's values, the same value bit for bit.
_DIALECT_AGGREGATES: dict[str, dict[str, str]] = {
    "duckdb": {"gap_median": "list_median(LIST(CAST(day - previous_day AS DOUBLE)))"},
    "spark": {},
}
WINDOW_AGGREGATES: tuple[tuple[str, str], ...] = (
    ("window_occasions_{w}", "SUM(CASE WHEN day > {c} - {w} THEN is_occasion ELSE 0 END)"),
    ("window_net_{w}",
     amount_from_units_sql("SUM(CASE WHEN day > {c} - {w} THEN net_units ELSE 0 END)")),
)

# Shorthands used in the feature SQL below.
_TENURE = "(cutoff_day - first_day)"
_T_X = "(last_day - first_day)"
_GAP_MEAN = f"CAST({_T_X} AS DOUBLE) / (n_occasions - 1)"
_MONETARY_MEAN = "net_total / n_occasions"

FEATURES: tuple[Feature, ...] = (
    # --- RFM and the BTYD (BG/NBD, Pareto/NBD) statistics -----------------------
    Feature("frequency", "occasions", "int64",
            "Purchase occasions up to the as-of date: distinct days with a positive net "
            "amount (several rows on one day are one occasion; refund-only days are none).",
            "n_occasions"),
    Feature("repeat_frequency", "occasions", "int64",
            "`frequency - 1`: repeat occasions after the first, the BTYD `x`.",
            "n_occasions - 1"),
    Feature("recency_days", "days", "int64",
            "As-of date minus the last occasion.",
            "cutoff_day - last_day"),
    Feature("tenure_days", "days", "int64",
            "As-of date minus the first occasion (the BTYD `T`).",
            _TENURE),
    Feature("t_x_days", "days", "int64",
            "Last occasion minus the first occasion (the BTYD `t_x`).",
            _T_X),
    # --- money -------------------------------------------------------------------
    Feature("monetary_total", "currency", "float64",
            "Net amount of every transaction up to the as-of date: purchases minus "
            "refunds, refund-only days included.",
            "net_total"),
    Feature("monetary_mean", "currency per occasion", "float64",
            "`monetary_total / frequency`.",
            _MONETARY_MEAN),
    Feature("monetary_mean_repeat", "currency per occasion", "float64",
            "Mean net amount of the repeat occasions' days (all occasions but the first; "
            "the Gamma-Gamma `m`). NaN without a repeat occasion.",
            "repeat_net_total / NULLIF(n_occasions - 1, 0)"),
    Feature("refund_total", "currency", "float64",
            "Sum of the absolute negative amounts (refunds) up to the as-of date.",
            "refunds"),
    # --- gaps between consecutive occasions -----------------------------------------
    Feature("gap_mean_days", "days", "float64",
            "Mean days between consecutive occasions, `t_x_days / repeat_frequency`. "
            "NaN with fewer than 2 occasions.",
            f"CASE WHEN n_occasions >= 2 THEN {_GAP_MEAN} END"),
    Feature("gap_median_days", "days", "float64",
            "Median days between consecutive occasions (mean of the two middle gaps "
            "for an even count). NaN with fewer than 2 occasions.",
            "gap_median"),
    Feature("gap_std_days", "days", "float64",
            "Sample standard deviation (n - 1) of the days between consecutive "
            "occasions. NaN with fewer than 3 occasions.",
            # exact integer sums, one division: no cancellation in floating point
            "CASE WHEN n_occasions >= 3 THEN SQRT(GREATEST(CAST((n_occasions - 1) * "
            f"gap_square_sum - CAST({_T_X} AS BIGINT) * {_T_X} AS DOUBLE), 0.0) / "
            "((n_occasions - 1) * (n_occasions - 2))) END"),
    Feature("gap_last_days", "days", "float64",
            "Days between the last two occasions. NaN with fewer than 2 occasions.",
            "CASE WHEN n_occasions >= 2 THEN last_day - before_last_day END"),
    Feature("overdue_ratio", "ratio", "float64",
            "`recency_days / gap_mean_days`: above 1, the customer is later than their "
            "usual rhythm. NaN with fewer than 2 occasions.",
            f"CASE WHEN n_occasions >= 2 THEN (cutoff_day - last_day) / ({_GAP_MEAN}) END"),
    # --- calendar of activity -------------------------------------------------------
    Feature("days_since_first_repeat", "days", "float64",
            "As-of date minus the second occasion. NaN with fewer than 2 occasions.",
            "cutoff_day - second_day"),
    Feature("recent_tenure_share", "share", "float64",
            "Share of the occasions that fall in the last quarter of the tenure "
            "(days `d` with `4 * (d - first) >= 3 * tenure_days`). NaN when "
            "`tenure_days` is 0.",
            f"CASE WHEN {_TENURE} > 0 THEN CAST(last_quarter_occasions AS DOUBLE) "
            "/ n_occasions END"),
    # --- activity windows: the last w days, (as_of - w, as_of] ----------------------------
    Feature("occasions_{w}d", "occasions", "int64",
            "Occasions in the last {w} days, `(as_of - {w}, as_of]`.",
            "window_occasions_{w}"),
    Feature("spend_{w}d", "currency", "float64",
            "Net amount (purchases minus refunds) in the last {w} days.",
            "window_net_{w}"),
    Feature("rate_trend_{w}d", "ratio", "float64",
            "Recent purchase rate over lifetime rate: `(occasions_{w}d / min({w}, "
            "tenure_days + 1)) / (frequency / (tenure_days + 1))`, both per day of the "
            "customer's observed life. 1 = steady; 0 = no occasion in the window; "
            "exactly 1 while the whole life fits in the window.",
            f"CAST(window_occasions_{{w}} AS DOUBLE) * ({_TENURE} + 1) "
            f"/ (LEAST({{w}}, {_TENURE} + 1) * n_occasions)"),
    Feature("basket_trend_{w}d", "ratio", "float64",
            "Recent basket over lifetime basket: `(spend_{w}d / occasions_{w}d) / "
            "monetary_mean`. NaN without an occasion in the window or when "
            "`monetary_mean <= 0`.",
            f"CASE WHEN window_occasions_{{w}} > 0 AND net_total > 0 THEN "
            f"(window_net_{{w}} / window_occasions_{{w}}) / ({_MONETARY_MEAN}) END"),
)


def check_windows(windows_days: Any) -> tuple[int, ...]:
    """The window lengths as a tuple, refused unless whole numbers >= 1, each listed once."""
    values: list[Any]
    try:
        values = [windows_days] if isinstance(windows_days, str) else list(windows_days)
    except TypeError:  # one value rather than a list of them
        values = [windows_days]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ChurnlensError(f"windows_days must be an integer >= 1, got {value!r}.")
    windows = tuple(int(value) for value in values)
    if len(set(windows)) != len(windows):
        raise ChurnlensError(
            f"windows_days has duplicates: {list(windows)}. Suggestion: list each "
            "window length once."
        )
    return windows


def feature_names(windows_days: Sequence[int] = DEFAULT_WINDOWS_DAYS) -> list[str]:
    """The feature columns of :func:`~churnlens.compute_features`, in order.

    Parameters
    ----------
    windows_days
        Window lengths of the windowed features, as given to
        :func:`~churnlens.compute_features`.

    Returns
    -------
    list of str
        Feature names, without the ``customer_id`` and ``as_of`` columns.

    Examples
    --------
    >>> feature_names(windows_days=(30,))[:3]
    ['frequency', 'repeat_frequency', 'recency_days']
    """
    return [name for name, _, _ in expand_features(check_windows(windows_days))]


def expand_features(windows_days: Sequence[int]) -> list[tuple[str, Feature, int | None]]:
    """``(column name, feature, window)`` for every output column, in order."""
    out: list[tuple[str, Feature, int | None]] = []
    for feature in FEATURES:
        if feature.windowed:
            out.extend((feature.name.format(w=w), feature, w) for w in windows_days)
        else:
            out.append((feature.name, feature, None))
    return out


def last_day_sql(source: str, dialect: Dialect) -> str:
    """SQL scalar subquery: the last day number with any transaction in ``source``."""
    return f"(SELECT MAX({day_sql('event_time', dialect)}) FROM {source})"


def sequence_select_sql(
    source: str, last_day: int, dialect: Dialect, *, with_next_day: bool = False
) -> str:
    """SQL ``SELECT``: the daily rows of ``source`` up to ``last_day``, occasions linked.

    ``source`` has the columns ``customer_id``, ``event_time`` and ``amount``.
    ``next_day`` (the next occasion, for labels) is only computed on request.
    """
    next_day = (
        "CASE WHEN is_occasion = 1 THEN LEAD(day) OVER occasions END"
        if with_next_day else "CAST(NULL AS INT)"
    )
    return f"""
SELECT customer_id, day, net_units, refund_units, is_occasion,
       CASE WHEN is_occasion = 1 THEN day END AS occasion_day,
       CASE WHEN is_occasion = 1 THEN LAG(day) OVER occasions END AS previous_day,
       {next_day} AS next_day,
       CASE WHEN is_occasion = 1 THEN FIRST_VALUE(day) OVER occasions END AS first_day
FROM (
    SELECT customer_id, day, net_units, refund_units,
           CASE WHEN {is_occasion_sql("net_units")} THEN 1 ELSE 0 END AS is_occasion
    FROM (
        SELECT customer_id, day,
               SUM(units) AS net_units,
               SUM(CASE WHEN units < 0 THEN -units ELSE 0 END) AS refund_units
        FROM (SELECT customer_id, {day_sql("event_time", dialect)} AS day,
                     {amount_units_sql("amount", dialect)} AS units
              FROM {source}) AS dated
        WHERE day <= {int(last_day)}
        GROUP BY customer_id, day
    ) AS daily
) AS flagged
WINDOW occasions AS (PARTITION BY customer_id, is_occasion ORDER BY day)
"""


def _aggregate_sql(
    cutoff: str, windows_days: Sequence[int], *, with_next_day: bool, source: str, tail: str,
    dialect: Dialect,
) -> str:
    own = _DIALECT_AGGREGATES[dialect]
    items = [f"{own.get(name, sql).format(c=cutoff)} AS {name}" for name, sql in AGGREGATES]
    for w in windows_days:
        items += [
            f"{sql.format(c=cutoff, w=int(w))} AS {name.format(w=int(w))}"
            for name, sql in WINDOW_AGGREGATES
        ]
    if with_next_day:
        # next_day grows along the occasions: its maximum over the occasions up to c
        # is the first occasion after c (or the last one up to c if there is none).
        items.append("MAX(next_day) AS next_day")
    body = ",\n       ".join(items)
    return f"""
SELECT customer_id, {cutoff} AS cutoff_day,
       {body}
FROM {source}
{tail}
HAVING SUM(is_occasion) > 0
"""


def features_select_sql(
    sequence: str,
    cutoff_days: Sequence[int],
    windows_days: Sequence[int],
    dialect: Dialect,
    *,
    horizon_days: int | None = None,
    observed_until: str | None = None,
    strategy: str = "union",
    date_column: str = "as_of",
) -> str:
    """SQL ``SELECT``: one row per (customer acquired by c, cutoff c) with every feature.

    ``sequence`` is a table or view holding :func:`sequence_select_sql` rows. With
    ``horizon_days`` the churn label is added (``churned``: 1, 0 or NULL when the
    horizon is not fully observed by ``observed_until``, an SQL expression giving the
    last observed day number). The cutoff's date is the column ``date_column``.

    ``strategy`` ``"union"`` aggregates each cutoff separately (cheapest when
    ``sequence`` is materialised, as on DuckDB); ``"join"`` aggregates
    ``sequence JOIN cutoffs`` in one pass (no repeated sub-plan, as on Spark).
    """
    labelled = horizon_days is not None
    if strategy == "union":
        parts = [
            _aggregate_sql(str(int(c)), windows_days, with_next_day=labelled, source=sequence,
                           tail=f"WHERE day <= {int(c)}\nGROUP BY customer_id", dialect=dialect)
            for c in cutoff_days
        ]
        aggregated = "\nUNION ALL\n".join(parts)
    elif strategy == "join":
        cutoffs = " UNION ALL ".join(f"SELECT {int(c)} AS cutoff_day" for c in cutoff_days)
        aggregated = _aggregate_sql(
            "cutoffs.cutoff_day", windows_days, with_next_day=labelled,
            source=f"{sequence} AS seq JOIN ({cutoffs}) AS cutoffs "
                   "ON seq.day <= cutoffs.cutoff_day",
            tail="GROUP BY customer_id, cutoffs.cutoff_day", dialect=dialect,
        )
    else:
        raise ValueError(f"strategy must be 'union' or 'join', got {strategy!r}")

    date_from_day = _DIALECTS[dialect]["date_from_day"]
    double = _DIALECTS[dialect]["double"]
    columns = []
    for name, feature, w in expand_features(windows_days):
        sql = feature.sql.format(w=int(w)) if w is not None else feature.sql
        typed = f"CAST({sql} AS BIGINT)" if feature.dtype == "int64" else double.format(sql=sql)
        columns.append(f"{typed} AS {name}")
    if horizon_days is not None:  # labelled
        columns.append(_label_sql(int(horizon_days), observed_until or "NULL"))
    body = ",\n       ".join(columns)
    return f"""
SELECT customer_id, {date_from_day.format(day="cutoff_day")} AS {date_column},
       {body}
FROM ({aggregated}) AS aggregated
"""


def _label_sql(horizon_days: int, observed_until: str) -> str:
    return (
        f"CAST(CASE WHEN cutoff_day + {horizon_days} > {observed_until} THEN NULL "
        f"WHEN next_day > cutoff_day AND next_day <= cutoff_day + {horizon_days} THEN 0 "
        "ELSE 1 END AS INT) AS churned"
    )


def labels_select_sql(
    source: str, cutoff_day: int, horizon_days: int, observed_until: str, dialect: Dialect
) -> str:
    """SQL ``SELECT``: the churn label of every customer acquired by the cutoff.

    Written directly from ``retention.md`` (not from the sequence used for
    snapshots), so the two are independent checks of each other. ``observed_until``
    is an SQL expression giving the last observed day number.
    """
    c, h = int(cutoff_day), int(horizon_days)
    date_from_day = _DIALECTS[dialect]["date_from_day"]
    return f"""
SELECT customer_id, {date_from_day.format(day=str(c))} AS cutoff,
       CAST(CASE WHEN {c + h} > {observed_until} THEN NULL
                 WHEN SUM(CASE WHEN day > {c} THEN 1 ELSE 0 END) > 0 THEN 0
                 ELSE 1 END AS INT) AS churned
FROM (
    SELECT customer_id, day
    FROM (SELECT customer_id, {day_sql("event_time", dialect)} AS day,
                 {amount_units_sql("amount", dialect)} AS units
          FROM {source}) AS dated
    WHERE day <= {c + h}
    GROUP BY customer_id, day
    HAVING {is_occasion_sql("SUM(units)")}
) AS occasions
GROUP BY customer_id
HAVING MIN(day) <= {c}
"""
