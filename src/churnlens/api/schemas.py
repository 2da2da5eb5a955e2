"""Request and response models of the HTTP API, named by role.

They check the shape and the types of a request (JSON types, ISO 8601 text, dates
the whole stack handles). The data contract itself (which customer ids read as
missing, how a UTC offset is converted, which amounts are too large) is the loader's:
:mod:`churnlens.api.scoring` applies :mod:`churnlens._loading`'s rules to the values.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from churnlens._engine import MAX_ABS_AMOUNT
from churnlens._validation import PLAUSIBLE_DATES

__all__ = [
    "AtRiskFacets",
    "AtRiskItem",
    "AtRiskPage",
    "BacktestPeriod",
    "Cohort",
    "CohortTable",
    "CustomerHistory",
    "CustomerScore",
    "ErrorDetail",
    "Event",
    "Health",
    "ModelInfo",
    "MonitorAlertOut",
    "MonitoringReport",
    "Outlook",
    "ProfitTermsOut",
    "Purchase",
    "PurchaseDay",
    "PurchaseHistoryOut",
    "RateWithInterval",
    "ReloadResult",
    "RetentionPeriod",
    "RetentionRatesOut",
    "RetentionSeries",
    "ScoreRequest",
    "ScoreResponse",
    "StoredCustomer",
    "Unscored",
]

MAX_CUSTOMERS = 10_000
MAX_PURCHASES = 1_000_000
# Richer inputs (issue 21): events per request (413 beyond, like purchases), attributes
# per customer (422 beyond), and the lengths of their names and text values.
MAX_EVENTS = 1_000_000
MAX_ATTRIBUTES = 100
MAX_NAME_LENGTH = 100
MAX_TEXT_LENGTH = 256
# Values of one attribute listed by GET /at-risk/facets (the web page's select).
MAX_FACET_VALUES = 200
# The supported dates: the loader's and the CLI's range (one constant, _validation).
DATE_MIN, DATE_MAX = PLAUSIBLE_DATES

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# The longest timestamp text read: "2024-03-05T14:30:00.123456789+01:00" takes 35; longer
# text is no ISO 8601 timestamp the loader reads (and is not echoed back in full).
MAX_TIMESTAMP_LENGTH = 64


def _iso_text(value: Any) -> Any:
    # Text only: pydantic would read a number (or a string of digits) as a Unix time.
    if not isinstance(value, str):
        raise ValueError("must be text: an ISO 8601 date or date-time such as 2024-03-05")
    if not _ISO_DATE.match(value):
        raise ValueError(f"not an ISO 8601 date or date-time: {value[:40]!r}")
    return value


def _iso_date_text(value: Any) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value  # already a date (Python callers)
    _iso_text(value)
    if not _ISO_DATE.fullmatch(value):
        raise ValueError(f"not a date YYYY-MM-DD: {value[:40]!r}")
    return value


def _in_range(day: dt.date) -> None:
    if not DATE_MIN <= day <= DATE_MAX:
        raise ValueError(f"dates must be between {DATE_MIN} and {DATE_MAX}")


def _timestamp_text(value: Any) -> str:
    """An ISO 8601 date or date-time in range, kept as the text sent.

    The text is converted (offsets to UTC) by the loader's timestamp rule when the
    request is scored, so the API and ``load_transactions`` give the same time.
    """
    _iso_text(value)
    if len(value) > MAX_TIMESTAMP_LENGTH:
        raise ValueError(f"not an ISO 8601 date or date-time: {value[:40]!r}... (longer "
                         f"than {MAX_TIMESTAMP_LENGTH} characters)")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or date-time: {value[:40]!r}") from None
    # The wall-clock day: a UTC offset moves it by a day at most, inside the margin.
    _in_range(parsed.date())
    return value


def _checked_date(value: dt.date) -> dt.date:
    _in_range(value)
    return value


Timestamp = Annotated[str, BeforeValidator(_timestamp_text),
                      WithJsonSchema({"type": "string", "format": "date-time",
                                      "maxLength": MAX_TIMESTAMP_LENGTH})]
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date_text), AfterValidator(_checked_date)]
CustomerId = (Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]
              | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)])
# The bound is the loader's (amounts_in_range, _engine.MAX_ABS_AMOUNT), checked with its
# rule and message when the request is scored; the schema documents it.
Amount = Annotated[float, Field(strict=True, allow_inf_nan=False),
                   WithJsonSchema({"type": "number", "exclusiveMinimum": -MAX_ABS_AMOUNT,
                                   "exclusiveMaximum": MAX_ABS_AMOUNT})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Purchase(_Strict):
    """One transaction: when, and how much (negative = refund)."""

    timestamp: Timestamp = Field(
        description="ISO 8601 date or date-time (2024-03-05, 2024-03-05T14:30:00+01:00). "
                    "Times with an offset are converted to UTC; times without one are taken "
                    "as given.", examples=["2024-03-05T14:30:00+01:00"])
    amount: Amount = Field(description="Net amount; negative for a refund.", examples=[20.0])
    # The transactions' optional columns (issue 21): required (each key present, null
    # allowed) for a model trained with them, ignored otherwise; cleaned by the loader's
    # rules for these columns when the request is scored.
    order_id: CustomerId | None = Field(
        default=None, description="Optional: the order (for a model trained with an order "
                                  "id column; kept as given).")
    quantity: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = Field(
        default=None, description="Optional: items of the row (a model trained with a "
                                  "quantity column).")
    category: Annotated[str, StringConstraints(strict=True, max_length=MAX_TEXT_LENGTH)
                        ] | None = Field(
        default=None, description="Optional: product category (a model trained with a "
                                  "category column; blank is missing).")
    channel: Annotated[str, StringConstraints(strict=True, max_length=MAX_TEXT_LENGTH)
                       ] | None = Field(
        default=None, description="Optional: sales channel of the purchase (a model trained "
                                  "with a channel column; blank is missing).")
    discount: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)] | None = Field(
        default=None, description="Optional: the amount taken off the price, 0 or more (a "
                                  "model trained with a discount column; null is 0).")


Name = Annotated[str, StringConstraints(strict=True, min_length=1,
                                         max_length=MAX_NAME_LENGTH)]
# An attribute's value: text (a categorical attribute), a number (a numeric one) or null
# (missing). Which one an attribute must be is the model's (its input spec), checked
# when the request is scored (api/scoring), with a 422 naming the attribute.
AttributeValue = (Annotated[str, StringConstraints(strict=True, max_length=MAX_TEXT_LENGTH)]
                  | Annotated[float, Field(strict=True, allow_inf_nan=False)] | None)


class Event(_Strict):
    """One event of a customer (an email opened, a site visit, a support ticket...)."""

    timestamp: Timestamp = Field(
        description="ISO 8601 date or date-time, as a purchase's (offsets converted to "
                    "UTC). Events after as_of are ignored.",
        examples=["2024-03-01T09:12:00+01:00"])
    event_type: Name = Field(description="The event's type, as in the event table the "
                                         "model was trained with (surrounding spaces "
                                         "removed).", examples=["email_open"])
    value: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = Field(
        default=None, description="Optional number of the event (pages viewed...).")


class CustomerHistory(_Strict):
    """A customer's purchase history, and their attributes and events when the model
    uses them."""

    customer_id: CustomerId = Field(examples=["C0000042"])
    purchases: list[Purchase]
    attributes: dict[Name, AttributeValue] | None = Field(
        default=None, max_length=MAX_ATTRIBUTES,
        description="The customer's attributes valid at as_of (a row of the customer table: "
                    "name -> text, number or null for missing), at most "
                    f"{MAX_ATTRIBUTES} names. Required (an object, possibly empty) when the "
                    "model was trained with a customer table (422 otherwise); an attribute "
                    "left out is missing. Attributes the model does not use are ignored, "
                    "and a category it never saw is scored as missing: both named in the "
                    "answer's warnings.",
        examples=[{"channel": "web", "age": 34}])
    events: list[Event] | None = Field(
        default=None,
        description="The customer's events (any order). Required (a list, [] for none) when "
                    "the model was trained with an event table (422 otherwise). Events "
                    "after as_of are ignored; types the model does not use are ignored and "
                    "named in the answer's warnings.")


class ScoreRequest(_Strict):
    """Customers to score at an as-of date (purchases after it are ignored)."""

    as_of: IsoDate = Field(description="Scoring date, YYYY-MM-DD (its whole day included).",
                           examples=["2024-06-30"])
    customers: list[CustomerHistory] = Field(
        description=f"At most {MAX_CUSTOMERS:,} customers, {MAX_PURCHASES:,} purchases and "
                    f"{MAX_EVENTS:,} events in all (413 beyond); customer ids unique "
                    "(compared as text).")


# The value outputs of a score (churnlens._value, docs/value.md): null for a model
# trained without a value model (retrain), days_to_next_purchase also when the chance of
# buying again is at most 1/2.
_VALUE_FIELDS = {
    "p_alive": "Probability that the customer has not dropped out by the as-of date.",
    "expected_purchases": "Expected purchase occasions in the horizon.",
    "days_to_next_purchase": "Median days to the next purchase occasion; null when the "
                             "chance of ever buying again is at most 1/2.",
    "expected_spend": "Expected net spend in the horizon (expected purchases times the "
                      "expected spend per occasion).",
    "clv": "Discounted expected spend over the CLV period (scoring.value: 12 months, 10% a "
           "year by default).",
}


class CustomerScore(BaseModel):
    """Churn risk of one customer, with what it is worth and why."""

    customer_id: str | int
    churn_risk: float = Field(ge=0, le=1)
    risk_band: Literal["high", "medium", "low"]
    expected_value: float
    value_at_risk: float
    p_alive: float | None = Field(default=None, ge=0, le=1, description=_VALUE_FIELDS["p_alive"])
    expected_purchases: float | None = Field(
        default=None, ge=0, description=_VALUE_FIELDS["expected_purchases"])
    days_to_next_purchase: float | None = Field(
        default=None, ge=0, description=_VALUE_FIELDS["days_to_next_purchase"])
    expected_spend: float | None = Field(default=None,
                                         description=_VALUE_FIELDS["expected_spend"])
    clv: float | None = Field(default=None, description=_VALUE_FIELDS["clv"])
    recency_days: int
    frequency: int
    reasons: list[str] = Field(description="Up to three reasons the risk is high, in the "
                                           "customer's own terms, heaviest first; only what "
                                           "raises it (empty when not asked for, or when "
                                           "nothing does).")


class Unscored(BaseModel):
    """A customer the model cannot score, and why."""

    customer_id: str | int
    reason: str


class ScoreResponse(BaseModel):
    """Scores for the customers of a request, in request order."""

    as_of: dt.date
    model_version: str | None
    horizon_days: int
    results: list[CustomerScore]
    unscored: list[Unscored]
    warnings: list[str] = Field(
        default_factory=list,
        description="What was sent but not used, in words: attributes or event types the "
                    "model does not use, categories it never saw (scored as missing), "
                    "naming the customers (empty when everything sent was used).")


class Health(BaseModel):
    """Service status."""

    status: Literal["ok"]
    churnlens_version: str
    model_name: str | None
    model_version: str | None
    model_alias: str | None
    data_as_of: dt.date
    customers_scored: int
    loaded_at: str
    last_reload_error: str | None = Field(
        description="Null, or that the last reload failed and when (the reason is in the "
                    "POST /reload answer and the server log: this endpoint needs no key).")
    alerts: int | None = Field(
        default=None,
        description="Alerts of the monitoring report (GET /monitoring) of the served data and "
                    "ledger; null while it is being computed (the first /health starts it) "
                    "or when monitoring is unavailable (no ledger entry, no settings).")


class ModelInfo(BaseModel):
    """The loaded model: what it predicts, from what, and how good it is."""

    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    horizon_days: int
    as_of: dt.date
    windows_days: list[int]
    features: list[str]
    metrics: dict[str, dict[str, float | None]]
    backtest: list[dict[str, Any]]


class AtRiskItem(BaseModel):
    """One scored customer of the base (the columns of ``churnlens score``)."""

    model_config = ConfigDict(extra="allow")

    customer_id: str | int
    as_of: dt.date
    churn_risk: float
    risk_band: Literal["high", "medium", "low"]
    expected_value: float
    value_at_risk: float
    p_alive: float | None = Field(default=None, description=_VALUE_FIELDS["p_alive"])
    expected_purchases: float | None = Field(
        default=None, description=_VALUE_FIELDS["expected_purchases"])
    days_to_next_purchase: float | None = Field(
        default=None, description=_VALUE_FIELDS["days_to_next_purchase"])
    expected_spend: float | None = Field(default=None,
                                         description=_VALUE_FIELDS["expected_spend"])
    clv: float | None = Field(default=None, description=_VALUE_FIELDS["clv"])
    expected_profit: float | None = Field(
        default=None, description="Expected profit of contacting the customer, on a list "
        "sized by profit (cost_per_contact and save_rate given): churn_risk x save_rate x "
        "expected_value x margin - cost_per_contact; absent otherwise.")
    recency_days: int
    frequency: int
    monetary_total: float
    segment: str
    reason_1: str = ""
    reason_2: str = ""
    reason_3: str = ""


class StoredCustomer(BaseModel):
    """A scored customer of the base, with their features."""

    score: AtRiskItem
    features: dict[str, float | int | str | None]


class ProfitTermsOut(BaseModel):
    """The terms of a list sized by profit (``churnlens._rules.profit_terms``)."""

    cost_per_contact: float
    save_rate: float
    margin: float


class AtRiskPage(BaseModel):
    """A page of the at-risk list."""

    items: list[AtRiskItem]
    total: int = Field(description="Customers in the whole filtered list.")
    limit: int
    offset: int
    expected_profit_total: float | None = Field(
        default=None, description="With cost_per_contact and save_rate (a list sized by "
        "profit): the expected profit of contacting every customer of the whole list "
        "(sum of the items' expected_profit, each positive); absent otherwise.")
    profit: ProfitTermsOut | None = Field(
        default=None, description="The terms the list was sized with; absent without them.")


class RetentionRatesOut(BaseModel):
    """Actual retention rates of a period (percent; null where undefined)."""

    start: dt.date
    end: dt.date
    window_days: int
    S: int
    E: int
    N: int
    reactivated: int
    crr: float | None
    cohort_retention: float | None
    churn_rate: float | None
    repeat_rate: float | None
    simple_ratio: float | None


class RateWithInterval(BaseModel):
    """A predicted rate with its 95% interval (percent)."""

    value: float | None
    low: float | None
    high: float | None
    level_error: float | None = Field(
        default=None, description="Points the model's own level error, measured out of "
                                  "sample, adds to the interval's half-width (in quadrature); "
                                  "0 or null: the interval covers sampling only.")
    covers: str | None = Field(default=None, description="What the interval covers, in words.")
    definition: str | None = Field(default=None, description="The measure, in one line.")


class Outlook(BaseModel):
    """The coming horizon: predicted rates beside the last actual ones of the same length."""

    as_of: dt.date
    horizon_days: int
    period_start: dt.date
    period_end: dt.date
    active_customers: int
    predicted_cohort_retention: RateWithInterval
    predicted_crr: RateWithInterval
    last_actual: RetentionRatesOut
    base: Literal["active"] = Field(
        description="The base of expected_customers_lost and revenue_at_risk (and the start "
                    "base S of the rates): the active customers.")
    base_definition: str = Field(description="Who the active customers are, in words.")
    acquired_customers: int = Field(description="Every customer scored, active or not.")
    expected_customers_lost: float = Field(
        description="Expected number of the active customers with no purchase in the "
                    "horizon: the sum of their churn risks.")
    revenue_at_risk: float = Field(
        description="Sum of value_at_risk (churn risk times expected spend in the horizon) "
                    "over the active customers.")
    interval_covers: str | None = Field(
        default=None, description="What the intervals of cohort retention and CRR cover, in "
                                  "words.")
    predicted_repeat_rate: RateWithInterval | None = Field(
        default=None, description="Predicted share of every customer scored who buys in the "
                                  "horizon (base: everyone acquired; sampling interval).")
    definitions: dict[str, str] = Field(
        default_factory=dict, description="Each measure of the outlook in one line (the "
                                          "glossary of docs/retention.md).")
    model_warnings: list[str] = Field(
        default_factory=list, description="What the model said about itself when trained, in "
                                          "words: e.g. 'no full season of history (...): the "
                                          "level may be off by several points'.")


class BacktestPeriod(BaseModel):
    """Predicted vs actual retention of one past period, per model."""

    as_of: dt.date
    horizon_days: int
    models: dict[str, dict[str, float | None]]


class ReloadResult(BaseModel):
    """Outcome of a reload."""

    reloaded: bool
    model_version: str | None
    data_as_of: dt.date
    customers_scored: int
    error: str | None


class ErrorDetail(BaseModel):
    """An error."""

    detail: str


# --- the web page's reads (issue 18): series, cohorts, purchases, list facets ----------


class RetentionPeriod(RetentionRatesOut):
    """One period of a retention series (``churnlens retention --every``)."""

    period: str = Field(description="The period's label (2024Q2, 2024-05, 2024 or "
                                    "2024-04-01..2024-06-30).")
    complete: bool = Field(description="Whether the data cover the whole period and its "
                                       "activity window (otherwise its rates are not "
                                       "reliable).")


class RetentionSeries(BaseModel):
    """Retention rates of consecutive periods, oldest first."""

    every: str
    window_days: int | None = Field(description="The activity window asked for (null: "
                                                "each period's own length).")
    periods: list[RetentionPeriod]


class Cohort(BaseModel):
    """One monthly acquisition cohort (a row of ``churnlens cohorts``)."""

    cohort: str = Field(description="Acquisition month, YYYY-MM.")
    cohort_size: int
    months: list[float | None] = Field(description="Percent of the cohort buying in month "
                                                   "k after acquisition, k = 0, 1, ...; "
                                                   "null when that month has not elapsed.")


class CohortTable(BaseModel):
    """Monthly acquisition cohorts, oldest first."""

    cohorts: list[Cohort]


class PurchaseDay(BaseModel):
    """A customer's net purchases of one day."""

    day: dt.date
    amount: float = Field(description="Net amount of the day (refunds netted).")
    transactions: int


class PurchaseHistoryOut(BaseModel):
    """A customer's purchase history up to the scoring date, one row per day."""

    customer_id: str | int
    as_of: dt.date
    days: list[PurchaseDay]


class AtRiskFacets(BaseModel):
    """What the at-risk list can be filtered by, with the number of customers of each."""

    total: int
    bands: dict[str, int]
    segments: dict[str, int]
    max_value_at_risk: float | None
    attributes: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Served with a customer table (serve --customers-file): each categorical "
                    "attribute column of the list, its values and the customers of each, "
                    f"most customers first (at most {MAX_FACET_VALUES} values per attribute). "
                    "GET /at-risk filters on them with attribute=name:value.")
    attribute_columns: list[str] = Field(
        default_factory=list,
        description="The keys of the list's items that hold attributes (categorical and "
                    "numeric; the attribute's name, or customer_<name> where it would take "
                    "a score column's), in the customer table's order; empty without a "
                    "customer table.")


class MonitorAlertOut(BaseModel):
    """One alert of the monitoring report, in plain words."""

    kind: Literal["retention_outside_interval", "auc_drop", "feature_drift"]
    run_id: str = Field(description="The ledger entry (MLflow run) the alert is about.")
    as_of: dt.date = Field(description="That entry's scoring date.")
    subject: str = Field(description="cohort_retention, crr, auc, or the feature's name.")
    value: float = Field(description="What was measured.")
    threshold: float = Field(description="The limit it crossed (for an interval, the bound "
                                         "crossed).")
    message: str


class MonitoringReport(BaseModel):
    """The ledger's predictions against what happened, and drift: the document of
    ``churnlens monitor --json`` (docs/monitoring.md describes every key)."""

    data_last_day: dt.date = Field(description="Last day of the served transactions: a "
                                               "horizon is closed when it ends on or before.")
    thresholds: dict[str, float]
    entries_total: int
    closed: int
    open: int
    alert_count: int
    alerts: list[MonitorAlertOut]
    entries: list[dict[str, Any]] = Field(description="One document per scoring entry of the "
                                                      "ledger, oldest first.")
    notes: list[str]
    alert_kinds: dict[str, str]
    definitions: dict[str, str]
