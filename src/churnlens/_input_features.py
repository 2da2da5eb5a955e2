"""Features from the richer inputs: the customer table, the event table, the
transactions' optional columns and the calendar, as extra columns of the features frame.

The model never reads a customer or event table itself: everything it learns from them is
a set of extra columns joined on ``(customer_id, date)`` onto the frames that exist
without them (the training snapshots, date column ``cutoff``; the scoring features,
``as_of``). This module owns which columns those are and how they are computed:

- :class:`InputSpec` says what a model was trained with (the groups of
  :data:`INPUT_GROUPS`, the attributes and their categories, the event types, the
  channels...). It is learned once at training by :func:`learn_input_spec` from data on
  or before the training as-of date, stored in the model, and applied unchanged when
  scoring, so the columns and the categories never depend on the data being scored.
- :func:`input_features` computes the columns for many cutoffs in one query (DuckDB for
  pandas frames and the out-of-core view, Spark for a PySpark DataFrame): one row per
  customer with a purchase occasion on or before each cutoff.
- :func:`with_input_features` appends them to an existing frame (left join).

Time rules (no leakage): at a cutoff ``c`` an attribute is the customer table's row
valid at ``c`` (the latest ``valid_from`` on or before ``c``'s day:
:func:`churnlens._inputs.attributes_at`), an event counts when its day is on or before
``c`` (:func:`churnlens._inputs.events_until`), a transaction when its day is (the
features' rule). Nothing dated after the cutoff changes a value.

The events group, per event type ``t`` of the spec:

- ``days_since_<t>``: the cutoff's day minus the day of the last ``t`` event on or before
  it (days, float). **NaN when the customer has no such event** up to the cutoff: there
  is no number of days to give, and a sentinel would be read as a real distance by the
  logistic part of the model (which imputes NaN) and by the reasons. The counts below are
  then 0, which says "never" to the trees without any sentinel.
- ``<t>_count_<w>d``: events of type ``t`` in ``(c - w, c]`` for each window ``w`` of
  ``spec.event_windows_days`` (integer, 0 when none).

The attributes group: ``attr_<name>`` per attribute column; numeric attributes as
float64, text attributes as a pandas ``Categorical`` whose categories are exactly the
spec's (those seen in rows valid on or before the training as-of date). A value not among
them is NaN and counted in ``frame.attrs["unseen_categories"]`` (``{column: rows}``), so
callers can warn.

Names are sanitised to ``[a-z0-9_]`` (:func:`sanitise_name`); two inputs that give the
same column name are an error, as is a name that a base feature already has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from churnlens._engine import (
    Dialect,
    amount_units_sql,
    connect,
    day_number,
    day_sql,
    from_day_number,
)
from churnlens._features import _pandas_transactions as _clean_frame
from churnlens._features_sql import FEATURES, check_windows
from churnlens._input_features_sql import (
    DETAIL_COLUMNS,
    calendar_feature_names,
    calendar_select_sql,
    channels_select_sql,
    check_channels,
    details_feature_names,
    details_select_sql,
    sanitise_name,
)
from churnlens._inputs import CUSTOMER, VALID_FROM, CleanCustomers, CleanEvents
from churnlens._loading import AMOUNT, TIMESTAMP
from churnlens._loading_sql import CleanTransactions, _ident
from churnlens._spark_loading import is_spark_frame
from churnlens._validation import parse_date, require_positive_int
from churnlens.exceptions import ChurnlensError, DataValidationError, ModelError

__all__ = [
    "DEFAULT_EVENT_WINDOWS_DAYS",
    "INPUT_GROUPS",
    "NO_INPUTS",
    "InputSpec",
    "InputTables",
    "InputsRequiredError",
    "categorise_inputs",
    "create_input_features_table",
    "input_features",
    "learn_input_spec",
    "sanitise_name",
    "spec_of",
    "with_input_features",
]

INPUT_GROUPS: tuple[str, ...] = ("details", "events", "attributes", "calendar")
DEFAULT_EVENT_WINDOWS_DAYS: tuple[int, ...] = (30, 90)
# The spec's JSON form; bump when a field changes meaning.
_SPEC_VERSION = 1
# "valid from the start": earlier than any day / any timestamp.
_ALWAYS_DAY = -1_000_000_000
_ALWAYS_ORDER = -(2**62)
# The column name the details/calendar builders give their date.
_JOIN_DATE = "churnlens_input_date"

DateLike: TypeAlias = str | dt.date | pd.Timestamp
# A clean pandas frame (or a path), the out-of-core view (_loading_sql.CleanTransactions)
# or a PySpark DataFrame.
Transactions = Any


class InputsRequiredError(DataValidationError):
    """A model trained with a customer or event table is used without it."""


@dataclasses.dataclass(frozen=True)
class InputTables:
    """The optional tables of a job beside its transactions (``None``: not given).

    Attributes
    ----------
    customers
        The clean customer table (:func:`churnlens._inputs.load_customers`), or its
        ``customers`` frame.
    events
        The clean event table (:func:`churnlens._inputs.load_events`), or its ``events``
        frame; an empty frame (a request without any event) is "no event" for everyone.
    """

    customers: CleanCustomers | pd.DataFrame | None = None
    events: CleanEvents | pd.DataFrame | None = None


# Base feature names an input feature must not take.
_BASE_NAMES = frozenset(f.name for f in FEATURES if not f.windowed)
_BASE_WINDOWED = tuple(re.compile("^" + re.escape(f.name).replace(r"\{w\}", r"\d+") + "$")
                       for f in FEATURES if f.windowed)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model was trained with, beside the transactions' three required columns.

    Learned once at training by :func:`learn_input_spec` (from data on or before the
    training as-of date), stored in the model (``ChurnModel.input_spec_``) and in the
    bundle / pickle-free scorer meta as :meth:`to_dict`; applied unchanged at scoring.

    Attributes
    ----------
    groups
        The input groups used, a subset of :data:`INPUT_GROUPS` in that order.
    attributes
        ``(attribute name, its categories seen in training, sorted)`` for a text
        attribute, ``(name, None)`` for a numeric one; in the customer table's order.
    event_types
        The event types, sorted.
    channels
        The transactions' channel values seen in training, sorted.
    event_windows_days
        Window lengths of the event counts ``<type>_count_<w>d``.
    detail_columns
        The transactions' optional columns present in training (subset of
        ``order_id, quantity, category, channel, discount``, in that order).
    horizon_days
        The horizon the calendar group's ``last_year_window_share`` looks at.
    """

    groups: tuple[str, ...] = ()
    attributes: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    event_types: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    event_windows_days: tuple[int, ...] = DEFAULT_EVENT_WINDOWS_DAYS
    detail_columns: tuple[str, ...] = ()
    horizon_days: int | None = None

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in INPUT_GROUPS]
        if unknown or len(set(self.groups)) != len(self.groups):
            raise ChurnlensError(
                f"input groups {list(self.groups)} are not a subset of {list(INPUT_GROUPS)} "
                "listed once each. Suggestion: choose among " + ", ".join(INPUT_GROUPS) + "."
            )
        object.__setattr__(self, "groups",
                           tuple(g for g in INPUT_GROUPS if g in self.groups))
        object.__setattr__(self, "event_windows_days",
                           check_windows(self.event_windows_days))
        bad = [c for c in self.detail_columns if c not in DETAIL_COLUMNS]
        if bad:
            raise ChurnlensError(
                f"detail_columns {bad} are not among {list(DETAIL_COLUMNS)}. Suggestion: "
                "name only the transactions' optional columns " + ", ".join(DETAIL_COLUMNS)
                + ".")
        object.__setattr__(self, "detail_columns",
                           tuple(c for c in DETAIL_COLUMNS if c in self.detail_columns))
        if "calendar" in self.groups:
            require_positive_int(self.horizon_days,  # type: ignore[arg-type]
                                 name="InputSpec.horizon_days (the calendar group)")
        self._check_names()

    def _check_names(self) -> None:
        """Every column name once, none a base feature's: else a clear error."""
        seen: dict[str, str] = {}
        for group in self.groups:
            for name, source in self._named(group):
                if name in seen:
                    raise DataValidationError(
                        f"the input feature column {name!r} would come from both "
                        f"{seen[name]} and {source}. Suggestion: rename one of them "
                        "(names are lower-cased and every run of other characters "
                        "becomes '_')."
                    )
                if name in _BASE_NAMES or any(p.match(name) for p in _BASE_WINDOWED):
                    raise DataValidationError(
                        f"the input feature column {name!r} (from {source}) has the name of "
                        "a transactions feature. Suggestion: rename it."
                    )
                seen[name] = source

    def _named(self, group: str) -> list[tuple[str, str]]:
        """(column, what it comes from) for every column of ``group``."""
        if group == "details":
            return [(n, "the transactions' optional columns")
                    for n in details_feature_names(self.detail_columns, self.channels)]
        if group == "events":
            out = []
            for kind in self.event_types:
                what = f"event type {kind!r}"
                part = sanitise_name(kind, what="event type")
                out.append((f"days_since_{part}", what))
                out += [(f"{part}_count_{w}d", what) for w in self.event_windows_days]
            return out
        if group == "attributes":
            return [(f"attr_{sanitise_name(name, what='attribute')}", f"attribute {name!r}")
                    for name, _ in self.attributes]
        return [(n, "the calendar") for n in calendar_feature_names()]

    def feature_names(self) -> list[str]:
        """Every input feature column, in a fixed order (``[]`` without groups)."""
        return [name for group in self.groups for name, _ in self._named(group)]

    def categorical_features(self) -> list[str]:
        """The columns that are pandas ``Categorical`` (the text attributes)."""
        if "attributes" not in self.groups:
            return []
        return [f"attr_{sanitise_name(name)}" for name, categories in self.attributes
                if categories is not None]

    def categories_of(self, feature: str) -> tuple[str, ...]:
        """The categories of a categorical attribute column (``attr_<name>``).

        Raises
        ------
        ChurnlensError
            ``feature`` is not a text attribute column of this spec.
        """
        for name, categories in self.attributes:
            if categories is not None and f"attr_{sanitise_name(name)}" == feature:
                return categories
        raise ChurnlensError(
            f"{feature!r} is not a text attribute column of this input spec (those are "
            f"{self.categorical_features()}). Suggestion: use one of them."
        )

    def group_of(self, feature: str) -> str:
        """Which :data:`INPUT_GROUPS` entry made ``feature``.

        Raises
        ------
        ChurnlensError
            No group of this spec makes ``feature``.
        """
        for group in self.groups:
            if any(name == feature for name, _ in self._named(group)):
                return group
        raise ChurnlensError(
            f"{feature!r} is not an input feature of this spec (groups {list(self.groups)}). "
            "Suggestion: use a name of spec.feature_names()."
        )

    def features_of(self, group: str) -> list[str]:
        """The columns of one group (``[]`` when the group is not used)."""
        return [name for name, _ in self._named(group)] if group in self.groups else []

    @property
    def requires_customers(self) -> bool:
        """Whether scoring needs the customer table."""
        return "attributes" in self.groups

    @property
    def requires_events(self) -> bool:
        """Whether scoring needs the event table."""
        return "events" in self.groups

    def without(self, group: str) -> InputSpec:
        """This spec without ``group`` (for the ablation table)."""
        return dataclasses.replace(self, groups=tuple(g for g in self.groups if g != group))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form stored in bundles and scorer metadata."""
        return {
            "version": _SPEC_VERSION,
            "groups": list(self.groups),
            "attributes": [{"name": name, "categories":
                            None if categories is None else list(categories)}
                           for name, categories in self.attributes],
            "event_types": list(self.event_types),
            "channels": list(self.channels),
            "event_windows_days": list(self.event_windows_days),
            "detail_columns": list(self.detail_columns),
            "horizon_days": self.horizon_days,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        """The spec of :meth:`to_dict` (missing keys take their defaults).

        Raises
        ------
        ModelError
            ``data`` is not a stored spec this churnlens reads (not a mapping, a newer
            version, a missing or mistyped entry).
        ChurnlensError
            A spec that reads but breaks the rules of :class:`InputSpec`.
        """
        if not isinstance(data, Mapping):
            raise ModelError(
                f"the stored input spec must be a mapping, got {type(data).__name__}. "
                "Suggestion: retrain or re-save the bundle.")
        try:
            version = int(data.get("version", _SPEC_VERSION))
            if version > _SPEC_VERSION:
                raise ModelError(
                    f"the input spec has version {version}, newer than this churnlens reads "
                    f"({_SPEC_VERSION}). Suggestion: upgrade churnlens to use this model."
                )
            attributes = tuple(
                (str(item["name"]), None if item.get("categories") is None
                 else tuple(str(c) for c in item["categories"]))
                for item in data.get("attributes", ()))
            horizon = data.get("horizon_days")
            fields = dict(
                groups=tuple(str(g) for g in data.get("groups", ())),
                attributes=attributes,
                event_types=tuple(str(t) for t in data.get("event_types", ())),
                channels=tuple(str(c) for c in data.get("channels", ())),
                event_windows_days=tuple(int(w) for w in data.get(
                    "event_windows_days", DEFAULT_EVENT_WINDOWS_DAYS)),
                detail_columns=tuple(str(c) for c in data.get("detail_columns", ())),
                horizon_days=None if horizon is None else int(horizon),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(
                f"the stored input spec is malformed ({type(exc).__name__}: {exc}). "
                "Suggestion: retrain or re-save the bundle."
            ) from exc
        return cls(**fields)  # type: ignore[arg-type]


NO_INPUTS = InputSpec()


def spec_of(obj: Any) -> InputSpec:
    """The :class:`InputSpec` of a model, a scorer, or their stored metadata.

    Reads (duck-typed) an ``input_spec_`` attribute (an :class:`InputSpec` or its dict),
    or an ``"input_spec"`` entry of ``obj`` itself, of its ``meta`` / ``_meta`` /
    ``card`` mapping; then the same of ``obj.model`` (a loaded artifact holds its model
    there). Anything without one (a model trained before richer inputs existed,
    ``None``) has :data:`NO_INPUTS`.
    """
    found = _own_spec(obj)
    if found is None:
        inner = getattr(obj, "model", None)
        found = None if inner is None or inner is obj else _own_spec(inner)
    return NO_INPUTS if found is None else found


def _own_spec(obj: Any) -> InputSpec | None:
    candidates: list[Any] = [getattr(obj, "input_spec_", None)]
    if isinstance(obj, Mapping):
        candidates.append(obj.get("input_spec"))
    for attribute in ("meta", "_meta", "card"):
        holder = getattr(obj, attribute, None)
        if isinstance(holder, Mapping):
            candidates.append(holder.get("input_spec"))
    for value in candidates:
        if isinstance(value, InputSpec):
            return value
        if isinstance(value, Mapping):
            return InputSpec.from_dict(value)
    return None


# --- learning the spec ----------------------------------------------------------------


def learn_input_spec(
    transactions: Transactions,
    inputs: InputTables | None,
    *,
    as_of: DateLike,
    horizon_days: int,
    calendar: bool | None = None,
    groups: Sequence[str] | None = None,
    event_windows_days: Sequence[int] = DEFAULT_EVENT_WINDOWS_DAYS,
) -> InputSpec:
    """What a model trained at ``as_of`` uses beside the required columns.

    Only data on or before ``as_of`` (its whole day) is looked at.

    - ``details``: when the transactions carry any optional column (``order_id``,
      ``quantity``, ``category``, ``channel``, ``discount``) with a value; the channels
      are those seen.
    - ``events``: when ``inputs.events`` is given; the event types seen.
    - ``attributes``: when ``inputs.customers`` is given; each attribute column, numeric
      (every present value of the rows valid on or before ``as_of`` a number) or text
      (its categories: those rows' values, as scoring reads them: ``1.0`` is ``"1"``).
    - ``calendar``: ``calendar=None`` means on when the transactions before ``as_of``
      span at least ``365 + horizon_days`` days; ``True``/``False`` force it.

    Parameters
    ----------
    transactions
        Clean transactions: a pandas frame, the out-of-core view or a PySpark DataFrame.
    inputs
        The customer and event tables (``None``: neither).
    as_of
        The training as-of date.
    horizon_days
        The model's horizon (the calendar group's window).
    calendar
        ``None`` (auto), ``True`` or ``False``.
    groups
        Restrict to these groups (the ablation); ``None``: every group the data allows.
    event_windows_days
        Windows of the event counts.

    Returns
    -------
    InputSpec
        :data:`NO_INPUTS` when nothing beside the required columns is used.
    """
    as_of_day = day_number(parse_date(as_of, name="as_of"))
    horizon = require_positive_int(horizon_days, name="horizon_days")
    inputs = inputs or InputTables()
    allowed = INPUT_GROUPS if groups is None else tuple(groups)
    unknown = [g for g in allowed if g not in INPUT_GROUPS]
    if unknown:
        raise ChurnlensError(
            f"unknown input group(s) {unknown}. Suggestion: choose among "
            + ", ".join(INPUT_GROUPS) + "."
        )
    want_details = "details" in allowed
    want_calendar = "calendar" in allowed and calendar is not False
    detail_columns: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    first_day: int | None = None
    if want_details or want_calendar:
        detail_columns, channels, first_day = _describe_transactions(transactions, as_of_day)
    chosen: list[str] = []
    if want_details and detail_columns:
        chosen.append("details")

    event_types: tuple[str, ...] = ()
    if "events" in allowed and inputs.events is not None:
        events = _events_frame(inputs.events)
        seen = events.loc[_days(events["timestamp"]) <= as_of_day, "event_type"]
        event_types = tuple(sorted({str(t) for t in seen.dropna().unique()}))
        if event_types:
            chosen.append("events")

    attributes: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    if "attributes" in allowed and inputs.customers is not None:
        attributes = _learn_attributes(_customers_frame(inputs.customers), as_of_day)
        if attributes:
            chosen.append("attributes")

    if want_calendar and first_day is not None and (
            calendar or as_of_day - first_day >= 365 + horizon):
        chosen.append("calendar")
    if not chosen:
        return NO_INPUTS
    return InputSpec(
        groups=tuple(chosen),
        attributes=attributes if "attributes" in chosen else (),
        event_types=event_types if "events" in chosen else (),
        channels=channels if "details" in chosen else (),
        event_windows_days=tuple(event_windows_days),
        detail_columns=detail_columns if "details" in chosen else (),
        horizon_days=horizon,
    )


def _learn_attributes(frame: pd.DataFrame, as_of_day: int
                      ) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    names = [c for c in frame.columns if c not in (CUSTOMER, VALID_FROM)]
    if VALID_FROM in frame.columns:
        # attributes_at's rule: no valid_from, or one on or before the as-of date's day
        next_day = pd.Timestamp(from_day_number(as_of_day + 1))
        valid_from = pd.to_datetime(frame[VALID_FROM])
        rows = frame.loc[valid_from.isna() | (valid_from < next_day)]
    else:
        rows = frame
    out: list[tuple[str, tuple[str, ...] | None]] = []
    for name in names:
        # numeric or text from the rows valid by the as-of date only (a later text cell
        # is counted at scoring, :func:`_non_numeric_counts`)
        if _is_numeric(rows[name]) or _all_numbers(rows[name]):
            out.append((str(name), None))
        else:
            # the scoring rule (_as_text_values: 1.0 is "1"), so training meets it
            values = _as_text_values(rows[name]).dropna().unique()
            out.append((str(name), tuple(sorted(str(v) for v in values))))
    return tuple(out)


def _describe_transactions(transactions: Transactions, as_of_day: int
                           ) -> tuple[tuple[str, ...], tuple[str, ...], int | None]:
    """(optional columns with a value, channels seen, first day) up to ``as_of_day``."""
    with _session(transactions, needs_transactions=True) as session:
        if session.tx is None:  # _session refuses missing transactions; for the type checker
            raise ChurnlensError("the transactions are needed. Suggestion: pass them.")
        columns = [c for c in DETAIL_COLUMNS if c in session.tx_columns]
        day = day_sql("event_time", session.dialect)
        counts = ", ".join(f"COUNT({c}) AS n_{i}" for i, c in enumerate(columns))
        select = f"SELECT MIN(day) AS first_day{', ' + counts if counts else ''} FROM (" \
                 f"SELECT {day} AS day{''.join(', ' + c for c in columns)} " \
                 f"FROM {session.tx}) AS dated WHERE day <= {int(as_of_day)}"
        row = session.collect(select)[0]
        first_day = None if row[0] is None else int(row[0])
        present = tuple(c for i, c in enumerate(columns) if row[1 + i])
        channels: tuple[str, ...] = ()
        if "channel" in present:
            found = session.collect(channels_select_sql(session.tx, as_of_day,
                                                        session.dialect))
            channels = check_channels(sorted({str(r[0]) for r in found}))
    return present, channels, first_day


# --- computing the features ----------------------------------------------------------


def input_features(
    transactions: Transactions,
    cutoffs: DateLike | Sequence[DateLike],
    spec: InputSpec,
    inputs: InputTables | None,
    *,
    date_column: str = "cutoff",
) -> Any:
    """The input features of every customer acquired by each cutoff.

    Parameters
    ----------
    transactions
        A clean pandas frame (or a path, loaded by :func:`churnlens.load_transactions`),
        the out-of-core view (:class:`~churnlens._loading_sql.CleanTransactions`) or a
        PySpark DataFrame (a PySpark DataFrame comes back; the customer and event tables
        are sent to Spark with ``spark.createDataFrame``).
    cutoffs
        One date or several: all are computed in one query.
    spec
        What to compute (:func:`learn_input_spec`).
    inputs
        The customer and event tables the spec needs.
    date_column
        The name of the date column (``cutoff`` for snapshots, ``as_of`` for scoring).

    Returns
    -------
    pandas.DataFrame or pyspark.sql.DataFrame
        ``customer_id``, ``date_column``, then ``spec.feature_names()``: one row per
        customer with a purchase occasion on or before the cutoff, per cutoff. pandas
        rows sorted by date then ``customer_id``; text attributes as ``Categorical``
        (unseen values NaN, counted in ``attrs["unseen_categories"]``, as the
        customers whose numeric attribute holds text that is not a number, at the last
        cutoff). On Spark the text
        attributes stay text (:func:`categorise_inputs` converts a pandas batch).

    Raises
    ------
    InputsRequiredError
        When the spec needs a table that ``inputs`` does not have.
    """
    inputs = inputs or InputTables()
    _require_inputs(spec, inputs)
    days = _cutoff_days(cutoffs)
    with _session(transactions, needs_transactions=True) as session:
        sql = _input_features_sql(session, spec, inputs, days, population=None,
                                  date_column=date_column)
        if session.dialect == "spark":
            return session.run(sql)
        out = session.run(sql)
        id_dtype = session.id_dtype
    if id_dtype is not None and out[CUSTOMER].dtype != id_dtype:
        out[CUSTOMER] = out[CUSTOMER].astype(id_dtype)
    out[date_column] = out[date_column].astype("datetime64[us]")
    out = out.sort_values([date_column, CUSTOMER], kind="stable", ignore_index=True)
    return _add_unseen(categorise_inputs(_typed(out, spec), spec),
                       _non_numeric_counts(inputs, spec, max(days)))


def create_input_features_table(
    clean: CleanTransactions,
    cutoffs: DateLike | Sequence[DateLike],
    spec: InputSpec,
    inputs: InputTables | None,
    table: str,
    *,
    date_column: str = "as_of",
) -> tuple[int, dict[str, int]]:
    """:func:`input_features` on the out-of-core view, kept as a DuckDB table.

    The rows of :func:`input_features` written to the temporary table ``table`` in
    ``clean.connection`` (its memory limit and spill folder), never read into pandas.
    Text attributes stay text (unseen values as given): :func:`categorise_inputs` turns a
    pandas batch read from the table into the model's categories.

    Returns
    -------
    tuple of (int, dict)
        The number of rows, and the rows per text attribute column whose value is not
        among the spec's categories (only columns with any), as
        ``attrs["unseen_categories"]``; numeric attributes count the customers whose
        value is text that is not a number.
    """
    inputs = inputs or InputTables()
    _require_inputs(spec, inputs)
    days = _cutoff_days(cutoffs)
    with _session(clean, needs_transactions=True) as session:
        sql = _input_features_sql(session, spec, inputs, days, population=None,
                                  date_column=date_column)
        con = clean.connection
        con.execute(f"CREATE TEMP TABLE {table} AS {sql}")
    checks = [f"SUM(CASE WHEN {name} IS NOT NULL AND {name} NOT IN ("
              + ", ".join(_sql_text(c) for c in spec.categories_of(name))
              + f") THEN 1 ELSE 0 END) AS {name}" if spec.categories_of(name)
              else f"COUNT({name}) AS {name}" for name in spec.categorical_features()]
    row = con.execute(f"SELECT count(*){''.join(', ' + c for c in checks)} "
                      f"FROM {table}").fetchall()[0]
    unseen = {name: int(count) for name, count in zip(spec.categorical_features(), row[1:],
                                                      strict=True) if count}
    unseen.update(_non_numeric_counts(inputs, spec, max(days)))
    return int(row[0]), unseen


def _sql_text(value: str) -> str:
    """A DuckDB text literal (quotes doubled; a backslash is no escape there)."""
    return "'" + str(value).replace("'", "''") + "'"


def with_input_features(
    frame: pd.DataFrame,
    spec: InputSpec,
    inputs: InputTables | None,
    transactions: Transactions,
    *,
    date_column: str,
    connection: Any = None,
) -> pd.DataFrame:
    """``frame`` with ``spec.feature_names()`` appended, for its own (customer, date) rows.

    A left join: every row of ``frame`` keeps its place and index, and gets the values
    at its own date (a customer with no event has the "no event" values: counts 0,
    ``days_since_<type>`` NaN; a customer missing from the customer table has NaN
    attributes). ``transactions`` is read only when the spec has the details or
    calendar group.

    Parameters
    ----------
    frame
        Has ``customer_id`` and ``date_column`` (dates; a date-time counts by its day).
    spec, inputs
        As for :func:`input_features`.
    transactions
        The clean transactions ``frame`` was computed from (pandas, out-of-core view or
        PySpark DataFrame).
    date_column
        ``cutoff`` (snapshots) or ``as_of`` (scoring).
    connection
        A DuckDB connection to run in (the API keeps one open for its micro-batches);
        what is registered or created in it is removed afterwards, and it stays open.
        ``None``: a fresh in-memory connection. Not used for Spark or out-of-core
        transactions, which run where they are.

    Returns
    -------
    pandas.DataFrame
        A new frame; ``attrs["unseen_categories"]`` counts the rows per categorical
        column whose value was not among the spec's categories, and per numeric
        attribute the customers whose value is text that is not a number (both scored
        as missing). ``frame`` itself when ``spec`` has no group.

    Raises
    ------
    InputsRequiredError
        When ``spec.requires_customers`` and ``inputs.customers`` is None, or
        ``spec.requires_events`` and ``inputs.events`` is None.

    Examples
    --------
    A's email of 2024-03-01 is 30 days before the as-of date: outside the window
    ``(as_of - 30, as_of]``, inside the 90-day one; B has no event.

    >>> events = pd.DataFrame({"customer_id": ["A", "A"],
    ...                        "timestamp": pd.to_datetime(["2024-03-01", "2024-03-20"]),
    ...                        "event_type": ["email_open", "email_open"]})
    >>> spec = InputSpec(groups=("events",), event_types=("email_open",))
    >>> frame = pd.DataFrame({"customer_id": ["A", "B"], "as_of": pd.Timestamp("2024-03-31")})
    >>> with_input_features(frame, spec, InputTables(events=events), None,
    ...                     date_column="as_of").iloc[:, 2:]
       days_since_email_open  email_open_count_30d  email_open_count_90d
    0                   11.0                     1                     2
    1                    NaN                     0                     0
    """
    if not spec.groups:
        return frame
    inputs = inputs or InputTables()
    _require_inputs(spec, inputs)
    missing = [c for c in (CUSTOMER, date_column) if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"the frame has no column {missing}. Suggestion: pass the frame of features "
            f"(customer_id and {date_column!r})."
        )
    if frame.empty:  # nothing to compute: the columns, typed
        empty = pd.DataFrame({name: pd.Series(dtype="float64", index=frame.index)
                              for name in spec.feature_names()})
        result = pd.concat([frame.drop(columns=[c for c in spec.feature_names()
                                                if c in frame.columns]),
                            _typed(empty, spec)], axis=1)
        result.attrs = dict(frame.attrs)
        return categorise_inputs(result, spec)
    keys = pd.DataFrame({CUSTOMER: frame[CUSTOMER].to_numpy(),
                         "cutoff_day": _days(pd.to_datetime(frame[date_column]))})
    # ngroup(sort=False) numbers the keys in order of first appearance, as drop_duplicates
    codes = keys.groupby([CUSTOMER, "cutoff_day"], sort=False, dropna=False).ngroup()
    population = keys.drop_duplicates(ignore_index=True)
    population["churnlens_row"] = np.arange(len(population), dtype="int64")
    needs_tx = bool({"details", "calendar"} & set(spec.groups))
    source = transactions if needs_tx else None
    with _session(source, needs_transactions=needs_tx, connection=connection) as session:
        sql = _input_features_sql(session, spec, inputs, sorted(set(population["cutoff_day"])),
                                  population=population, date_column=date_column)
        out = session.run(sql)
        if session.dialect == "spark":
            out = out.toArrow().to_pandas()
    out = out.set_index("churnlens_row").reindex(np.arange(len(population)))
    values = _typed(out.reset_index(drop=True), spec)[spec.feature_names()]
    values = values.iloc[np.asarray(codes)].set_axis(frame.index)
    result = pd.concat([frame.drop(columns=[c for c in spec.feature_names()
                                            if c in frame.columns]), values], axis=1)
    result.attrs = dict(frame.attrs)
    return _add_unseen(categorise_inputs(result, spec), _non_numeric_counts(
        inputs, spec, int(population["cutoff_day"].max()), population[CUSTOMER]))


def categorise_inputs(frame: pd.DataFrame, spec: InputSpec) -> pd.DataFrame:
    """The text attribute columns of ``frame`` as ``Categorical`` with the spec's categories.

    A value not among them becomes NaN; ``frame.attrs["unseen_categories"]`` says how
    many rows per column (only columns with any). Numeric input columns become float64.
    For pandas batches of a Spark result; :func:`input_features` and
    :func:`with_input_features` already do it.
    """
    unseen: dict[str, int] = {}
    for name in spec.categorical_features():
        if name not in frame.columns:
            continue
        categories = list(spec.categories_of(name))
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype) and list(
                column.cat.categories) == categories:
            continue
        text = _as_text_values(column)
        known = text.isin(categories).to_numpy(dtype=bool, na_value=False)
        lost = int((text.notna().to_numpy() & ~known).sum())
        typed = pd.Categorical(text.where(known), categories=categories)
        if lost:
            unseen[name] = lost
        frame[name] = pd.Series(typed, index=frame.index)
    previous = dict(frame.attrs.get("unseen_categories") or {})
    for name, count in unseen.items():
        previous[name] = previous.get(name, 0) + count
    frame.attrs["unseen_categories"] = previous
    return frame


def _typed(out: pd.DataFrame, spec: InputSpec) -> pd.DataFrame:
    """Counts as int64 (0 when absent), every other non-categorical column float64."""
    categorical = set(spec.categorical_features())
    counts = set(_count_names(spec))
    for name in spec.feature_names():
        if name in categorical:
            continue
        if name in counts:
            out[name] = out[name].fillna(0).astype("int64")
        else:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    return out


def _count_names(spec: InputSpec) -> list[str]:
    """The integer input features: counts, 0 when there is nothing to count."""
    out = [f"{sanitise_name(t)}_count_{w}d" for t in spec.event_types
           for w in spec.event_windows_days] if "events" in spec.groups else []
    return out + [name for name in spec.features_of("details") if name == "category_count"]


def _require_inputs(spec: InputSpec, inputs: InputTables) -> None:
    """Refuse a call without a table the model was trained with (what, and how to pass it)."""
    what: list[str] = []
    how: list[str] = []
    if spec.requires_customers and inputs.customers is None:
        names = ", ".join(name for name, _ in spec.attributes)
        what.append(f"a customer table (attributes: {names})")
        how.append("--customers-file (CLI) or customers= (Python)")
    if spec.requires_events and inputs.events is None:
        what.append(f"an event table (event types: {', '.join(spec.event_types)})")
        how.append("--events-file (CLI) or events= (Python)")
    if what:
        raise InputsRequiredError(
            f"the model was trained with {' and '.join(what)}, which this call does not "
            f"give. Suggestion: pass {'; '.join(how)}, with the same columns as in "
            "training."
        )


def _cutoff_days(cutoffs: DateLike | Sequence[DateLike]) -> list[int]:
    values = [cutoffs] if isinstance(cutoffs, str | dt.date | pd.Timestamp) else list(cutoffs)
    days = sorted({day_number(parse_date(c, name="cutoffs")) for c in values})
    if not days:
        raise ChurnlensError("cutoffs is empty. Suggestion: give at least one cutoff date.")
    return days


# --- the SQL --------------------------------------------------------------------------


def _input_features_sql(session: _Session, spec: InputSpec, inputs: InputTables,
                        cutoff_days: Sequence[int], *, population: pd.DataFrame | None,
                        date_column: str) -> str:
    """One statement: the population's rows with every input feature of ``spec``."""
    dialect = session.dialect
    if "details" in spec.groups and session.tx is not None:
        absent = [c for c in spec.detail_columns if c not in session.tx_columns]
        if absent:
            flags = ", ".join(f"--{c.split('_')[0]}-col ({c.split('_')[0]}_col=)"
                              for c in absent)
            raise InputsRequiredError(
                f"the model was trained with the transactions' optional column(s) {absent}, "
                f"which these transactions do not have. Suggestion: name them with {flags}."
            )
    cutoffs = "(" + " UNION ALL ".join(f"SELECT {int(c)} AS cutoff_day"
                                       for c in cutoff_days) + ")"
    # ids are joined as integers when every table has integer ids, else as text (the
    # loader's rule writes an integer id as its digits, so 12 and "12" are one customer)
    text_keys = session.id_kind == "text"
    side_kinds: list[str] = []
    events = customers = None
    if "events" in spec.groups and inputs.events is not None:
        events = _events_tables(inputs.events, spec, cutoff_days)
        side_kinds.append(_id_kind(events[0][CUSTOMER]))
    if "attributes" in spec.groups and inputs.customers is not None:
        customers = _customers_table(inputs.customers, spec, max(cutoff_days))
        side_kinds.append(_id_kind(customers[CUSTOMER]))
    if population is not None:
        side_kinds.append(_id_kind(population[CUSTOMER]))
    text_keys = text_keys or any(kind != "int" for kind in side_kinds)

    def key(expr: str) -> str:
        return f"CAST({expr} AS {session.text})" if text_keys else expr

    if population is None:
        day = day_sql("event_time", dialect)
        population_sql = f"""(
SELECT f.customer_id, cu.cutoff_day FROM (
    SELECT customer_id, MIN(day) AS first_day FROM (
        SELECT customer_id, day, SUM(units) AS net_units FROM (
            SELECT customer_id, {day} AS day, {amount_units_sql("amount", dialect)} AS units
            FROM {session.tx}) AS dated
        WHERE day <= {int(max(cutoff_days))}
        GROUP BY customer_id, day) AS daily
    WHERE net_units > 0
    GROUP BY customer_id) AS f
JOIN {cutoffs} AS cu ON f.first_day <= cu.cutoff_day)"""
        carried = ""
    else:
        table = population.copy()
        if text_keys:
            table[CUSTOMER] = _as_text_ids(table[CUSTOMER])
        population_sql = session.register(table, {
            CUSTOMER: "text" if text_keys else "int", "cutoff_day": "int",
            "churnlens_row": "int"})
        carried = "p.churnlens_row, "

    joins: list[str] = []
    columns: list[str] = []
    date_sql = ("CAST(DATE '1970-01-01' + CAST(p.cutoff_day AS INTEGER) AS TIMESTAMP)"
                if dialect == "duckdb"
                else "date_add(DATE '1970-01-01', CAST(p.cutoff_day AS INT))")
    for group in spec.groups:
        if group == "events" and events is not None:
            last_table, day_table = events
            id_kind = "text" if text_keys else "int"
            if text_keys:
                last_table[CUSTOMER] = _as_text_ids(last_table[CUSTOMER])
                day_table[CUSTOMER] = _as_text_ids(day_table[CUSTOMER])
            lasts = session.register(last_table, {CUSTOMER: id_kind, "type_index": "int",
                                                  "bucket_day": "int", "last_day": "int"})
            days = session.register(day_table, {CUSTOMER: id_kind, "type_index": "int",
                                                "day": "int", "n": "int"})
            last_items, count_items = [], []
            for i, kind in enumerate(spec.event_types):
                part = sanitise_name(kind)
                last_items.append(
                    f"MAX(CASE WHEN el.type_index = {i} THEN el.last_day END) AS last_{i}")
                # quoted: a type may start with a digit ("1st visit" -> 1st_visit_count_30d)
                columns.append(f"CAST(p.cutoff_day - e.last_{i} AS DOUBLE) "
                               f"AS {_ident(f'days_since_{part}', dialect)}")
                for w in spec.event_windows_days:
                    count_items.append(
                        f"SUM(CASE WHEN ed.type_index = {i} AND ed.day > cu.cutoff_day - "
                        f"{int(w)} THEN ed.n ELSE 0 END) AS count_{i}_{int(w)}")
                    columns.append(f"CAST(COALESCE(n.count_{i}_{int(w)}, 0) AS BIGINT) "
                                   f"AS {_ident(f'{part}_count_{int(w)}d', dialect)}")
            longest = max(spec.event_windows_days)
            # the last event: one row per (customer, type, cutoff interval) holding it;
            # the counts: only the days some window of some cutoff covers
            joins.append(f"""LEFT JOIN (
    SELECT el.customer_id, cu.cutoff_day, {", ".join(last_items)}
    FROM {lasts} AS el JOIN {cutoffs} AS cu ON el.bucket_day <= cu.cutoff_day
    GROUP BY el.customer_id, cu.cutoff_day) AS e
  ON e.customer_id = {key("p.customer_id")} AND e.cutoff_day = p.cutoff_day
LEFT JOIN (
    SELECT ed.customer_id, cu.cutoff_day, {", ".join(count_items)}
    FROM {days} AS ed JOIN {cutoffs} AS cu
      ON ed.day <= cu.cutoff_day AND ed.day > cu.cutoff_day - {int(longest)}
    GROUP BY ed.customer_id, cu.cutoff_day) AS n
  ON n.customer_id = {key("p.customer_id")} AND n.cutoff_day = p.cutoff_day""")
        elif group == "attributes" and customers is not None:
            if text_keys:
                customers[CUSTOMER] = _as_text_ids(customers[CUSTOMER])
            kinds = {CUSTOMER: "text" if text_keys else "int", "valid_day": "int",
                     "valid_order": "int"}
            picked = []
            for i, (attribute, categories) in enumerate(spec.attributes):
                kinds[f"a_{i}"] = "double" if categories is None else "text"
                picked.append(f"c.a_{i}")
                cast = "DOUBLE" if categories is None else session.text
                columns.append(f"CAST(a.a_{i} AS {cast}) "
                               f"AS attr_{sanitise_name(attribute)}")
            name = session.register(customers, kinds)
            joins.append(f"""LEFT JOIN (
    SELECT customer_id, cutoff_day, {", ".join(p.split(".")[1] for p in picked)} FROM (
        SELECT c.customer_id, cu.cutoff_day, {", ".join(picked)},
               ROW_NUMBER() OVER (PARTITION BY c.customer_id, cu.cutoff_day
                                  ORDER BY c.valid_order DESC) AS churnlens_rank
        FROM {name} AS c JOIN {cutoffs} AS cu ON c.valid_day <= cu.cutoff_day) AS ranked
    WHERE churnlens_rank = 1) AS a
  ON a.customer_id = {key("p.customer_id")} AND a.cutoff_day = p.cutoff_day""")
        elif group in ("details", "calendar"):
            if session.tx is None:
                raise ChurnlensError(
                    f"the {group} input features need the transactions. Suggestion: pass "
                    "them."
                )
            alias = "d" if group == "details" else "k"
            if group == "details":
                sql = details_select_sql(
                    session.tx, cutoffs, columns=list(spec.detail_columns),
                    channels=list(spec.channels), dialect=dialect, date_column=_JOIN_DATE)
            else:
                sql = calendar_select_sql(
                    session.tx, cutoffs, horizon_days=int(spec.horizon_days or 0),
                    dialect=dialect, date_column=_JOIN_DATE)
            columns += [f"{alias}.{_ident(feature, dialect)} AS {_ident(feature, dialect)}"
                        for feature in spec.features_of(group)]
            # the builders' ids are the transactions' own: compare them as the population's
            joins.append(f"LEFT JOIN ({sql}) AS {alias}\n  ON {key(alias + '.customer_id')} = "
                         f"{key('p.customer_id')} AND {alias}.{_JOIN_DATE} = {date_sql}")
    body = "".join(f",\n       {c}" for c in columns)
    return (f"SELECT {carried}p.customer_id, {date_sql} AS {date_column}{body}\n"
            f"FROM {population_sql} AS p\n" + "\n".join(joins))


def _events_tables(events: CleanEvents | pd.DataFrame, spec: InputSpec,
                   cutoff_days: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events of the spec's types, reduced for the two questions asked at each cutoff.

    ``(lasts, days)``. ``lasts``: per (customer, type, bucket) the last event day, where
    an event's bucket is the first cutoff on or after its day (the last event on or
    before cutoff ``c`` is the latest ``last_day`` of the buckets ``<= c``), so the join
    with the cutoffs has a few rows per customer and type whatever the number of events.
    ``days``: events per (customer, type, day), only the days within the longest window
    of their bucket (the only ones a count can see).
    """
    cutoffs = np.asarray(sorted(cutoff_days), dtype="int64")
    table = _events_days(events, spec, int(cutoffs[-1]))
    bucket = cutoffs[np.searchsorted(cutoffs, table["day"].to_numpy(), side="left")]
    lasts = (table.assign(bucket_day=bucket)
             .groupby([CUSTOMER, "type_index", "bucket_day"], sort=False)["day"].max()
             .rename("last_day").reset_index())
    covered = table["day"].to_numpy() > bucket - max(spec.event_windows_days)
    return lasts, table.loc[covered].reset_index(drop=True)


def _events_days(events: CleanEvents | pd.DataFrame, spec: InputSpec,
                 last_day: int) -> pd.DataFrame:
    """Events of the spec's types up to ``last_day``: one row per (customer, type, day)."""
    frame = _events_frame(events)
    # the position of each event's type among the spec's (-1: a type the model ignores)
    codes = pd.Index(list(spec.event_types), dtype=object).get_indexer(
        frame["event_type"].astype(object))
    day = _days(frame["timestamp"]).to_numpy()
    keep = (codes >= 0) & (day <= last_day)
    table = pd.DataFrame({CUSTOMER: frame[CUSTOMER].to_numpy()[keep],
                          "type_index": codes[keep].astype("int64"),
                          "day": day[keep]})
    grouped = table.groupby([CUSTOMER, "type_index", "day"], sort=False).size()
    out = grouped.rename("n").reset_index()
    out["n"] = out["n"].astype("int64")
    return out


def _customers_table(customers: CleanCustomers | pd.DataFrame, spec: InputSpec,
                     last_day: int) -> pd.DataFrame:
    """The customer rows valid by ``last_day``: id, valid day and order, ``a_<i>``."""
    frame = _customers_frame(customers)
    absent = [name for name, _ in spec.attributes if name not in frame.columns]
    if absent:
        raise InputsRequiredError(
            f"the customer table has no column {absent}: the model was trained with the "
            f"attributes {[name for name, _ in spec.attributes]}. Suggestion: pass the "
            "customer table with the same columns as in training."
        )
    table = pd.DataFrame({CUSTOMER: frame[CUSTOMER].to_numpy()})
    if VALID_FROM in frame.columns:
        stamps = pd.to_datetime(frame[VALID_FROM])
        present = stamps.notna().to_numpy()
        days = np.full(len(frame), _ALWAYS_DAY, dtype="int64")
        days[present] = _days(stamps[present]).to_numpy()
        order = np.full(len(frame), _ALWAYS_ORDER, dtype="int64")
        order[present] = (stamps[present].astype("datetime64[us]").astype("int64")).to_numpy()
    else:
        days = np.full(len(frame), _ALWAYS_DAY, dtype="int64")
        order = np.zeros(len(frame), dtype="int64")
    table["valid_day"] = days
    table["valid_order"] = order
    for i, (name, categories) in enumerate(spec.attributes):
        column = frame[name]
        if categories is None:
            table[f"a_{i}"] = _numbers(column)[0].to_numpy()
        else:
            table[f"a_{i}"] = _as_text_values(column).to_numpy()
    return table.loc[table["valid_day"] <= last_day].reset_index(drop=True)


def _numbers(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A numeric attribute as float64, and where a cell held text that is not a number
    (read as missing). Surrounding spaces are ignored; an empty cell is missing."""
    if _is_numeric(column):
        numbers = column.astype("float64")
        return numbers, pd.Series(False, index=column.index)
    text = column.astype(object).map(
        lambda v: None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
        else v if isinstance(v, int | float) and not isinstance(v, bool) else str(v).strip()
    )
    text = text.mask(text.map(lambda v: isinstance(v, str) and v == ""))
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = text.notna() & (numbers.isna() | ~np.isfinite(numbers.fillna(0.0)))
    return numbers.mask(bad), bad


def _all_numbers(column: pd.Series) -> bool:
    """Whether a text column's present values are all numbers (``_inputs``' rule), and
    it has one at least."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
        return False
    if column.map(lambda v: isinstance(v, bool)).any():
        return False
    numbers, bad = _numbers(column)
    return bool(numbers.notna().any()) and not bool(bad.any())


def _non_numeric_counts(inputs: InputTables, spec: InputSpec, last_day: int,
                        ids: pd.Series | None = None) -> dict[str, int]:
    """Customers whose numeric attribute holds text that is not a number (scored as
    missing), per ``attr_<name>`` column: in each customer's row valid at ``last_day``
    (of ``ids`` only, when given). Only columns with any."""
    if "attributes" not in spec.groups or inputs.customers is None:
        return {}
    numeric = [(i, name) for i, (name, categories) in enumerate(spec.attributes)
               if categories is None]
    if not numeric:
        return {}
    frame = _customers_frame(inputs.customers)
    numeric = [(i, name) for i, name in numeric
               if name in frame.columns and not _is_numeric(frame[name])]
    if not numeric:
        return {}
    # the flags (1.0: text that is not a number) picked by _customers_table's own rule
    flags = frame[[c for c in (CUSTOMER, VALID_FROM) if c in frame.columns]].copy()
    for _, name in numeric:
        flags[name] = _numbers(frame[name])[1].astype("float64")
    only = InputSpec(groups=("attributes",),
                     attributes=tuple((name, None) for _, name in numeric))
    table = _customers_table(flags, only, last_day)
    latest = table.sort_values("valid_order", kind="stable").drop_duplicates(
        CUSTOMER, keep="last")
    if ids is not None:
        wanted = set(_as_text_ids(pd.Series(ids)).dropna())
        latest = latest.loc[_as_text_ids(latest[CUSTOMER]).isin(wanted).to_numpy()]
    out: dict[str, int] = {}
    for j, (_, name) in enumerate(numeric):
        bad = int(latest[f"a_{j}"].sum())
        if bad:
            out[f"attr_{sanitise_name(name)}"] = bad
    return out


def _add_unseen(frame: pd.DataFrame, counts: Mapping[str, int]) -> pd.DataFrame:
    """``counts`` added to ``frame.attrs["unseen_categories"]``."""
    if counts:
        unseen = dict(frame.attrs.get("unseen_categories") or {})
        for name, count in counts.items():
            unseen[name] = unseen.get(name, 0) + count
        frame.attrs["unseen_categories"] = unseen
    return frame


def _as_text_values(column: pd.Series) -> pd.Series:
    """Attribute values as text (``string``, NA when missing); a whole float prints as
    an integer (``1.0`` is ``"1"``)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    if pd.api.types.is_string_dtype(column.dtype) and not pd.api.types.is_object_dtype(
            column.dtype):
        return column.astype("string")

    def text(value: Any) -> str | None:
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return column.astype(object).map(text).astype("string")


def _as_text_ids(ids: pd.Series) -> pd.Series:
    """Ids as text, an integer as its digits (the loader's rule: ``12`` is ``"12"``)."""
    if pd.api.types.is_integer_dtype(ids):
        return ids.astype("string")
    if pd.api.types.is_string_dtype(ids) and not pd.api.types.is_object_dtype(ids):
        return ids
    return ids.astype(object).map(lambda v: None if v is None or v is pd.NA else str(v))


def _events_frame(events: CleanEvents | pd.DataFrame) -> pd.DataFrame:
    frame = events.events if isinstance(events, CleanEvents) else events
    if not {CUSTOMER, "timestamp", "event_type"} <= set(frame.columns):
        raise DataValidationError(
            "the event table has no clean customer_id, timestamp and event_type columns. "
            "Suggestion: load it with churnlens.load_events first."
        )
    if frame.empty:  # no event at all: the types do not matter
        return frame.assign(timestamp=pd.Series(dtype="datetime64[us]"))
    if not pd.api.types.is_datetime64_dtype(frame["timestamp"]):
        raise DataValidationError(
            "the event table has no clean customer_id, timestamp and event_type columns. "
            "Suggestion: load it with churnlens.load_events first."
        )
    return frame


def _customers_frame(customers: CleanCustomers | pd.DataFrame) -> pd.DataFrame:
    frame = customers.customers if isinstance(customers, CleanCustomers) else customers
    if CUSTOMER not in frame.columns:
        raise DataValidationError(
            f"the customer table has no {CUSTOMER!r} column. Suggestion: load it with "
            "churnlens.load_customers first."
        )
    return frame


def _is_numeric(column: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column)) and not (
        pd.api.types.is_bool_dtype(column))


def _days(values: pd.Series) -> pd.Series:
    """Day numbers (days since 1970-01-01) of naive timestamps."""
    stamps = pd.to_datetime(values).astype("datetime64[us]")
    days = stamps.dt.normalize().astype("int64") // 86_400_000_000
    return days.astype("int64")


def _id_kind(ids: pd.Series) -> str:
    return "int" if pd.api.types.is_integer_dtype(ids) else "text"


# --- running on DuckDB or Spark ---------------------------------------------------------


@dataclasses.dataclass
class _Session:
    """Where the statement runs: the engine, the transactions' view, registered tables."""

    dialect: Dialect
    tx: str | None
    tx_columns: tuple[str, ...]
    id_kind: str | None
    id_dtype: Any
    register: Callable[[pd.DataFrame, dict[str, str]], str]
    run: Callable[[str], Any]
    collect: Callable[[str], list[tuple[Any, ...]]]

    @property
    def text(self) -> str:
        return "VARCHAR" if self.dialect == "duckdb" else "STRING"


@contextlib.contextmanager
def _session(transactions: Transactions, *, needs_transactions: bool,
             connection: Any = None) -> Iterator[_Session]:
    """Where to run: Spark for a PySpark DataFrame, the view's own connection out of
    core, else ``connection`` (a DuckDB connection the caller keeps open) or a fresh
    in-memory one. Everything registered or created here is removed afterwards."""
    if needs_transactions and transactions is None:
        raise ChurnlensError(
            "these input features need the transactions. Suggestion: pass them.")
    if transactions is not None and is_spark_frame(transactions):
        with _spark_session(transactions) as session:
            yield session
        return
    tag = uuid.uuid4().hex
    made: list[tuple[str, str]] = []
    registered: list[str] = []
    select: str | None = None
    id_kind: str | None = None
    id_dtype: Any = None
    columns: tuple[str, ...] = ()
    if isinstance(transactions, CleanTransactions):
        con = transactions.connection
        owned = False
        columns = tuple(con.sql(f"SELECT * FROM {transactions.view} LIMIT 0").columns)
        select = _tx_select(columns, transactions.view)
        id_type = str(con.sql(f"SELECT customer_id FROM {transactions.view} LIMIT 0").types[0])
        id_kind = "int" if id_type.upper() in (
            "BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER",
        ) else "text"
    else:
        frame = None if transactions is None else _pandas_transactions(transactions)
        owned = connection is None
        con = connect() if connection is None else connection
        if frame is not None:
            columns = tuple(c for c in (CUSTOMER, TIMESTAMP, AMOUNT, *DETAIL_COLUMNS)
                            if c in frame.columns)
            id_kind, id_dtype = _id_kind(frame[CUSTOMER]), frame[CUSTOMER].dtype
            name = f"churnlens_tx_{tag}"
            con.register(name, frame[list(columns)])
            registered.append(name)
            select = _tx_select(columns, name)
    tx_view = None
    if select is not None:
        tx_view = f"churnlens_input_tx_{tag}"
        con.execute(f"CREATE TEMP VIEW {tx_view} AS {select}")
        made.append(("VIEW", tx_view))

    def register(table: pd.DataFrame, kinds: dict[str, str]) -> str:
        name = f"churnlens_input_{tag}_{len(registered)}"
        con.register(name, table)
        registered.append(name)
        return name

    def run(sql: str) -> pd.DataFrame:
        table = con.sql(sql).to_arrow_table()
        return table.to_pandas()

    def collect(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in con.execute(sql).fetchall()]

    try:
        yield _Session("duckdb", tx_view, columns, id_kind, id_dtype, register, run, collect)
    finally:
        if owned:
            con.close()
        else:  # the view first: it reads a registered frame
            for kind, name in reversed(made):
                con.execute(f"DROP {kind} IF EXISTS {name}")
            for name in registered:
                con.unregister(name)


def _tx_select(columns: Sequence[str], source: str) -> str:
    optional = "".join(f", {c}" for c in DETAIL_COLUMNS if c in columns)
    return (f'SELECT customer_id, "timestamp" AS event_time, amount{optional} FROM {source} '
            "WHERE customer_id IS NOT NULL AND \"timestamp\" IS NOT NULL AND amount IS NOT NULL")


_SPARK_TYPES = {"int": "BIGINT", "double": "DOUBLE"}


@contextlib.contextmanager
def _spark_session(frame: Any) -> Iterator[_Session]:
    spark = frame.sparkSession
    tag = uuid.uuid4().hex
    columns = tuple(str(c) for c in frame.columns)
    for required in (CUSTOMER, TIMESTAMP, AMOUNT):
        if required not in columns:
            raise DataValidationError(
                f"the Spark DataFrame has no column {required!r}; columns found: "
                f"{list(columns)}. Suggestion: load it with churnlens' Spark loader."
            )
    optional = [c for c in DETAIL_COLUMNS if c in columns]
    tx_view = f"churnlens_input_tx_{tag}"
    frame.selectExpr(
        f"`{CUSTOMER}` AS customer_id", f"`{TIMESTAMP}` AS event_time",
        f"CAST(`{AMOUNT}` AS DOUBLE) AS amount", *[f"`{c}` AS {c}" for c in optional],
    ).where("customer_id IS NOT NULL AND event_time IS NOT NULL AND amount IS NOT NULL"
            ).createOrReplaceTempView(tx_view)
    views = [tx_view]
    id_type = frame.schema[CUSTOMER].dataType.typeName()
    id_kind = "int" if id_type in ("long", "integer", "short", "byte") else "text"

    def register(table: pd.DataFrame, kinds: dict[str, str]) -> str:
        name = f"churnlens_input_{tag}_{len(views)}"
        schema = ", ".join(f"`{c}` {_SPARK_TYPES.get(kinds[c], 'STRING')}"
                           for c in table.columns)
        if _pyspark_major() >= 4:  # straight from Arrow, no Python object per value
            import pyarrow as pa

            types = {"int": pa.int64(), "double": pa.float64()}
            # from_pandas: a NaN is a null, as in the rows below
            arrow = pa.table({c: pa.array(_arrow_values(table[c], kinds[c]),
                                          type=types.get(kinds[c], pa.string()),
                                          from_pandas=True)
                              for c in table.columns})
            loaded = spark.createDataFrame(arrow, schema=schema)
        else:  # PySpark 3.5 takes no Arrow table
            rows = [tuple(None if _missing(v) else _plain(v) for v in row)
                    for row in table.itertuples(index=False, name=None)]
            loaded = spark.createDataFrame(rows, schema=schema)
        loaded.createOrReplaceTempView(name)
        views.append(name)
        return name

    def run(sql: str) -> Any:
        return spark.sql(sql)

    def collect(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in spark.sql(sql).collect()]

    try:
        yield _Session("spark", tx_view, ("customer_id", "timestamp", "amount", *optional),
                       id_kind, None, register, run, collect)
    finally:
        for name in views:
            spark.catalog.dropTempView(name)


def _arrow_values(column: pd.Series, kind: str) -> list[Any] | np.ndarray:
    """A column for ``pyarrow.array``: numbers as NumPy, text as str/None (NaN -> null)."""
    if kind in ("int", "double"):
        return column.to_numpy(dtype="int64" if kind == "int" else "float64")
    return [None if _missing(v) else str(v) for v in column.tolist()]


def _pyspark_major() -> int:
    import pyspark

    return int(str(pyspark.__version__).split(".")[0])


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _plain(value: Any) -> Any:
    """NumPy scalars as Python values (what Spark's schema check accepts)."""
    return value.item() if isinstance(value, np.generic) else value


def _pandas_transactions(transactions: Transactions) -> pd.DataFrame:
    """Clean transactions for DuckDB, the optional (detail) columns checked too."""
    return _clean_frame(transactions, optional=DETAIL_COLUMNS)
