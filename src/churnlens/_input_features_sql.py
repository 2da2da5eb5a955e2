"""The ``details`` and ``calendar`` feature groups, written once as SQL for DuckDB and Spark.

The features from the transactions' optional columns (order id, quantity, category,
channel, discount: the *details*) and from the calendar, at any number of cutoffs, as
:mod:`churnlens._features_sql` writes the core features: integer day numbers, exact
money (whole billionths, ``_engine.amount_units_sql``), the same statement text for both
engines except the few dialect pieces below. :mod:`churnlens._input_features` decides
which groups and columns a model uses (its ``InputSpec``) and runs these builders.

Inputs of every builder:

- ``source``: a relation with the clean transactions: ``customer_id``, ``event_time``,
  ``amount`` and the optional clean columns present (``order_id``, ``quantity``,
  ``category``, ``channel``, ``discount``: :data:`DETAIL_COLUMNS`);
- ``cutoffs``: a relation with one INT column ``cutoff_day`` (days since 1970-01-01).

Output: ``customer_id``, the cutoff's date (column ``date_column``: a TIMESTAMP on
DuckDB, a DATE on Spark, as ``features_select_sql``), then the features; one row per
(customer with a purchase occasion on or before the cutoff, cutoff), the rows of the
core features. Undefined floats are NaN on DuckDB and NULL on Spark (pandas shows both
as NaN).

Time rule: a cutoff includes its whole day and nothing after it. Every aggregate reads
the rows with ``day <= cutoff_day`` only (the calendar's year-ago window is clipped at
the cutoff), so adding later transactions changes no value.

Definitions (units in ``docs/features.md``, "Features from richer inputs"): a
*purchase occasion* is a (customer, day) with a positive net amount (``retention.md``);
a *purchase row* is a transaction row with a positive amount.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Sequence

from churnlens._engine import Dialect, amount_from_units_sql, amount_units_sql, day_sql
from churnlens._features_sql import _DIALECTS as _OUTPUT  # the core features' output types
from churnlens._loading import CATEGORY, CHANNEL, DISCOUNT, OPTIONAL_COLUMNS, ORDER, QUANTITY
from churnlens._loading_sql import _quote
from churnlens.exceptions import ChurnlensError, DataValidationError

__all__ = [
    "CALENDAR_FEATURES",
    "DETAIL_COLUMNS",
    "INPUT_FEATURE_DOCS",
    "InputFeatureDoc",
    "calendar_feature_names",
    "calendar_select_sql",
    "channel_feature_name",
    "channels_select_sql",
    "check_channels",
    "details_feature_names",
    "details_select_sql",
    "input_features_markdown",
    "sanitise_name",
]

#: The transactions' optional clean columns the details group reads, in this order.
DETAIL_COLUMNS: tuple[str, ...] = OPTIONAL_COLUMNS
#: The calendar group's features, in order.
CALENDAR_FEATURES: tuple[str, ...] = ("season_sin", "season_cos", "last_year_window_share")
#: Days in the calendar's "year ago" and its fraction of the year for the season.
YEAR_DAYS = 365
_SEASON_YEAR = "365.25"
_CHANNEL_PREFIX = "channel_share_"

# A double sum whose value does not depend on the order the engine meets the rows: the
# values sorted, then added one by one from 0 (a customer has a few categories).
_ORDERED_SUM: dict[str, str] = {
    "duckdb": "list_reduce(list_prepend(CAST(0 AS DOUBLE), list_sort(LIST({x}))), "
              "lambda acc, v: acc + v)",
    "spark": "aggregate(array_sort(collect_list({x})), CAST(0 AS DOUBLE), "
             "(acc, v) -> acc + v)",
}
_DATE_FROM_DAY: dict[str, str] = {
    "duckdb": "(DATE '1970-01-01' + {day})",
    "spark": "date_add(DATE '1970-01-01', {day})",
}


# --- documentation ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputFeatureDoc:
    """One feature of the richer inputs as ``docs/features.md`` shows it.

    Attributes
    ----------
    group
        Its group (``details``, ``events``, ``attributes``, ``calendar``).
    name
        Column name; ``<...>`` stands for a value of the spec (a channel, an event type).
    needs
        What makes it exist (an optional column, a table, the history's length).
    unit, kind, definition
        As in the core features' table.
    """

    group: str
    name: str
    needs: str
    unit: str
    kind: str
    definition: str


_SHARE = "float (NaN if undefined)"
#: The rows of "Features from richer inputs" in ``docs/features.md``, in column order.
INPUT_FEATURE_DOCS: tuple[InputFeatureDoc, ...] = (
    InputFeatureDoc(
        "details", "orders_per_occasion", "`--order-col`", "orders per occasion", "float",
        "Distinct order ids of the purchase rows of each occasion, averaged over the "
        "occasions up to the cutoff; an occasion whose rows carry no order id counts as "
        "one order (so >= 1)."),
    InputFeatureDoc(
        "details", "items_per_occasion", "`--quantity-col`", "items per occasion", "float",
        "Sum of the quantity of the purchase rows of each occasion, averaged over the "
        "occasions up to the cutoff."),
    InputFeatureDoc(
        "details", "category_count", "`--category-col`", "categories", "integer",
        "Distinct categories of the purchase rows up to the cutoff (rows without a "
        "category not counted; 0 when none has one)."),
    InputFeatureDoc(
        "details", "category_concentration", "`--category-col`", "share (0..1)", _SHARE,
        "Herfindahl index of the spend by category: the sum of the squared shares of each "
        "category in the purchase spend that has a category. 1 = one category only; "
        "1/k for k equal categories. NaN when no purchase row has a category."),
    InputFeatureDoc(
        "details", "channel_share_<channel>", "`--channel-col`", "share (0..1)", "float",
        "Spend of the purchase rows in this channel over all purchase spend up to the "
        "cutoff (rows without a channel, or in a channel not seen at training, count in "
        "the total only). One column per channel seen on or before the training as-of "
        "date; the name in `[a-z0-9_]` (`Web Shop` -> `channel_share_web_shop`)."),
    InputFeatureDoc(
        "details", "discount_share", "`--discount-col`", "share (0..1)", "float",
        "Discounts over the price before discount, `discount / (amount + discount)`, "
        "summed over the purchase rows up to the cutoff (an empty discount is 0)."),
    # the events and attributes groups are computed by churnlens._input_features
    InputFeatureDoc(
        "events", "days_since_<type>", "`--events-file`", "days", _SHARE,
        "The cutoff's day minus the day of the customer's last event of this type on or "
        "before it. NaN when the customer has no such event up to the cutoff (the counts "
        "are then 0). One per event type seen at training, the name in `[a-z0-9_]`."),
    InputFeatureDoc(
        "events", "<type>_count_<w>d", "`--events-file`", "events", "integer",
        "Events of this type in `(c - w, c]`, for each window `w` (default 30 and 90 "
        "days); 0 when none."),
    InputFeatureDoc(
        "attributes", "attr_<name>", "`--customers-file`", "as given",
        "float, or categorical",
        "The customer table's attribute in the row valid at the cutoff (the latest "
        "`valid_from` on or before it). Numeric when every value of the rows valid at "
        "the training as-of date is a number: floats (text met later is NaN and "
        "counted); else text, a category among those seen at training (an unseen value "
        "is NaN and counted; `1.0` reads as `1`). NaN for a customer "
        "without a row valid at the cutoff. One per attribute column, the name in "
        "`[a-z0-9_]` (`Plan Type` -> `attr_plan_type`)."),
    InputFeatureDoc(
        "calendar", "season_sin", "history of 365 + H days", "-1..1", "float",
        "`sin(2 pi d / 365.25)`, `d` the cutoff's day of the year (1 .. 366): where in "
        "the year the horizon starts. The same for every customer at a cutoff."),
    InputFeatureDoc(
        "calendar", "season_cos", "history of 365 + H days", "-1..1", "float",
        "`cos(2 pi d / 365.25)`, with `season_sin` a point on the year's circle (31 Dec "
        "and 1 Jan are neighbours)."),
    InputFeatureDoc(
        "calendar", "last_year_window_share", "history of 365 + H days", "share (0..1)",
        _SHARE,
        "The customer's occasions in `(c - 365, c - 365 + H]` (the horizon a year "
        "earlier, clipped at `c`) over their occasions in `(c - 365, c]`. NaN when the "
        "first occasion is after `c - 365` (under a year of history) or when there is "
        "no occasion in that year."),
)


def input_features_markdown(rows: Sequence[InputFeatureDoc] = INPUT_FEATURE_DOCS) -> str:
    """The rows as a Markdown table (group, feature, needs, unit, type, definition).

    Examples
    --------
    >>> print(input_features_markdown().splitlines()[0])
    | group | feature | needs | unit | type | definition |
    """
    lines = ["| group | feature | needs | unit | type | definition |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        definition = row.definition.replace("|", "\\|")
        lines.append(f"| {row.group} | `{row.name}` | {row.needs} | {row.unit} | {row.kind} "
                     f"| {definition} |")
    return "\n".join(lines) + "\n"


# --- names ----------------------------------------------------------------------------


def sanitise_name(value: object, *, what: str = "name") -> str:
    """``value`` as a column-name part: lower case, runs outside ``[a-z0-9]`` -> ``_``.

    The one rule of every input feature's name (event types, attributes, channels).

    Raises
    ------
    DataValidationError
        When nothing is left (a name of only punctuation).

    Examples
    --------
    >>> sanitise_name("Email Open!")
    'email_open'
    """
    text = re.sub(r"[^a-z0-9]+", "_", str(value).lower()).strip("_")
    if not text:
        raise DataValidationError(
            f"the {what} {value!r} has no letter or digit to name a feature column with. "
            "Suggestion: rename it (letters a-z and digits are kept)."
        )
    return text


def channel_feature_name(channel: str) -> str:
    """The feature column of a channel's share: ``channel_share_`` + the name in ``[a-z0-9_]``.

    Lower case; every run of other characters becomes one ``_`` (``"Web Shop"`` ->
    ``channel_share_web_shop``): :func:`sanitise_name`.

    Raises
    ------
    DataValidationError
        A channel with no letter or digit (nothing to name the column by).
    """
    return _CHANNEL_PREFIX + sanitise_name(channel, what="channel")


def check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    """The channels as a tuple, refused if two of them give the same feature column.

    Raises
    ------
    ChurnlensError
        Two channels whose names differ only in case or punctuation (``"Web"``,
        ``"web "``... are two values but one column), or a channel without a letter or
        digit.
    """
    seen: dict[str, str] = {}
    for channel in channels:
        name = channel_feature_name(channel)
        if name in seen:
            raise ChurnlensError(
                f"channels {seen[name]!r} and {channel!r} both give the feature column "
                f"{name!r}. Suggestion: write each channel one way in the transactions "
                "(same case and punctuation)."
            )
        seen[name] = channel
    return tuple(channels)


def details_feature_names(columns: Collection[str], channels: Sequence[str] = ()) -> list[str]:
    """The ``details`` features made from the optional ``columns`` present, in order.

    Parameters
    ----------
    columns
        Clean optional columns of the transactions (any of :data:`DETAIL_COLUMNS`).
    channels
        The channels with a share feature (used when ``"channel"`` is in ``columns``).

    Returns
    -------
    list of str
        ``orders_per_occasion`` (order id), ``items_per_occasion`` (quantity),
        ``category_count`` and ``category_concentration`` (category),
        ``channel_share_<channel>`` per channel (channel), ``discount_share`` (discount).

    Examples
    --------
    >>> details_feature_names({"quantity", "channel"}, ["web", "Store"])
    ['items_per_occasion', 'channel_share_web', 'channel_share_store']
    """
    unknown = sorted(set(columns) - set(DETAIL_COLUMNS))
    if unknown:
        raise ChurnlensError(
            f"unknown optional transaction columns {unknown}. Suggestion: use the clean "
            f"names {list(DETAIL_COLUMNS)}."
        )
    names: list[str] = []
    if ORDER in columns:
        names.append("orders_per_occasion")
    if QUANTITY in columns:
        names.append("items_per_occasion")
    if CATEGORY in columns:
        names += ["category_count", "category_concentration"]
    if CHANNEL in columns:
        names += [channel_feature_name(c) for c in check_channels(channels)]
    if DISCOUNT in columns:
        names.append("discount_share")
    return names


def calendar_feature_names() -> list[str]:
    """The ``calendar`` features, in order (:data:`CALENDAR_FEATURES`)."""
    return list(CALENDAR_FEATURES)


# --- SQL ------------------------------------------------------------------------------


def _rows_sql(source: str, cutoffs: str, columns: Collection[str], dialect: Dialect) -> str:
    """The rows of ``source`` up to the last cutoff: day number, exact units, details."""
    items = [f"customer_id, {day_sql('event_time', dialect)} AS day",
             f"{amount_units_sql('amount', dialect)} AS units"]
    if ORDER in columns:
        items.append("order_id")
    if QUANTITY in columns:
        items.append(f"{amount_units_sql('quantity', dialect)} AS quantity_units")
    if CATEGORY in columns:
        items.append("category")
    if CHANNEL in columns:
        items.append("channel")
    if DISCOUNT in columns:
        items.append(f"{amount_units_sql('discount', dialect)} AS discount_units")
    return f"""
SELECT * FROM (SELECT {", ".join(items)} FROM {source}) AS dated
WHERE day <= (SELECT MAX(cutoff_day) FROM {cutoffs})
"""


def _output_sql(date_column: str, dialect: Dialect, features: list[tuple[str, str, str]]
                ) -> str:
    """The select list: customer id, the cutoff's date, each feature cast to its type."""
    date_from_day = _OUTPUT[dialect]["date_from_day"].format(day="cutoff_day")
    double = _OUTPUT[dialect]["double"]
    items = ["customer_id", f"{date_from_day} AS {date_column}"]
    for name, dtype, sql in features:
        items.append(f"CAST({sql} AS BIGINT) AS {name}" if dtype == "int64"
                     else f"{double.format(sql=sql)} AS {name}")
    return ",\n       ".join(items)


def details_select_sql(
    source: str,
    cutoffs: str,
    *,
    columns: Collection[str],
    channels: Sequence[str] = (),
    dialect: Dialect,
    date_column: str = "cutoff",
) -> str:
    """SQL ``SELECT``: the ``details`` features per (customer, cutoff).

    Parameters
    ----------
    source, cutoffs
        The clean transactions and the cutoff day numbers (see the module docstring).
    columns
        The optional clean columns to read (any of :data:`DETAIL_COLUMNS`; each gives its
        features, :func:`details_feature_names`). Every one must be in ``source``.
    channels
        The channels with a share feature (``channel_share_<channel>``).
    dialect
        ``"duckdb"`` or ``"spark"``.
    date_column
        Name of the cutoff's date column.

    Returns
    -------
    str
        ``customer_id``, ``date_column``, then :func:`details_feature_names` in order.
    """
    names = details_feature_names(columns, channels)
    if not names:
        raise ChurnlensError(
            "details_select_sql needs at least one optional column. Suggestion: leave the "
            "details group out when the transactions carry none."
        )
    purchase = "units > 0"
    day_items = ["SUM(units) AS net_units",
                 f"SUM(CASE WHEN {purchase} THEN units ELSE 0 END) AS purchase_units"]
    if ORDER in columns:
        # an occasion is at least one order, even when its rows carry no order id
        day_items.append("GREATEST(COUNT(DISTINCT CASE WHEN units > 0 THEN order_id END), 1) "
                         "AS orders")
    if QUANTITY in columns:
        day_items.append(f"SUM(CASE WHEN {purchase} THEN quantity_units ELSE 0 END) "
                         "AS item_units")
    if DISCOUNT in columns:
        day_items.append(f"SUM(CASE WHEN {purchase} THEN discount_units ELSE 0 END) "
                         "AS discount_units")
    channel_list = check_channels(channels) if CHANNEL in columns else ()
    for position, channel in enumerate(channel_list):
        day_items.append(
            f"SUM(CASE WHEN {purchase} AND channel = {_quote(channel, dialect)} THEN units "
            f"ELSE 0 END) AS channel_units_{position}")

    occasion = "net_units > 0"
    cutoff_items = [f"SUM(CASE WHEN {occasion} THEN 1 ELSE 0 END) AS n_occasions",
                    "SUM(purchase_units) AS purchase_units"]
    if ORDER in columns:
        cutoff_items.append(f"SUM(CASE WHEN {occasion} THEN orders ELSE 0 END) AS orders")
    if QUANTITY in columns:
        cutoff_items.append(f"SUM(CASE WHEN {occasion} THEN item_units ELSE 0 END) "
                            "AS item_units")
    if DISCOUNT in columns:
        cutoff_items.append("SUM(discount_units) AS discount_units")
    cutoff_items += [f"SUM(channel_units_{i}) AS channel_units_{i}"
                     for i in range(len(channel_list))]

    rows = _rows_sql(source, cutoffs, columns, dialect)
    aggregated = f"""
SELECT days.customer_id, cutoffs.cutoff_day,
       {", ".join(cutoff_items)}
FROM (SELECT customer_id, day, {", ".join(day_items)}
      FROM detail_rows GROUP BY customer_id, day) AS days
JOIN {cutoffs} AS cutoffs ON days.day <= cutoffs.cutoff_day
GROUP BY days.customer_id, cutoffs.cutoff_day
HAVING SUM(CASE WHEN {occasion} THEN 1 ELSE 0 END) > 0
"""
    purchases = amount_from_units_sql("purchase_units")
    features: list[tuple[str, str, str]] = []
    if ORDER in columns:
        features.append(("orders_per_occasion", "float64",
                         "CAST(orders AS DOUBLE) / n_occasions"))
    if QUANTITY in columns:
        features.append(("items_per_occasion", "float64",
                         f"{amount_from_units_sql('item_units')} / n_occasions"))
    joined = "aggregated"
    if CATEGORY in columns:
        features += [("category_count", "int64", "coalesce(category_count, 0)"),
                     ("category_concentration", "float64", "concentration")]
        joined = f"""(
SELECT aggregated.*, categories.category_count, categories.concentration
FROM aggregated
LEFT JOIN ({_categories_sql(cutoffs, dialect)}) AS categories
  ON categories.customer_id = aggregated.customer_id
 AND categories.cutoff_day = aggregated.cutoff_day) AS joined"""
    features += [(channel_feature_name(channel), "float64",
                  f"{amount_from_units_sql(f'channel_units_{i}')} / {purchases}")
                 for i, channel in enumerate(channel_list)]
    if DISCOUNT in columns:
        discounts = amount_from_units_sql("discount_units")
        features.append(("discount_share", "float64",
                         f"CASE WHEN purchase_units + discount_units > 0 THEN {discounts} / "
                         f"({amount_from_units_sql('(purchase_units + discount_units)')}) END"))
    return f"""
WITH detail_rows AS ({rows}),
aggregated AS ({aggregated})
SELECT {_output_sql(date_column, dialect, features)}
FROM {joined}
"""


def _categories_sql(cutoffs: str, dialect: Dialect) -> str:
    """Per (customer, cutoff): categories bought and the HHI of their spend shares."""
    share = ("CAST(category_units AS DOUBLE) / "
             "CAST(SUM(category_units) OVER (PARTITION BY customer_id, cutoff_day) AS DOUBLE)")
    return f"""
SELECT customer_id, cutoff_day, COUNT(*) AS category_count,
       {_ORDERED_SUM[dialect].format(x="share * share")} AS concentration
FROM (
    SELECT customer_id, cutoff_day, {share} AS share
    FROM (
        SELECT bought.customer_id, cutoffs.cutoff_day, bought.category,
               SUM(bought.units) AS category_units
        FROM (SELECT customer_id, day, category, SUM(units) AS units
              FROM detail_rows WHERE units > 0 AND category IS NOT NULL
              GROUP BY customer_id, day, category) AS bought
        JOIN {cutoffs} AS cutoffs ON bought.day <= cutoffs.cutoff_day
        GROUP BY bought.customer_id, cutoffs.cutoff_day, bought.category
    ) AS per_category
) AS shares
GROUP BY customer_id, cutoff_day
"""


def calendar_select_sql(
    source: str,
    cutoffs: str,
    *,
    horizon_days: int,
    dialect: Dialect,
    date_column: str = "cutoff",
) -> str:
    """SQL ``SELECT``: the ``calendar`` features per (customer, cutoff).

    ``season_sin``, ``season_cos``: the cutoff's day of the year ``d`` (1 .. 366) as
    ``sin/cos(2 pi d / 365.25)``. ``last_year_window_share``: the customer's purchase
    occasions in ``(c - 365, c - 365 + H]`` (clipped at ``c``) over their occasions in
    ``(c - 365, c]``; undefined (NaN / NULL) when the customer's first occasion is
    after ``c - 365`` (less than a year of history, so the log holds no year either) or
    when they have no occasion in ``(c - 365, c]``.

    Parameters
    ----------
    source, cutoffs
        The clean transactions and the cutoff day numbers (see the module docstring).
    horizon_days
        ``H``, the horizon the model predicts.
    dialect
        ``"duckdb"`` or ``"spark"``.
    date_column
        Name of the cutoff's date column.
    """
    horizon = int(horizon_days)
    if horizon < 1:
        raise ChurnlensError(f"horizon_days must be 1 or more, got {horizon_days!r}.")
    year_start = f"cutoff_day - {YEAR_DAYS}"
    aggregated = f"""
SELECT days.customer_id, cutoffs.cutoff_day,
       MIN(days.day) AS first_day,
       SUM(CASE WHEN days.day > cutoffs.cutoff_day - {YEAR_DAYS} THEN 1 ELSE 0 END)
           AS year_occasions,
       SUM(CASE WHEN days.day > cutoffs.cutoff_day - {YEAR_DAYS}
                 AND days.day <= cutoffs.cutoff_day - {YEAR_DAYS} + {min(horizon, YEAR_DAYS)}
                THEN 1 ELSE 0 END) AS window_occasions
FROM (SELECT customer_id, day FROM detail_rows GROUP BY customer_id, day
      HAVING SUM(units) > 0) AS days
JOIN {cutoffs} AS cutoffs ON days.day <= cutoffs.cutoff_day
GROUP BY days.customer_id, cutoffs.cutoff_day
"""
    angle = (f"2 * pi() * dayofyear({_DATE_FROM_DAY[dialect].format(day='cutoff_day')}) "
             f"/ {_SEASON_YEAR}")
    features = [
        ("season_sin", "float64", f"sin({angle})"),
        ("season_cos", "float64", f"cos({angle})"),
        ("last_year_window_share", "float64",
         f"CASE WHEN first_day <= {year_start} AND year_occasions > 0 "
         "THEN CAST(window_occasions AS DOUBLE) / year_occasions END"),
    ]
    rows = _rows_sql(source, cutoffs, (), dialect)
    return f"""
WITH detail_rows AS ({rows}),
aggregated AS ({aggregated})
SELECT {_output_sql(date_column, dialect, features)}
FROM aggregated
"""


def channels_select_sql(source: str, as_of_day: int, dialect: Dialect) -> str:
    """SQL ``SELECT``: the distinct channels of the purchase rows on or before ``as_of_day``.

    One column ``channel``, sorted; missing channels left out (what a spec learns).
    """
    return f"""
SELECT DISTINCT channel FROM {source}
WHERE channel IS NOT NULL AND amount > 0
  AND {day_sql('event_time', dialect)} <= {int(as_of_day)}
ORDER BY channel
"""
