"""Batch scoring: churn risk, bands, value at risk, RFM segments and reasons.

Every rule a marketer acts on is defined once here, and the Spark engine
(:mod:`churnlens._spark_scoring`) applies the same definitions:

- **risk band**: ``high`` if ``churn_risk >= scoring.high_risk`` (0.7), ``medium`` if
  ``>= scoring.medium_risk`` (0.4), else ``low``.
- **expected value**: expected net spend in the horizon *if the customer stays*:
  ``monetary_mean * max(1, frequency / (tenure_days + H) * H)``. The occasion rate is
  the customer's own, shrunk towards one occasion per horizon for short histories
  (a customer seen once yesterday is not expected to buy every day).
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
- **reasons**: the three features that push this customer's risk up the most (the
  model's per-customer contributions to the churn log-odds, LightGBM ``pred_contrib``
  for its trees; ties go to the feature listed first), as text with the customer's
  actual values (snapped to 6 decimals, then rounded for display). Features with a
  contribution ``<= 0`` are never reasons, so a customer can have fewer than three
  (empty strings).
- **churn risk**: the model's probability. With reasons it is computed from the
  same contributions (they add up to the model's log-odds), which equals
  ``predict_proba`` up to float rounding and is checked against it on every batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
import json
import math
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlens._artifact import ModelArtifact
from churnlens._config import ScoringSettings
from churnlens._evaluation import predict_retention
from churnlens._loading import history_until, load_transactions
from churnlens._validation import parse_date
from churnlens.exceptions import ChurnlensError, ModelError

__all__ = [
    "SEGMENT_RULES",
    "ScoreResult",
    "SegmentRule",
    "at_risk_list",
    "expected_value",
    "explain",
    "load_scoring_model",
    "rfm_scores",
    "rfm_segment",
    "risk_band",
    "score_customers",
    "score_file",
    "segment_from_scores",
    "write_output",
]

Progress = Callable[[str], None]
BASE_COLUMNS = [
    "customer_id", "as_of", "churn_risk", "risk_band", "expected_value", "value_at_risk",
    "recency_days", "frequency", "monetary_total", "segment",
]
REASON_COLUMNS = ["reason_1", "reason_2", "reason_3"]
SCORE_COLUMNS = [*BASE_COLUMNS, *REASON_COLUMNS]
BANDS = ("high", "medium", "low")
# Rows scored at a time: bounds the memory of the model's intermediate matrices.
CHUNK_ROWS = 200_000
_Z95 = 1.959963984540054


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


def expected_value(features: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Expected net spend in the horizon if the customer stays (see module docstring).

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
    >>> expected_value(f, 91).round(2).tolist()
    [40.0, 39.91]
    """
    freq = features["frequency"].to_numpy(dtype=np.float64)
    tenure = features["tenure_days"].to_numpy(dtype=np.float64)
    basket = np.maximum(features["monetary_mean"].to_numpy(dtype=np.float64), 0.0)
    occasions = np.maximum(1.0, freq / (tenure + horizon_days) * horizon_days)
    return np.nan_to_num(basket * occasions)


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


# --- reasons ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Text:
    """How one feature reads as a reason: ``template`` with ``{v}`` (the value) and
    ``{s}`` (plural s), the value's ``style`` and the text for a missing value."""

    template: str
    style: str  # count, days, money, ratio, share, number
    missing: str


_REPEAT = "fewer than two purchases"
_TEXTS: dict[str, _Text] = {
    "recency_days": _Text("no purchase for {v} days", "days", "no purchase yet"),
    "overdue_ratio": _Text("{v}x the usual gap between purchases", "ratio",
                           f"usual gap unknown ({_REPEAT})"),
    "frequency": _Text("{v} purchase{s} so far", "count", "no purchase yet"),
    "repeat_frequency": _Text("{v} repeat purchase{s}", "count", "no repeat purchase"),
    "tenure_days": _Text("customer for {v} days", "days", "new customer"),
    "t_x_days": _Text("{v} days between first and last purchase", "days",
                      "first and last purchase unknown"),
    "monetary_total": _Text("spent {v} in total", "money", "total spend unknown"),
    "monetary_mean": _Text("average basket {v}", "money", "average basket unknown"),
    "monetary_mean_repeat": _Text("average repeat basket {v}", "money",
                                  f"no repeat basket ({_REPEAT})"),
    "refund_total": _Text("refunds of {v}", "money", "refunds unknown"),
    "gap_mean_days": _Text("buys every {v} days on average", "days",
                           f"average gap unknown ({_REPEAT})"),
    "gap_median_days": _Text("median gap between purchases {v} days", "days",
                             f"median gap unknown ({_REPEAT})"),
    "gap_std_days": _Text("gaps between purchases vary by {v} days", "days",
                          "gap variation unknown (fewer than three purchases)"),
    "gap_last_days": _Text("last gap between purchases {v} days", "days",
                           f"last gap unknown ({_REPEAT})"),
    "days_since_first_repeat": _Text("first repeat purchase {v} days ago", "days",
                                     "no repeat purchase yet"),
    "recent_tenure_share": _Text("{v} of purchases in the latest quarter of their history",
                                 "share", "history too short to compare"),
    "bgnbd_p_alive": _Text("BG/NBD: {v} likely still active", "share",
                           "BG/NBD activity unknown"),
    "bgnbd_p_purchase": _Text("BG/NBD: {v} chance of a purchase in the horizon", "share",
                              "BG/NBD purchase chance unknown"),
}
_WINDOWED: dict[str, _Text] = {
    "occasions": _Text("{v} purchase{s} in the last {w} days", "count", ""),
    "spend": _Text("spent {v} in the last {w} days", "money",
                   "spend in the last {w} days unknown"),
    "rate_trend": _Text("buying rate in the last {w} days {v}x their usual", "ratio",
                        "buying rate in the last {w} days not comparable"),
    "basket_trend": _Text("basket in the last {w} days {v}x their usual", "ratio",
                          "no basket in the last {w} days to compare"),
}
_WINDOWED_NAME = re.compile(r"^(occasions|spend|rate_trend|basket_trend)_(\d+)d$")
_FORMATS = {"count": "{:.0f}", "days": "{:.0f}", "money": "{:,.2f}", "ratio": "{:.1f}",
            "share": "{:.0%}", "number": "{:,.3g}"}


@functools.lru_cache(maxsize=1024)
def reason_text_spec(feature: str) -> tuple[str, str, str]:
    """``(template, style, missing text)`` of a feature's reason (``{v}``, ``{s}``)."""
    if feature in _TEXTS:
        t = _TEXTS[feature]
        return t.template, t.style, t.missing
    found = _WINDOWED_NAME.match(feature)
    if found:
        t = _WINDOWED[found.group(1)]
        w = found.group(2)
        return (t.template.replace("{w}", w), t.style,
                t.missing.replace("{w}", w) or f"{feature} unknown")
    return feature + " = {v}", "number", f"{feature} unknown"


def _format_values(values: np.ndarray, style: str) -> np.ndarray:
    """Format numbers as text, once per distinct value (vectorised over customers).

    Values are first snapped to 6 decimals: engines that sum in another order differ
    in the last bits (19.344999999999 vs 19.345000000001), which must not decide how
    a half cent or a half day is rounded.
    """
    values = np.round(values, 6)
    if style in ("count", "days"):
        return np.round(values).astype(np.int64).astype(str).astype(object)
    unique, inverse = np.unique(values, return_inverse=True)
    spec = _FORMATS[style]
    return np.array([spec.format(v) for v in unique.tolist()], dtype=object)[inverse]


def _describe(feature: str, values: np.ndarray, extra: dict[str, np.ndarray]) -> np.ndarray:
    """Reason text of ``feature`` for each value (``extra``: other features, same rows)."""
    template, style, missing = reason_text_spec(feature)
    out = np.full(values.size, missing, dtype=object)
    present = ~np.isnan(values)
    if not present.any():
        return out
    text = _format_values(values[present], style)
    before, _, after = template.partition("{v}")
    if "{s}" in after:
        singular = after.replace("{s}", "")
        plural = after.replace("{s}", "s")
        after_text = np.where(text == "1", singular, plural).astype(object)
    else:
        after_text = np.full(text.size, after, dtype=object)
    out[present] = before + text + after_text
    if feature == "recency_days" and "overdue_ratio" in extra:
        # "no purchase for 120 days, 3.0x the usual gap" (the gap is known from 2 purchases)
        ratio = extra["overdue_ratio"][present]
        known = ~np.isnan(ratio)
        if known.any():
            idx = np.flatnonzero(present)[known]
            out[idx] = out[idx] + ", " + _format_values(ratio[known], "ratio") + (
                "x the usual gap")
    return out


def reasons_from_contributions(
    contributions: np.ndarray, names: list[str], inputs: pd.DataFrame, *, top: int = 3,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """The ``top`` reasons of each row as text: an object array ``(rows, top)``.

    ``contributions`` has one column per name (no bias); ``inputs`` holds those
    features' values (or ``values``, the same as a float matrix with one column per
    name: read by position, which costs less than a frame's columns by name). Only
    positive contributions are reasons; ties go to the feature listed first.
    """
    matrix = values
    position = {name: j for j, name in enumerate(names)} if matrix is not None else {}

    def column(name: str) -> np.ndarray:
        if matrix is not None and name in position:
            return matrix[:, position[name]]
        return inputs[name].to_numpy(dtype=np.float64)

    n = contributions.shape[0]
    values = np.where(np.isnan(contributions), -np.inf, contributions)
    chosen = np.full((n, top), -1, dtype=np.int64)
    rows = np.arange(n)
    for j in range(min(top, values.shape[1])):
        best = np.argmax(values, axis=1)  # the first maximum: ties go to the earlier feature
        positive = values[rows, best] > 0
        chosen[:, j] = np.where(positive, best, -1)
        values[rows, best] = -np.inf
    texts = np.full((n, top), "", dtype=object)
    extra = {"overdue_ratio": column("overdue_ratio")} if (
        "overdue_ratio" in position or "overdue_ratio" in inputs) else {}
    for k in np.unique(chosen[chosen >= 0]):
        row_idx, slot_idx = np.nonzero(chosen == k)
        wanted = np.unique(row_idx)
        feature = names[int(k)]
        text = _describe(feature, column(feature)[wanted],
                         {name: v[wanted] for name, v in extra.items()})
        texts[row_idx, slot_idx] = text[np.searchsorted(wanted, row_idx)]
    return texts


def explain(
    artifact: ModelArtifact,
    features: pd.DataFrame,
    *,
    top: int = 3,
    offset_center: float | None = None,
) -> pd.DataFrame:
    """The ``top`` features that raise each customer's churn risk most, as text.

    Parameters
    ----------
    artifact
        The model.
    features
        Features of the customers (``compute_features``).
    top
        Reasons per customer; fewer (empty strings) when fewer features raise the risk.
    offset_center
        See :func:`churnlens._contributions.model_contributions`: the mean BG/NBD
        offset of the whole scored base, so that chunks explain as the whole base.
    """
    texts, _ = _explained(artifact, features, top=top, offset_center=offset_center)
    return pd.DataFrame(texts, columns=[f"reason_{j + 1}" for j in range(top)],
                        index=features.index)


# Rows of each batch on which the risk from the contributions is checked against the
# model's own predict_proba (any disagreement beyond rounding is a bug: refused).
_RISK_CHECK_ROWS = 32
_RISK_TOLERANCE = 1e-9


def _explained(artifact: ModelArtifact, features: pd.DataFrame, *, top: int = 3,
               offset_center: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reasons (an object array ``(rows, top)``) and the churn risk, from one pass.

    The contributions of a row add up to the model's churn log-odds before calibration
    (TreeSHAP's local accuracy, the logistic part's exact terms), so the risk is
    ``calibrator(sigmoid(row sum))``: the model's ``predict_proba`` up to float
    rounding, without predicting twice. A sample of every batch is checked against
    ``predict_proba`` (for a ChurnModel, its own computation from the same inputs:
    LightGBM's prediction and the logistic pipeline's decision function).
    """
    from churnlens._contributions import PREDICT_LOCK, contribution_values
    from churnlens._model import ChurnModel, _linear_transformed, _sigmoid

    model = artifact.model
    if not (isinstance(model, ChurnModel) and hasattr(model, "booster_")):
        raise ModelError(f"{type(model).__name__} cannot explain its scores.")
    # What the model's components see, computed once for the contributions, the check
    # and the reasons' values: its matrix of features (BG/NBD's included), BG/NBD's
    # offset, and the logistic part's transforms.
    matrix, offset = model._inputs_matrix(features)
    transformed = (_linear_transformed(model.logistic_, matrix)
                   if getattr(model, "logistic_", None) is not None else None)
    contrib = contribution_values(model, features, offset_center=offset_center, matrix=matrix,
                                  offset=offset, transformed=transformed)
    risk = np.clip(model.calibrator_.transform(_sigmoid(contrib.sum(axis=1))), 0.0, 1.0)
    sample = slice(0, min(_RISK_CHECK_ROWS, len(features)))
    with PREDICT_LOCK:  # predict_proba, from these inputs
        part = None if transformed is None else transformed[sample]
        raw = model._raw_score_of(matrix[sample], offset[sample], transformed=part)
        expected = model._proba_of(raw)[:, 1]
    if not np.allclose(risk[sample], expected, rtol=0, atol=_RISK_TOLERANCE):
        raise ModelError(
            "the model's feature contributions do not add up to its churn risk (largest "
            f"difference {np.max(np.abs(risk[sample] - expected)):.3g}); this model cannot be "
            "explained by churnlens. Suggestion: score with --no-reasons and report it.")
    names = list(model.feature_names_)
    texts = reasons_from_contributions(contrib[:, :len(names)], names, features, top=top,
                                       values=matrix)
    return texts, risk


# --- the model ----------------------------------------------------------------------


def check_model(
    artifact: ModelArtifact,
    *,
    source: str = "the model",
    card: dict[str, Any] | None = None,
    signature_inputs: list[str] | None = None,
    horizon_days: int | None = None,
) -> None:
    """Refuse a model that cannot score churnlens features consistently.

    Checks that the model is fitted and knows its features, that it predicts the
    horizon its artifact claims (and ``horizon_days`` if given), that churnlens can
    compute every feature it needs with its windows, and that its model card (bundle)
    or MLflow signature lists the features the model really uses.
    """
    from churnlens._features import feature_names

    model = artifact.model
    fitted = getattr(model, "base_feature_names_", None)
    if fitted is None or not hasattr(model, "predict_proba"):
        raise ModelError(f"{source} does not hold a fitted churnlens model "
                         f"({type(model).__name__}). Suggestion: train one with churnlens "
                         "train.")
    own = getattr(model, "horizon_days_", artifact.horizon_days)
    if int(own) != int(artifact.horizon_days):
        raise ModelError(f"{source}: the model was fitted for a {own}-day horizon but its "
                         f"metadata says {artifact.horizon_days} days; it is refused. "
                         "Suggestion: export the bundle again from the registry.")
    if horizon_days is not None and int(horizon_days) != int(artifact.horizon_days):
        raise ModelError(f"{source} predicts churn over {artifact.horizon_days} days, not "
                         f"{horizon_days}. Suggestion: score with a model trained for "
                         f"{horizon_days} days, or drop --horizon-days.")
    try:
        computable = set(feature_names(artifact.windows_days))
    except ChurnlensError as exc:
        raise ModelError(f"{source}: unusable feature windows {artifact.windows_days} "
                         f"({exc}).") from exc
    unknown = [n for n in artifact.feature_names if n not in computable]
    if unknown:
        raise ModelError(f"{source} needs features churnlens does not compute: {unknown[:8]}. "
                         "Suggestion: use a model trained by this churnlens version.")
    listed = None
    if card is not None:
        listed, where = card.get("features"), "its model card"
        for key, value in (("horizon_days", artifact.horizon_days),
                           ("windows_days", list(artifact.windows_days)),
                           ("as_of", str(artifact.as_of))):
            if key in card and card[key] != value:
                raise ModelError(f"{source}: {where} says {key} = {card[key]!r} but the model "
                                 f"has {value!r}; the bundle is inconsistent and is refused. "
                                 "Suggestion: export the bundle again.")
    elif signature_inputs is not None:
        listed, where = signature_inputs, "its MLflow signature"
    if listed is not None and list(listed) != list(artifact.feature_names):
        extra = [n for n in listed if n not in artifact.feature_names]
        lacking = [n for n in artifact.feature_names if n not in listed]
        raise ModelError(f"{source}: {where} lists other features than the model uses "
                         f"(listed only: {extra[:5]}, used only: {lacking[:5]}); the model is "
                         "refused. Suggestion: export or register the model again.")


def load_scoring_model(
    uri_or_path: str | os.PathLike[str],
    mlflow_settings: Any = None,
    *,
    horizon_days: int | None = None,
) -> ModelArtifact:
    """Load a model for scoring and refuse it if unreadable or mismatched.

    ``models:/...`` and ``runs:/...`` come from the MLflow registry (their signature is
    checked against the model), anything else is a bundle folder or card (its digest
    and its card are checked). Every problem is a :class:`ModelError` with a clear
    message.
    """
    from churnlens._artifact import BUNDLE_CARD, load_bundle

    text = str(uri_or_path)
    registry = text.startswith(("models:/", "runs:/"))
    card = signature = None
    try:
        if registry:
            from churnlens._tracking import load_model

            artifact = load_model(text, mlflow_settings)
            signature = _signature_inputs(text)
        else:
            artifact = load_bundle(text)
            card_path = Path(text) / BUNDLE_CARD if Path(text).is_dir() else Path(text)
            card = json.loads(card_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{text}: cannot read the model ({exc.strerror or exc}). "
                         "Suggestion: check the path and its permissions.") from exc
    check_model(artifact, source=text, card=card, signature_inputs=signature,
                horizon_days=horizon_days)
    return artifact


def _signature_inputs(uri: str) -> list[str] | None:
    import mlflow

    try:
        signature = mlflow.models.get_model_info(uri).signature
    except Exception:  # no signature recorded: nothing to compare with
        return None
    return None if signature is None or signature.inputs is None else list(
        signature.inputs.input_names())


def check_as_of(artifact: ModelArtifact, as_of: Any, *, allow_past: bool) -> pd.Timestamp:
    """The scoring date, refused if before the model's training as-of (unless allowed)."""
    as_of_ts = parse_date(as_of, name="as_of")
    if as_of_ts.date() < artifact.as_of and not allow_past:
        raise ModelError(
            f"the as-of date {as_of_ts.date()} is before the model's training as-of "
            f"{artifact.as_of}: the model has seen that period. Suggestion: pass --allow-past "
            "for a deliberate backfill."
        )
    return as_of_ts


# --- scoring ------------------------------------------------------------------------


@dataclasses.dataclass
class ScoreResult:
    """Scores (one row per customer, by customer id) and a summary for humans and tools.

    Attributes
    ----------
    scores
        One row per customer: ``customer_id``, ``as_of``, ``churn_risk``, ``risk_band``,
        ``expected_value``, ``value_at_risk``, RFM columns, ``segment`` and reasons.
    summary
        Customers scored, risk distribution, predicted vs last actual retention, model
        name, version and alias (what ``--json-summary`` prints).
    features
        The features the scores were computed from (``None`` when not kept).
    """

    scores: pd.DataFrame
    summary: dict[str, Any]
    features: pd.DataFrame | None


def score_batch(
    features: pd.DataFrame,
    as_of: dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None = None,
    reasons: bool = True,
    offset_center: float | None = None,
) -> pd.DataFrame:
    """Every score column but ``segment`` (which needs the whole base) for a batch.

    Row-wise: a batch gives the same rows whatever else is in it (``offset_center``
    fixes the one base-wide quantity the reasons use). Both engines call this. With
    reasons, the risk comes from the same contributions as the reasons (see
    :func:`_explained`); without, from the model's ``predict_proba``.
    """
    missing = [c for c in artifact.feature_names if c not in features.columns]
    if missing:
        artifact.churn_risk(features)  # raises the model's own clear error
    why = None
    if reasons:
        why, risk = _explained(artifact, features, offset_center=offset_center)
    else:
        from churnlens._contributions import PREDICT_LOCK

        with PREDICT_LOCK:  # see PREDICT_LOCK: LightGBM's predict is not thread-safe
            risk = artifact.churn_risk(features)
    value = expected_value(features, artifact.horizon_days)
    columns = {
        "customer_id": features["customer_id"].to_numpy(),
        "as_of": np.full(len(features), as_of, dtype=object),
        "churn_risk": risk,
        "risk_band": risk_band(risk, settings).astype(object),
        "expected_value": value,
        "value_at_risk": risk * value,
        "recency_days": features["recency_days"].to_numpy(dtype=np.int64),
        "frequency": features["frequency"].to_numpy(dtype=np.int64),
        "monetary_total": features["monetary_total"].to_numpy(dtype=np.float64),
    }
    if why is not None:
        for j, column in enumerate(REASON_COLUMNS):
            columns[column] = why[:, j]
    return pd.DataFrame(columns)


def score_customers(
    transactions: pd.DataFrame,
    as_of: str | dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None = None,
    allow_past: bool = False,
    reasons: bool = True,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ScoreResult:
    """Score every customer acquired by ``as_of`` from history ``<= as_of`` only.

    Parameters
    ----------
    transactions
        Clean transactions (``load_transactions``); rows after ``as_of`` are ignored.
    as_of
        Scoring date.
    artifact
        The model (:func:`load_scoring_model`).
    settings
        Risk band thresholds.
    allow_past
        Allow an as-of date before the model's training as-of (backfills).
    reasons
        Add the three main reasons of each score.
    progress
        Called with a short message at each step and after each chunk.
    chunk_rows
        Customers scored at a time (bounds memory).

    Returns
    -------
    ScoreResult
        ``scores`` has the columns ``customer_id, as_of, churn_risk, risk_band,
        expected_value, value_at_risk, recency_days, frequency, monetary_total,
        segment`` and, with reasons, ``reason_1 .. reason_3``; one row per customer,
        sorted by customer id.
    """
    say = progress or (lambda _m: None)
    as_of_ts = check_as_of(artifact, as_of, allow_past=allow_past)
    features, last_actual = features_at(transactions, as_of_ts.date(), artifact, progress=say)
    return score_features(features, as_of_ts.date(), artifact, last_actual=last_actual,
                          settings=settings, reasons=reasons, progress=say,
                          chunk_rows=chunk_rows)


def score_file(
    source: Any,
    as_of: str | dt.date,
    artifact: ModelArtifact,
    *,
    settings: Any = None,
    allow_past: bool = False,
    reasons: bool = True,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ScoreResult:
    """Load, validate and score a transactions file (``churnlens score``).

    As :func:`score_customers`, with the columns and timestamp format of
    ``settings.data``; the transactions are freed once the features are computed, so
    the memory peak is the larger of loading and scoring, not their sum. The cleaning
    report is added to the summary (``cleaning``).
    """
    from churnlens._config import Settings

    settings = settings or Settings()
    say = progress or (lambda _m: None)
    as_of_ts = check_as_of(artifact, as_of, allow_past=allow_past)
    say("loading and validating transactions")
    tx, cleaning = load_transactions(
        source, **settings.data.loader_options(), as_of=as_of_ts.date())
    day = as_of_ts.date()
    features = _features(tx, day, artifact, say)
    # The last actual retention needs the transactions: measured in the background while
    # the customers are scored (DuckDB releases the GIL), then the transactions go.
    with ThreadPoolExecutor(max_workers=1) as pool:
        last_actual = pool.submit(_last_actual, tx, day, artifact.horizon_days)
        del tx
        result = score_features(features, day, artifact, last_actual=last_actual,
                                settings=settings.scoring, reasons=reasons, progress=say,
                                chunk_rows=chunk_rows)
    result.summary["cleaning"] = _json_ready(cleaning.to_dict())
    return result


def features_at(transactions: pd.DataFrame, as_of: dt.date, artifact: ModelArtifact, *,
                progress: Progress | None = None) -> tuple[pd.DataFrame, Any]:
    """Features at ``as_of`` (sorted by customer id) and the last actual retention rates
    of the horizon before it, from the transactions up to ``as_of``."""
    features = _features(transactions, as_of, artifact, progress or (lambda _m: None))
    return features, _last_actual(transactions, as_of, artifact.horizon_days)


def _features(transactions: pd.DataFrame, as_of: dt.date, artifact: ModelArtifact,
              say: Progress) -> pd.DataFrame:
    from churnlens._features import compute_features

    say(f"computing features at {as_of}")
    features = compute_features(history_until(transactions, as_of), as_of,
                                windows_days=artifact.windows_days)
    # compute_features returns rows in no particular order: sort, so the output (and
    # every sum over it) is the same byte for byte from run to run.
    return features.sort_values("customer_id", kind="stable", ignore_index=True)


def _last_actual(transactions: pd.DataFrame, as_of: dt.date, horizon_days: int) -> Any:
    """Actual retention of ``(as_of - H, as_of]`` with ``W = H`` (``retention.md``)."""
    from churnlens._retention import retention_rates

    history = history_until(transactions, as_of)
    if not len(history):
        return None
    return retention_rates(history, as_of - dt.timedelta(days=horizon_days), as_of,
                           window_days=horizon_days)


def score_features(
    features: pd.DataFrame,
    as_of: dt.date,
    artifact: ModelArtifact,
    *,
    last_actual: Any = None,
    settings: ScoringSettings | None = None,
    reasons: bool = True,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ScoreResult:
    """Score a features frame chunk by chunk, then add segments and the summary."""
    from churnlens._contributions import offset_sum

    say = progress or (lambda _m: None)
    n = len(features)
    center = None
    if reasons and n:
        total, count = offset_sum(artifact.model, features)
        center = total / count if count else 0.0
    step = max(1, int(chunk_rows))
    starts = list(range(0, n, step))
    say(f"scoring {n:,} customers" + (" with reasons" if reasons else ""))

    def run(start: int) -> pd.DataFrame:
        return score_batch(features.iloc[start:start + step], as_of, artifact,
                           settings=settings, reasons=reasons, offset_center=center)

    # With reasons, two chunks at a time: their work (NumPy) releases the GIL, and the
    # rows of a chunk do not depend on the other rows; memory: two chunks in flight.
    # Without, the model's predict dominates, and it runs one at a time (PREDICT_LOCK)
    # on LightGBM's own threads.
    workers = 2 if reasons else 1
    parts = []
    with ThreadPoolExecutor(max_workers=min(workers, max(1, len(starts)))) as pool:
        for start, part in zip(starts, pool.map(run, starts), strict=True):
            parts.append(part)
            say(f"scored {min(start + step, n):,} of {n:,} customers")
    scores = pd.concat(parts, ignore_index=True) if len(parts) > 1 else (
        parts[0] if parts else score_batch(features, as_of, artifact, settings=settings,
                                           reasons=reasons))
    scores.insert(BASE_COLUMNS.index("segment"), "segment",
                  rfm_segment(features)["segment"].to_numpy())
    say("summarising")
    if hasattr(last_actual, "result"):  # measured in the background (score_file)
        last_actual = last_actual.result()
    summary = summarise(scores, artifact, as_of, last_actual)
    return ScoreResult(scores=scores, summary=summary, features=features)


def summarise(scores: pd.DataFrame, artifact: ModelArtifact, as_of: dt.date,
              last_actual: Any) -> dict[str, Any]:
    """The scoring summary (``churnlens score --json-summary``)."""
    risk = scores["churn_risk"].to_numpy(dtype=np.float64)
    horizon = artifact.horizon_days
    predicted = predict_retention(scores["recency_days"].to_numpy(), risk, window_days=horizon)
    counts = scores["segment"].value_counts()
    return build_summary(
        as_of=as_of, artifact=artifact, customers=len(scores),
        bands={band: int((scores["risk_band"] == band).sum()) for band in BANDS},
        segments={rule.segment: int(counts.get(rule.segment, 0)) for rule in SEGMENT_RULES},
        quantiles=[float(q) for q in np.quantile(risk, [0.1, 0.5, 0.9])] if len(risk) else None,
        risk_sum=float(risk.sum()), variance_sum=float((risk * (1 - risk)).sum()),
        value_at_risk_total=float(scores["value_at_risk"].sum()),
        predicted=predicted.to_dict(), last_actual=last_actual,
        last_start=as_of - dt.timedelta(days=horizon),
    )


def build_summary(
    *, as_of: dt.date, artifact: ModelArtifact, customers: int, bands: dict[str, int],
    segments: dict[str, int], quantiles: list[float] | None, risk_sum: float,
    variance_sum: float, value_at_risk_total: float, predicted: dict[str, Any],
    last_actual: Any, last_start: dt.date,
) -> dict[str, Any]:
    """Assemble the summary document from base-wide aggregates (both engines)."""
    actual = _rates_dict(last_actual) if last_actual is not None else {}
    retention_all = low_all = high_all = None
    if customers:
        half = _Z95 * math.sqrt(variance_sum)
        stay = customers - risk_sum
        retention_all = stay / customers * 100
        low_all = max(stay - half, 0.0) / customers * 100
        high_all = min((stay + half) / customers * 100, 100.0)
    pairing = [
        {"rate": rate, "predicted": predicted.get(rate),
         "predicted_low": predicted.get(f"{rate}_low"),
         "predicted_high": predicted.get(f"{rate}_high"),
         "last_actual": actual.get(rate)}
        for rate in ("cohort_retention", "crr")
    ]
    return _json_ready({
        "as_of": str(as_of),
        "horizon_days": artifact.horizon_days,
        "customers_scored": customers,
        "model": {"name": artifact.name, "version": artifact.version, "alias": artifact.alias,
                  "as_of": str(artifact.as_of), "run_id": artifact.run_id,
                  "horizon_days": artifact.horizon_days},
        "risk_bands": bands,
        "segments": segments,
        "risk_quantiles": dict(zip(("p10", "p50", "p90"), quantiles, strict=True))
        if quantiles else {},
        "mean_churn_risk": risk_sum / customers if customers else None,
        "expected_customers_lost": predicted.get("expected_lost"),
        "value_at_risk_total": value_at_risk_total,
        "predicted": predicted,
        "predicted_retention_all": retention_all,
        "predicted_retention_all_low": low_all,
        "predicted_retention_all_high": high_all,
        "last_actual": {"start": str(last_start), "end": str(as_of), **actual},
        "pairing": pairing,
    })


def _rates_dict(rates: Any) -> dict[str, Any]:
    raw = rates.to_dict() if hasattr(rates, "to_dict") else dict(rates)
    return {k: v for k, v in raw.items() if k not in ("start", "end")}


def _json_ready(value: Any) -> Any:
    """NaN as None, numpy scalars as Python numbers: strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    return value


# --- at-risk lists ------------------------------------------------------------------


SORT_KEYS = ("churn_risk", "value_at_risk")


def at_risk_list(
    scores: pd.DataFrame,
    *,
    top: int | None = None,
    min_risk: float | None = None,
    segment: str | None = None,
    band: str | None = None,
    sort: str = "churn_risk",
) -> pd.DataFrame:
    """Filter and rank scored customers for a campaign.

    Parameters
    ----------
    scores
        Scores written by ``churnlens score`` / :func:`score_customers`.
    top
        Keep the first ``top`` rows after sorting.
    min_risk
        Keep customers with ``churn_risk >= min_risk``.
    segment
        Keep one RFM segment (an unknown name is an error listing the known ones).
    band
        Keep one risk band: ``high``, ``medium`` or ``low``.
    sort
        ``churn_risk`` or ``value_at_risk``, descending; ties by customer id.

    Returns
    -------
    pandas.DataFrame
        The chosen rows, in campaign order, with a fresh index.
    """
    from churnlens._validation import require_choice

    require_choice(sort, name="sort", allowed=SORT_KEYS)
    missing = [c for c in ("customer_id", "churn_risk", "value_at_risk") if c not in scores]
    if missing:
        raise ModelError(
            f"the scores lack columns {missing}. Suggestion: pass a file written by "
            "churnlens score."
        )
    keep = pd.Series(True, index=scores.index)
    if min_risk is not None:
        if not 0 <= min_risk <= 1:
            raise ModelError(f"min_risk must be between 0 and 1, got {min_risk!r}.")
        keep &= scores["churn_risk"] >= min_risk
    if segment is not None:
        known = sorted(scores["segment"].dropna().unique()) if "segment" in scores else []
        if segment not in known:
            raise ModelError(f"segment {segment!r} not found; segments in the scores: {known}.")
        keep &= scores["segment"] == segment
    if band is not None:
        require_choice(band, name="band", allowed=BANDS)
        keep &= scores["risk_band"] == band
    if top is not None and top < 1:
        raise ModelError(f"top must be at least 1, got {top}.")
    chosen = scores.loc[keep]
    order = np.lexsort((chosen["customer_id"].astype(str).to_numpy(), -chosen[sort].to_numpy()))
    chosen = chosen.iloc[order]
    if top is not None:
        chosen = chosen.head(top)
    return chosen.reset_index(drop=True)


# --- a few customers (the API) ------------------------------------------------------


def score_histories(
    transactions: pd.DataFrame,
    as_of: str | dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None = None,
    reasons: bool = True,
    offset_center: float | None = None,
    features_fn: Callable[..., pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Score customers from their purchases alone (the API's ``POST /score``).

    Parameters
    ----------
    transactions
        Clean transactions (columns ``customer_id``, ``timestamp``, ``amount``, as
        :func:`churnlens.load_transactions` gives them). Rows after ``as_of`` are
        ignored.
    as_of
        Scoring date (its whole day included).
    artifact
        The model.
    settings
        Risk band thresholds.
    reasons
        Add ``reason_1`` .. ``reason_3``; skip that work when they are not needed.
    offset_center
        As for :func:`score_batch`: a fixed value (the API passes its scored base's)
        makes every customer's reasons independent of who else is in the batch.
    features_fn
        Computes the features, called like :func:`churnlens.compute_features` (the
        default). The API passes :class:`churnlens._online.FeatureQuery`, which runs
        the same SQL with its statement prepared once.

    Returns
    -------
    pandas.DataFrame
        :func:`score_batch` rows: one per customer with a purchase occasion on or
        before ``as_of``, in no particular order. A customer without a row cannot be
        scored (no occasion yet).
    """
    from churnlens._features import compute_features

    compute = features_fn or compute_features
    as_of_day = parse_date(as_of, name="as_of").date()
    history = history_until(transactions, as_of_day)
    features = compute(history, as_of_day, windows_days=artifact.windows_days) if len(
        history) else None
    if features is None or not len(features):
        columns = [c for c in SCORE_COLUMNS if c != "segment" and (
            reasons or c not in REASON_COLUMNS)]
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return score_batch(features.reset_index(drop=True), as_of_day, artifact,
                       settings=settings, reasons=reasons, offset_center=offset_center)


# --- writing ------------------------------------------------------------------------


def write_output(
    frame: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    metadata: dict[str, str] | None = None,
    spreadsheet_safe: bool = False,
) -> Path:
    """Write scores or a list to ``.parquet`` or ``.csv``, atomically and kill-safe.

    The whole file is first encoded in memory (all computation done), then written to
    a hidden temporary ``.NAME.tmp-*`` beside the target, under an exclusive lock, and
    renamed over the target. A crash or a kill at any point leaves the previous file
    intact; only a kill during the final byte copy can leave a temporary file, which
    the next successful write to the same target removes (a temporary whose lock is
    free belongs to a writer that is gone). ``metadata`` goes into the Parquet schema
    (key ``churnlens``, read back by ``churnlens._io.read_table_metadata``).
    ``spreadsheet_safe`` neutralizes formula-like CSV cells.
    """
    from churnlens._io import (
        TABLE_SUFFIXES,
        atomic_path,
        check_output_path,
        neutralize_formulas,
        parquet_table,
    )

    target = check_output_path(path, suffixes=TABLE_SUFFIXES)
    if target.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(parquet_table(frame, metadata), sink)
        payload = memoryview(sink.getvalue())
    else:
        text = io.StringIO()
        # CRLF line ends (RFC 4180): a cell holding a bare CR or LF is then quoted, so
        # an id such as "\rCR" stays one cell instead of breaking the row.
        (neutralize_formulas(frame) if spreadsheet_safe else frame).to_csv(
            text, index=False, lineterminator="\r\n")
        payload = memoryview(text.getvalue().encode("utf-8"))
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return target


