"""Marketing rules: risk bands, expected value, RFM segments and at-risk lists.

Every rule a marketer acts on is defined once here; the embedded scoring
(:mod:`churnlens._scoring`) applies these functions and the Spark engine
(:mod:`churnlens._spark_scoring`) applies the same definitions in Spark SQL:

- **risk band**: ``high`` if ``churn_risk >= scoring.high_risk`` (0.7), ``medium`` if
  ``>= scoring.medium_risk`` (0.4), else ``low``.
- **expected value**: expected net spend in the horizon *if the customer stays*, from
  the model's value model (:mod:`churnlens._value`: the posterior mean purchase rate
  given alive, times ``H``, times the Gamma-Gamma spend per occasion). The heuristic it
  replaced stays as a named baseline, :func:`heuristic_expected_value` (the value
  backtest compares them; a model trained without a value model scores with it):
  ``monetary_mean * max(1, frequency / (tenure_days + H) * H)``, the customer's own
  occasion rate shrunk towards one occasion per horizon for short histories.
- **value at risk** = ``churn_risk * expected_value``.
- **RFM scores** 1-5 over the whole scored base: ``ceil(5 * rank / n)``, where
  ``rank`` is the customer's average rank (1 = lowest; tied customers share the mean
  of their positions) among the ``n`` scored customers with a value. Recency ranks
  descending (the most recent customers score 5), frequency and monetary ascending;
  monetary ranks on the total in whole cents (:func:`monetary_cents`), so ties are
  ties whatever order an engine summed the amounts in. A missing value scores 1.
  Computed in integers (``(5 * (lo + hi) + 2n - 1) // 2n`` with ``lo``, ``hi`` the
  first and last tied position), so both engines agree exactly.
- **segment**: the first rule of :data:`SEGMENT_RULES` that matches the scores.
- **at-risk lists** (:func:`at_risk_list`), three kinds:

  - ``campaign`` (the default): the customers worth a call. Active or recently lapsed
    (last purchase within :data:`LAPSED_HORIZONS` horizons: ``recency_days < 2 * H``),
    risk band ``high`` or ``medium``, by ``value_at_risk`` descending, the first
    :data:`CAMPAIGN_TOP` (500).
  - ``win-back``: the customers already gone (``recency_days >= 2 * H``: no purchase in
    two horizons), by ``value_at_risk`` descending, the first 500. Never in the campaign
    list: a customer silent for two horizons is past saving by a retention call.
  - ``all``: every scored customer, by ``churn_risk`` descending (the list before
    issue 16).

  Filters (risk, segment, band, and the customer attributes a model trained with a
  customer table writes into the scores: ``attributes``) and ``top`` apply on top of a
  kind; ties by customer id.

- **lists sized by profit** (:class:`ProfitTerms`, :func:`expected_profit`): given a cost
  per contact ``C``, a save rate ``S`` (the share of would-be churners a contact keeps)
  and a margin ``M`` (default 1: values are spend), the expected profit of contacting a
  customer is ``churn_risk * S * expected_value * M - C``. With these terms a list keeps
  only the customers of its kind and filters whose expected profit is positive, adds the
  column ``expected_profit`` and is ordered by it (descending, ties by customer id) unless
  ``sort`` says otherwise; ``top`` then caps it (no default size: the profit sizes it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from churnlens._config import ScoringSettings
from churnlens.exceptions import DataValidationError, ModelError

__all__ = [
    "AT_RISK_FLAGS",
    "BANDS",
    "CAMPAIGN_BANDS",
    "CAMPAIGN_TOP",
    "LAPSED_HORIZONS",
    "LIST_KINDS",
    "PROFIT_SORT",
    "SEGMENT_RULES",
    "SORT_KEYS",
    "ProfitTerms",
    "SegmentRule",
    "at_risk_list",
    "attribute_filters",
    "expected_profit",
    "expected_value",
    "heuristic_expected_value",
    "monetary_cents",
    "profit_terms",
    "quintile_scores",
    "rfm_scores",
    "rfm_segment",
    "risk_band",
    "segment_from_scores",
    "value_at_risk",
]

BANDS = ("high", "medium", "low")


# --- risk bands, expected value -----------------------------------------------------


def risk_band(churn_risk: Any, settings: ScoringSettings | None = None) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` for each risk (thresholds from settings).

    Parameters
    ----------
    churn_risk
        Churn risks in [0, 1].
    settings
        Thresholds: ``high`` from ``high_risk`` (0.7), ``medium`` from ``medium_risk``
        (0.4); ``None`` uses the defaults.

    Returns
    -------
    numpy.ndarray
        One band name per risk.

    Examples
    --------
    >>> risk_band([0.9, 0.7, 0.5, 0.4, 0.1]).tolist()
    ['high', 'high', 'medium', 'medium', 'low']
    """
    s = settings or ScoringSettings()
    risk = np.asarray(churn_risk, dtype=np.float64)
    return np.where(risk >= s.high_risk, "high", np.where(risk >= s.medium_risk, "medium", "low"))


def heuristic_expected_value(features: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """The heuristic expected net spend in the horizon if the customer stays.

    The baseline of the value backtest, and the ``expected_value`` of scores from a
    model trained without a value model; the scores' ``expected_value`` comes from
    :func:`churnlens._value.predict_value` otherwise (module docstring).

    Parameters
    ----------
    features
        Features with ``frequency``, ``tenure_days`` and ``monetary_mean``.
    horizon_days
        The churn horizon ``H``.

    Returns
    -------
    numpy.ndarray
        ``monetary_mean * max(1, frequency / (tenure_days + H) * H)`` per customer
        (negative baskets count as 0).

    Examples
    --------
    >>> f = pd.DataFrame({"frequency": [1, 10], "tenure_days": [0, 365],
    ...                   "monetary_mean": [40.0, 20.0]})
    >>> heuristic_expected_value(f, 91).round(2).tolist()
    [40.0, 39.91]
    """
    freq = features["frequency"].to_numpy(dtype=np.float64)
    tenure = features["tenure_days"].to_numpy(dtype=np.float64)
    basket = np.maximum(features["monetary_mean"].to_numpy(dtype=np.float64), 0.0)
    occasions = np.maximum(1.0, freq / (tenure + horizon_days) * horizon_days)
    return np.nan_to_num(basket * occasions)


# The name before issue 20 (churnlens.expected_value): the heuristic, kept for scripts.
expected_value = heuristic_expected_value


def value_at_risk(churn_risk: Any, expected: Any) -> np.ndarray:
    """``churn_risk * expected_value``: the spend lost if the customer churns.

    Examples
    --------
    >>> value_at_risk([0.5, 0.1], [40.0, 10.0]).tolist()
    [20.0, 1.0]
    """
    return np.asarray(churn_risk, dtype=np.float64) * np.asarray(expected, dtype=np.float64)


# --- RFM -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SegmentRule:
    """A segment and its conditions on the R, F, M scores (all must hold).

    ``conditions`` are ``(score, operator, value)`` with score ``"R"``, ``"F"`` or
    ``"M"`` and operator ``">="``, ``"<="`` or ``"="``.
    """

    segment: str
    conditions: tuple[tuple[str, str, int], ...]

    @property
    def rule(self) -> str:
        """The rule as documented, e.g. ``R >= 4 and F >= 4``."""
        return " and ".join(f"{s} {op} {v}" for s, op, v in self.conditions)

    def matches(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """Boolean mask of the customers the rule matches."""
        ops: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
            ">=": np.greater_equal, "<=": np.less_equal, "=": np.equal}
        mask = np.ones(len(scores["R"]), dtype=bool)
        for score, op, value in self.conditions:
            mask &= ops[op](scores[score], value)
        return mask

    def sql(self, columns: dict[str, str]) -> str:
        """The rule as a SQL condition on the score columns (for Spark)."""
        return " AND ".join(f"{columns[s]} {op} {v}" for s, op, v in self.conditions)


# First match wins; every combination of scores matches some rule (a test checks).
SEGMENT_RULES: tuple[SegmentRule, ...] = (
    SegmentRule("champions", (("R", ">=", 4), ("F", ">=", 4))),
    SegmentRule("loyal", (("R", ">=", 3), ("F", ">=", 4))),
    SegmentRule("new", (("R", ">=", 4), ("F", "=", 1))),
    SegmentRule("promising", (("R", ">=", 4),)),
    SegmentRule("big spenders at risk", (("R", "<=", 2), ("M", ">=", 4))),
    SegmentRule("at risk", (("R", "<=", 2), ("F", ">=", 3))),
    SegmentRule("lost", (("R", "=", 1),)),
    SegmentRule("hibernating", (("R", "=", 2),)),
    SegmentRule("needs attention", (("R", "=", 3),)),
)


def quintile_scores(values: Any, *, descending: bool = False) -> np.ndarray:
    """Scores 1-5: ``ceil(5 * average rank / n)`` in exact integer arithmetic.

    Missing values score 1 and do not count in ``n``.

    Examples
    --------
    >>> quintile_scores([10, 20, 20, 30, 40]).tolist()
    [1, 3, 3, 4, 5]
    >>> quintile_scores([10, 20, 20, 30, 40], descending=True).tolist()
    [5, 4, 4, 2, 1]
    """
    x = np.asarray(values, dtype=np.float64)
    present = ~np.isnan(x)
    out = np.ones(x.shape, dtype=np.int64)
    known = x[present]
    n = known.size
    if n == 0:
        return out
    ordered = np.sort(known)
    below = np.searchsorted(ordered, known, side="left")  # values < x
    upto = np.searchsorted(ordered, known, side="right")  # values <= x
    if descending:
        below, upto = n - upto, n - below
    lo, hi = below + 1, upto  # first and last position of x's ties (1-based)
    out[present] = (5 * (lo + hi) + 2 * n - 1) // (2 * n)
    return out


def monetary_cents(values: Any) -> np.ndarray:
    """Money in whole cents, as float (what the monetary score ranks).

    Snapped to 6 decimals first, so totals that two engines summed in a different
    order (19.344999999999 and 19.345000000001) get the same cents.
    """
    return np.floor(np.round(np.asarray(values, dtype=np.float64), 6) * 100.0 + 0.5)


def rfm_scores(features: pd.DataFrame) -> pd.DataFrame:
    """``r_score``, ``f_score``, ``m_score`` (1-5) over the customers given."""
    return pd.DataFrame({
        "r_score": quintile_scores(features["recency_days"], descending=True),
        "f_score": quintile_scores(features["frequency"]),
        "m_score": quintile_scores(monetary_cents(features["monetary_total"])),
    }, index=features.index)


def segment_from_scores(r: Any, f: Any, m: Any) -> np.ndarray:
    """The segment of each customer from their R, F, M scores (first matching rule)."""
    scores = {"R": np.asarray(r), "F": np.asarray(f), "M": np.asarray(m)}
    segment = np.full(len(scores["R"]), None, dtype=object)
    decided = np.zeros(len(segment), dtype=bool)
    for rule in SEGMENT_RULES:
        take = rule.matches(scores) & ~decided
        segment[take] = rule.segment
        decided |= take
    return segment


def rfm_segment(features: pd.DataFrame) -> pd.DataFrame:
    """RFM scores (1-5) and the marketing segment of each customer.

    Parameters
    ----------
    features
        Features of the whole scored base, with ``recency_days``, ``frequency`` and
        ``monetary_total`` (scores are quintiles over this base).

    Returns
    -------
    pandas.DataFrame
        ``r_score``, ``f_score``, ``m_score`` (5 = most recent / frequent / highest
        spend) and ``segment``, the first matching rule of ``SEGMENT_RULES``.
    """
    scores = rfm_scores(features)
    scores["segment"] = segment_from_scores(scores["r_score"], scores["f_score"],
                                            scores["m_score"])
    return scores


# --- at-risk lists ------------------------------------------------------------------


SORT_KEYS = ("churn_risk", "value_at_risk")
LIST_KINDS = ("campaign", "win-back", "all")
# The campaign list: active (recency < H) or recently lapsed (recency < 2H) customers of
# these bands, the first CAMPAIGN_TOP by value at risk; the win-back list: the rest.
LAPSED_HORIZONS = 2
CAMPAIGN_BANDS = ("high", "medium")
CAMPAIGN_TOP = 500
_DEFAULT_SORT = {"campaign": "value_at_risk", "win-back": "value_at_risk", "all": "churn_risk"}
# With profit terms a list is ordered by the expected profit of a contact by default.
PROFIT_SORT = "expected_profit"
_PROFIT_OPTIONS = ("cost_per_contact", "save_rate", "margin")
# How at_risk_list's messages name its options: by default the Python parameters (the
# API's query parameters have the same names); the CLI passes its flags, AT_RISK_FLAGS.
_LIST_OPTIONS = {"kind": "kind", "top": "top", "min_risk": "min_risk", "segment": "segment",
                 "band": "band", "sort": "sort"}
AT_RISK_FLAGS = {"top": "--top", "min_risk": "--min-risk", "segment": "--segment",
                 "band": "--band", "sort": "--sort"}


def _shown(name: str, value: Any) -> str:
    """An option with a value as the caller writes it: ``--top 100`` or ``top=100``."""
    if name.startswith("-"):
        import shlex

        return f"{name} {shlex.quote(str(value))}"
    return f"{name}={value!r}"


def _unknown_segment(name: str, segment: str, known: list[str]) -> str:
    """The message for a segment filter that names no segment of the scores."""
    if not known:
        return (f"{name} {segment!r} not found: the scores have no segments (no column "
                f"'segment', or no value in it); segments in the scores: []. Suggestion: "
                f"leave {name} out, or pass scores written by churnlens score (they have "
                "a segment column).")
    return (f"{name} {segment!r} not found; segments in the scores: {known}. Suggestion: "
            f"pass one of these (names are case-sensitive), for example "
            f"{_shown(name, known[0])}.")


@dataclasses.dataclass(frozen=True)
class ProfitTerms:
    """What a retention contact costs and earns: the terms of a list sized by profit.

    Build it with :func:`profit_terms` (which checks the values). The expected profit of
    contacting a customer is ``churn_risk * save_rate * expected_value * margin -
    cost_per_contact`` (:func:`expected_profit`).

    Attributes
    ----------
    cost_per_contact
        The cost of one contact (currency of the data), finite and ``>= 0``.
    save_rate
        The share of the customers who would churn that a contact keeps, in (0, 1].
    margin
        The share of spend that is profit, in (0, 1]; 1 (the default) counts spend.
    """

    cost_per_contact: float
    save_rate: float
    margin: float = 1.0

    def as_dict(self) -> dict[str, float]:
        """The terms as a JSON-ready dictionary (what the CLI and the API echo)."""
        return {"cost_per_contact": self.cost_per_contact, "save_rate": self.save_rate,
                "margin": self.margin}


def profit_terms(
    cost_per_contact: float | None,
    save_rate: float | None,
    margin: float | None = None,
    *,
    names: tuple[str, str, str] = _PROFIT_OPTIONS,
) -> ProfitTerms | None:
    """Check the terms of a list sized by profit; ``None`` when none is given.

    Parameters
    ----------
    cost_per_contact
        Cost of one contact: finite, ``>= 0``.
    save_rate
        Share of would-be churners a contact keeps: in (0, 1].
    margin
        Share of spend that is profit: in (0, 1]; ``None`` is 1.
    names
        How the caller names the three (``--cost-per-contact``... for the CLI), used in
        the error messages.

    Returns
    -------
    ProfitTerms or None
        The checked terms, or ``None`` when all three are ``None`` (a list as before).

    Raises
    ------
    ModelError
        When one of cost and save rate is given without the other, a margin without
        them, or a value out of its range.

    Examples
    --------
    >>> profit_terms(2.0, 0.25)
    ProfitTerms(cost_per_contact=2.0, save_rate=0.25, margin=1.0)
    >>> profit_terms(None, None) is None
    True
    """
    cost_name, save_name, margin_name = names
    if cost_per_contact is None and save_rate is None:
        if margin is not None:
            raise ModelError(
                f"{margin_name} was given without {cost_name} and {save_name}: a margin "
                "only turns the saved spend of a list sized by profit into profit. "
                f"Suggestion: add {cost_name} and {save_name}, or drop {margin_name}.")
        return None
    if cost_per_contact is None or save_rate is None:
        given, lacking = ((cost_name, save_name) if save_rate is None
                          else (save_name, cost_name))
        raise ModelError(
            f"{given} was given without {lacking}: the expected profit of a contact "
            f"(churn_risk x save rate x expected value x margin - cost) needs both. "
            f"Suggestion: pass {cost_name} and {save_name} together (e.g. 2 and 0.2).")
    cost, save = float(cost_per_contact), float(save_rate)
    share = 1.0 if margin is None else float(margin)
    if not (np.isfinite(cost) and cost >= 0):
        raise ModelError(f"{cost_name} must be a finite number >= 0 (a cost in the currency "
                         f"of the data), got {cost_per_contact!r}. Suggestion: pass e.g. 2.")
    if not 0 < save <= 1:
        raise ModelError(f"{save_name} must be in (0, 1] (the share of would-be churners a "
                         f"contact keeps), got {save_rate!r}. Suggestion: pass e.g. 0.2 for "
                         "20%.")
    if not 0 < share <= 1:
        raise ModelError(f"{margin_name} must be in (0, 1] (the share of spend that is "
                         f"profit), got {margin!r}. Suggestion: pass e.g. 0.3 for 30%, or "
                         "leave it out to count spend (1).")
    return ProfitTerms(cost, save, share)


def expected_profit(churn_risk: Any, expected: Any, terms: ProfitTerms) -> np.ndarray:
    """Expected profit of contacting each customer.

    ``churn_risk * save_rate * expected_value * margin - cost_per_contact``, multiplied
    left to right (so a cost of 0 leaves exactly the expected saved value, and a higher
    cost never gives a higher profit). A missing risk or value gives NaN (never kept).

    Parameters
    ----------
    churn_risk
        Churn risks in [0, 1].
    expected
        ``expected_value`` per customer: expected spend in the horizon if they stay.
    terms
        Cost, save rate and margin (:func:`profit_terms`).

    Returns
    -------
    numpy.ndarray
        One expected profit per customer (currency of the data).

    Examples
    --------
    >>> terms = profit_terms(5.0, 0.2, 0.5)
    >>> expected_profit([0.8, 0.5], [200.0, 40.0], terms).round(6).tolist()
    [11.0, -3.0]
    """
    risk = np.asarray(churn_risk, dtype=np.float64)
    value = np.asarray(expected, dtype=np.float64)
    saved = risk * terms.save_rate * value * terms.margin
    return saved - terms.cost_per_contact


def attribute_match(cells: pd.Series, values: Collection[str | None]) -> np.ndarray:
    """Which cells of an attribute column hold one of ``values``: the at-risk filter's rule.

    The CLI's ``at-risk --attribute NAME:VALUE`` and the API's ``GET /at-risk?attribute=``
    both filter by it. Cells are compared as text (``34.0`` is ``"34.0"``); ``None`` or
    ``""`` among ``values`` keeps the customers without a value.

    Parameters
    ----------
    cells
        An attribute column of the scores.
    values
        The values kept.

    Returns
    -------
    numpy.ndarray
        One boolean per cell.

    Examples
    --------
    >>> attribute_match(pd.Series(["web", None, "app"]), ["web", None]).tolist()
    [True, True, False]
    """
    text = cells.astype("string")
    wanted = [str(v) for v in values if v not in (None, "")]
    match = np.array(text.isin(wanted).to_numpy(dtype=bool, na_value=False))
    if any(v in (None, "") for v in values):
        match |= text.isna().to_numpy(dtype=bool)
    return match


def attribute_filters(given: Sequence[str] | None, categorical: Mapping[str, str],
                      numeric: Collection[str] = (), *, example: str = "channel:web",
                      where: str = "--attribute") -> dict[str, set[str | None]]:
    """Parse and check ``NAME:VALUE`` attribute filters: the at-risk list's rule, shared by
    the CLI's ``at-risk --attribute`` and the API's ``GET /at-risk?attribute=``.

    A name is an attribute of the model (not any column of the scores), resolved to its
    column in the scores (:func:`churnlens._scoring.attribute_column_names`); only
    categorical attributes filter. Values of one attribute are alternatives; an empty
    value is "no value" (``None``).

    Parameters
    ----------
    given
        The filters as given (``None`` or empty: none).
    categorical
        The categorical attributes: name -> its column in the scores.
    numeric
        The numeric attributes' names (refused with their own message).
    example
        The example the suggestion shows (``--attribute channel:web``).
    where
        What the message calls a filter (the flag or the query parameter).

    Returns
    -------
    dict
        Column of the scores -> the values kept (``None``: a missing value), for
        :func:`attribute_match`; empty without filters.

    Raises
    ------
    DataValidationError
        A filter that is not ``NAME:VALUE``, a numeric or unknown attribute; the message
        lists the categorical attributes.

    Examples
    --------
    >>> attribute_filters(["channel:web", "segment:"], {"channel": "channel",
    ...                                                 "segment": "customer_segment"})
    {'channel': {'web'}, 'customer_segment': {None}}
    """
    wanted: dict[str, set[str | None]] = {}
    known = ", ".join(categorical) or "none (scores of a model trained without a customer table)"
    for text in given or ():
        name, colon, value = text.partition(":")
        name = name.strip()
        if not colon or not name:
            why = f"{where} {text[:60]!r} is not name:value"
        elif name in numeric:
            why = f"{where}: {name[:60]!r} is numeric (only categorical attributes are filters)"
        elif name not in categorical:
            why = f"{where}: unknown attribute {name[:60]!r}"
        else:
            wanted.setdefault(categorical[name], set()).add(value or None)
            continue
        raise DataValidationError(f"{why}; the list's categorical attributes: {known}. "
                                  f"Suggestion: name:value with one of them, for example "
                                  f"{example}.")
    return wanted


def at_risk_list(
    scores: pd.DataFrame,
    *,
    kind: str = "campaign",
    horizon_days: int | None = None,
    top: int | None = None,
    min_risk: float | None = None,
    segment: str | None = None,
    band: str | None = None,
    sort: str | None = None,
    profit: ProfitTerms | None = None,
    attributes: Mapping[str, Collection[str | None]] | None = None,
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The customers of a campaign: filtered, ranked, cut.

    Parameters
    ----------
    scores
        Scores written by ``churnlens score`` /
        :func:`churnlens._scoring.score_customers`.
    kind
        ``campaign`` (default: active or recently lapsed customers, band high or
        medium, by value at risk), ``win-back`` (customers with no purchase in
        ``2 * horizon_days``) or ``all`` (every customer, by churn risk). See the module
        docstring.
    horizon_days
        The model's horizon ``H`` (``campaign`` and ``win-back`` need it).
    top
        Keep the first ``top`` rows after sorting; ``None``: 500 for ``campaign`` and
        ``win-back``, every row for ``all`` or with ``profit`` (the profit sizes it).
    min_risk
        Keep customers with ``churn_risk >= min_risk``.
    segment
        Keep one RFM segment (an unknown name is an error listing the known ones).
    band
        Keep one risk band: ``high``, ``medium`` or ``low``.
    sort
        ``churn_risk`` or ``value_at_risk``, descending; ties by customer id.
        ``None``: ``value_at_risk`` for ``campaign`` and ``win-back``, ``churn_risk``
        for ``all``; ``expected_profit`` (allowed only then) with ``profit``.
    profit
        Terms of a list sized by profit (:func:`profit_terms`): keep only the customers
        whose :func:`expected_profit` is positive (after the kind and the filters, before
        ``top``), with the column ``expected_profit``. Needs ``expected_value``.
    attributes
        Keep the customers whose attribute column (a column of the scores: the customer
        attributes of a model trained with a customer table, ``channel``...) has one of
        the values given, compared as text (``{"channel": ["web", "app"]}``); every
        column given must match. An empty text (or ``None``) matches a missing value. A
        column not in the scores is an error naming the columns there.
        :func:`attribute_filters` makes it from ``NAME:VALUE`` filters.
    names
        How the caller names the options, for the error messages: ``{"top": "--top",
        "min_risk": "--min-risk", ...}`` for the CLI (:data:`AT_RISK_FLAGS`); an option
        not given keeps its parameter name (the API's query parameters have the same
        names). Values are shown as ``--top 100`` for a flag, ``top=100`` otherwise.

    Returns
    -------
    pandas.DataFrame
        The chosen rows, in campaign order, with a fresh index.

    Examples
    --------
    >>> scores = pd.DataFrame({
    ...     "customer_id": ["a", "b", "c", "d"], "churn_risk": [0.9, 0.5, 0.99, 0.2],
    ...     "risk_band": ["high", "medium", "high", "low"],
    ...     "value_at_risk": [10.0, 30.0, 50.0, 1.0], "recency_days": [40, 100, 400, 3]})
    >>> at_risk_list(scores, horizon_days=91)["customer_id"].tolist()
    ['b', 'a']
    >>> at_risk_list(scores, kind="win-back", horizon_days=91)["customer_id"].tolist()
    ['c']
    >>> at_risk_list(scores, kind="all")["customer_id"].tolist()
    ['c', 'a', 'b', 'd']
    >>> scores["expected_value"] = [20.0, 60.0, 55.0, 5.0]
    >>> at_risk_list(scores, kind="all", profit=profit_terms(5.0, 0.2))[
    ...     ["customer_id", "expected_profit"]].round(2).values.tolist()
    [['c', 5.89], ['b', 1.0]]
    """
    from churnlens._validation import require_choice

    named = {**_LIST_OPTIONS, **(names or {})}
    require_choice(kind, name=named["kind"], allowed=LIST_KINDS)
    if profit is None:
        sort = _DEFAULT_SORT[kind] if sort is None else sort
        if sort == PROFIT_SORT:
            raise ModelError(
                f"{_shown(named['sort'], PROFIT_SORT)} orders a list sized by profit, and no "
                "cost per contact and save rate were given. Suggestion: give them "
                "(churnlens at-risk --cost-per-contact C --save-rate S), or sort by "
                "churn_risk or value_at_risk.")
        require_choice(sort, name=named["sort"], allowed=SORT_KEYS)
    else:
        sort = PROFIT_SORT if sort is None else sort
        require_choice(sort, name=named["sort"], allowed=(*SORT_KEYS, PROFIT_SORT))
    if top is not None and top < 1:
        raise ModelError(
            f"{named['top']} must be at least 1 (the number of customers to keep), got "
            f"{top}. Suggestion: pass a whole number such as {_shown(named['top'], 100)}, "
            "or leave it out for the default size.")
    if min_risk is not None and not 0 <= min_risk <= 1:
        raise ModelError(
            f"{named['min_risk']} must be a churn risk between 0 and 1, got {min_risk!r}. "
            f"Suggestion: pass a share such as {_shown(named['min_risk'], 0.7)} (a risk of "
            "70% or more), or leave it out.")
    if band is not None:
        require_choice(band, name=named["band"], allowed=BANDS)
    needed = ["customer_id", "churn_risk", "value_at_risk"]
    if profit is not None:
        needed.append("expected_value")
    if kind != "all":
        needed += ["recency_days", "risk_band"]
    missing = [c for c in needed if c not in scores]
    if missing:
        raise ModelError(
            f"the scores lack columns {missing}. Suggestion: pass a file written by "
            "churnlens score."
        )
    keep = pd.Series(True, index=scores.index)
    if kind != "all":
        if horizon_days is None or horizon_days < 1:
            raise ModelError(
                f"the {kind} list needs the model's horizon (customers silent for "
                f"{LAPSED_HORIZONS} horizons are gone), got {horizon_days!r}. Suggestion: "
                "pass horizon_days (churnlens at-risk reads it from the scores file or "
                "--horizon-days), or ask for every customer (kind='all', --all).")
        gone = scores["recency_days"].to_numpy() >= LAPSED_HORIZONS * horizon_days
        if kind == "campaign":
            keep &= ~gone & scores["risk_band"].isin(CAMPAIGN_BANDS).to_numpy()
        else:
            keep &= gone
        top = CAMPAIGN_TOP if top is None and profit is None else top
    if min_risk is not None:
        keep &= scores["churn_risk"] >= min_risk
    if segment is not None:
        known = sorted(scores["segment"].dropna().unique()) if "segment" in scores else []
        if segment not in known:
            raise ModelError(_unknown_segment(named["segment"], segment, known))
        keep &= scores["segment"] == segment
    if band is not None:
        keep &= scores["risk_band"] == band
    for column, values in (attributes or {}).items():
        if column not in scores.columns:
            raise ModelError(f"attribute {column!r} is not a column of the scores (columns: "
                             f"{[str(c) for c in scores.columns]}). Suggestion: score with "
                             "a model trained with the customer table (--customers-file); "
                             "its scores carry each attribute as a column.")
        keep &= attribute_match(scores[column], values)
    chosen = scores.loc[keep]
    if profit is not None:
        gain = expected_profit(chosen["churn_risk"], chosen["expected_value"], profit)
        chosen = chosen.assign(expected_profit=gain).loc[gain > 0]
    order = np.lexsort((chosen["customer_id"].astype(str).to_numpy(), -chosen[sort].to_numpy()))
    chosen = chosen.iloc[order]
    if top is not None:
        chosen = chosen.head(top)
    return chosen.reset_index(drop=True)
