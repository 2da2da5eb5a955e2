"""Batch scoring: churn risk, bands, value at risk, RFM segments and reasons.

Every rule a marketer acts on is defined once here and documented:

- **risk band**: ``high`` if ``churn_risk >= scoring.high_risk`` (0.7), ``medium`` if
  ``>= scoring.medium_risk`` (0.4), else ``low``.
- **expected value**: expected net spend in the horizon *if the customer stays*:
  ``monetary_mean * max(1, frequency / (tenure_days + H) * H)``. The occasion rate is
  the customer's own, shrunk towards one occasion per horizon for short histories
  (a customer seen once yesterday is not expected to buy every day).
- **value at risk** = ``churn_risk * expected_value``.
- **RFM segment**: recency, frequency and monetary scores 1-5 by quintile over the
  scored base (5 = most recent / most frequent / highest spend), then the first
  matching rule of :data:`SEGMENT_RULES`.
- **reasons**: the three features that push this customer's risk up the most
  (LightGBM per-customer contributions, ``pred_contrib``), as readable text with the
  customer's actual values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from churnlens._artifact import ModelArtifact
from churnlens._config import ScoringSettings
from churnlens._evaluation import predict_retention
from churnlens._validation import parse_date
from churnlens.exceptions import ChurnlensError, ModelError

__all__ = [
    "SEGMENT_RULES",
    "ScoreResult",
    "expected_value",
    "explain",
    "rfm_segment",
    "risk_band",
    "score_customers",
]

Progress = Callable[[str], None]
SCORE_COLUMNS = [
    "customer_id", "as_of", "churn_risk", "risk_band", "expected_value", "value_at_risk",
    "recency_days", "frequency", "monetary_total", "segment", "reason_1", "reason_2",
    "reason_3",
]

# (segment, rule as documented, predicate on the 1-5 scores r, f, m): first match wins.
SegmentRule = tuple[str, str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]]
SEGMENT_RULES: list[SegmentRule] = [
    ("champions", "R >= 4 and F >= 4", lambda r, f, m: (r >= 4) & (f >= 4)),
    ("loyal", "R >= 3 and F >= 4", lambda r, f, m: (r >= 3) & (f >= 4)),
    ("new", "R >= 4 and F = 1", lambda r, f, m: (r >= 4) & (f <= 1)),
    ("promising", "R >= 4", lambda r, f, m: r >= 4),
    ("big spenders at risk", "R <= 2 and M >= 4", lambda r, f, m: (r <= 2) & (m >= 4)),
    ("at risk", "R <= 2 and F >= 3", lambda r, f, m: (r <= 2) & (f >= 3)),
    ("lost", "R = 1", lambda r, f, m: r <= 1),
    ("hibernating", "R = 2", lambda r, f, m: r <= 2),
    ("needs attention", "R = 3", lambda r, f, m: r == 3),
]


def risk_band(churn_risk: Any, settings: ScoringSettings | None = None) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` for each risk (thresholds from settings).

    Examples
    --------
    >>> risk_band([0.9, 0.5, 0.1]).tolist()
    ['high', 'medium', 'low']
    """
    s = settings or ScoringSettings()
    risk = np.asarray(churn_risk, dtype=np.float64)
    return np.where(risk >= s.high_risk, "high", np.where(risk >= s.medium_risk, "medium", "low"))


def expected_value(features: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Expected net spend in the horizon if the customer stays (see module docstring).

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


def _quintile_score(values: pd.Series, *, higher_is_better: bool = True) -> np.ndarray:
    ranks = values.rank(method="average", pct=True, ascending=higher_is_better)
    return np.clip(np.ceil(ranks.to_numpy() * 5), 1, 5).astype(np.int64)


def rfm_segment(features: pd.DataFrame) -> pd.DataFrame:
    """RFM scores (1-5) and the marketing segment of each customer.

    Returns a frame with ``r_score``, ``f_score``, ``m_score`` and ``segment``.
    """
    r = _quintile_score(features["recency_days"], higher_is_better=False)
    f = _quintile_score(features["frequency"])
    m = _quintile_score(features["monetary_total"])
    segment = np.full(len(features), "needs attention", dtype=object)
    decided = np.zeros(len(features), dtype=bool)
    for name, _, rule in SEGMENT_RULES:
        take = rule(r, f, m) & ~decided
        segment[take] = name
        decided |= take
    return pd.DataFrame({"r_score": r, "f_score": f, "m_score": m, "segment": segment},
                        index=features.index)


_TEMPLATES: dict[str, Callable[[float, pd.Series], str]] = {
    "recency_days": lambda v, row: f"no purchase for {v:.0f} days",
    "overdue_ratio": lambda v, row: f"{v:.1f}x the usual gap between purchases",
    "frequency": lambda v, row: f"only {v:.0f} purchase occasion{'s' if v != 1 else ''}",
    "repeat_frequency": lambda v, row: f"{v:.0f} repeat purchase{'s' if v != 1 else ''}",
    "tenure_days": lambda v, row: f"customer for {v:.0f} days",
    "monetary_total": lambda v, row: f"spent {v:,.2f} in total",
    "monetary_mean": lambda v, row: f"average basket {v:,.2f}",
    "refund_total": lambda v, row: f"refunds of {v:,.2f}",
    "gap_mean_days": lambda v, row: f"buys every {v:.0f} days on average",
    "gap_last_days": lambda v, row: f"last gap between purchases {v:.0f} days",
    "bgnbd_p_alive": lambda v, row: f"BG/NBD says {v:.0%} likely still active",
    "bgnbd_p_purchase": lambda v, row: f"BG/NBD gives {v:.0%} chance of a purchase",
}


def _reason_text(feature: str, value: float, row: pd.Series) -> str:
    if isinstance(value, float) and math.isnan(value):
        return f"{feature} unknown"
    if feature in _TEMPLATES:
        return _TEMPLATES[feature](value, row)
    if feature.endswith("d") and feature[:-1].rsplit("_", 1)[-1].isdigit():
        days = feature[:-1].rsplit("_", 1)[-1]
        if feature.startswith("occasions_"):
            return f"{value:.0f} purchases in the last {days} days"
        if feature.startswith("spend_"):
            return f"spent {value:,.2f} in the last {days} days"
    return f"{feature} = {value:,.3g}"


def explain(artifact: ModelArtifact, features: pd.DataFrame, *, top: int = 3) -> pd.DataFrame:
    """The ``top`` features that raise each customer's churn risk most, as text.

    Only features with a positive contribution count; fewer reasons are empty strings.
    """
    model = artifact.model
    if not hasattr(model, "contributions"):
        raise ModelError(f"{type(model).__name__} cannot explain its scores.")
    inputs = model.model_inputs(features)
    contrib = model.contributions(features).drop(columns="bias")
    values = contrib.to_numpy()
    order = np.argsort(-values, axis=1, kind="stable")[:, :top]
    names = np.asarray(contrib.columns)
    reasons = np.full((len(features), top), "", dtype=object)
    for i in range(len(features)):
        row = inputs.iloc[i]
        for j, k in enumerate(order[i]):
            if values[i, k] > 0:
                feature = names[k]
                reasons[i, j] = _reason_text(feature, float(row[feature]), row)
    return pd.DataFrame(reasons, columns=[f"reason_{j + 1}" for j in range(top)],
                        index=features.index)


@dataclasses.dataclass
class ScoreResult:
    """Scores (one row per customer) and a summary a human or a dashboard can read."""

    scores: pd.DataFrame
    summary: dict[str, Any]
    features: pd.DataFrame


def score_customers(
    transactions: pd.DataFrame,
    as_of: str | dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None = None,
    allow_past: bool = False,
    reasons: bool = True,
    progress: Progress | None = None,
) -> ScoreResult:
    """Score every customer acquired by ``as_of`` from history ``<= as_of`` only.

    Parameters
    ----------
    transactions
        Clean transactions (``load_transactions``); rows after ``as_of`` are ignored.
    as_of
        Scoring date.
    artifact
        The model (``churnlens.load_model``).
    settings
        Risk band thresholds.
    allow_past
        Allow an as-of date before the model's training as-of (backfills).
    reasons
        Add the three main reasons of each score (costs time on millions of rows).
    """
    from churnlens._features import compute_features
    from churnlens._retention import retention_rates

    say = progress or (lambda _m: None)
    settings = settings or ScoringSettings()
    as_of_ts = parse_date(as_of, name="as_of")
    if as_of_ts.date() < artifact.as_of and not allow_past:
        raise ModelError(
            f"the as-of date {as_of_ts.date()} is before the model's training as-of "
            f"{artifact.as_of}: the model has seen that period. Suggestion: pass --allow-past "
            "for a deliberate backfill."
        )
    history = transactions.loc[transactions["timestamp"] < as_of_ts + pd.Timedelta(days=1)]
    say(f"computing features at {as_of_ts.date()}")
    features = compute_features(history, as_of_ts.date(), windows_days=artifact.windows_days)
    say(f"scoring {len(features):,} customers")
    risk = artifact.churn_risk(features)
    horizon = artifact.horizon_days
    value = expected_value(features, horizon)
    scores = pd.DataFrame({
        "customer_id": features["customer_id"].to_numpy(),
        "as_of": as_of_ts.date(),
        "churn_risk": risk,
        "risk_band": risk_band(risk, settings),
        "expected_value": value,
        "value_at_risk": risk * value,
        "recency_days": features["recency_days"].to_numpy(),
        "frequency": features["frequency"].to_numpy(),
        "monetary_total": features["monetary_total"].to_numpy(),
        "segment": rfm_segment(features)["segment"].to_numpy(),
    })
    if reasons:
        say("explaining scores (top 3 reasons per customer)")
        scores = pd.concat([scores, explain(artifact, features).reset_index(drop=True)], axis=1)
    say("summarising")
    predicted = predict_retention(features["recency_days"], risk, window_days=horizon)
    last_start = as_of_ts - pd.Timedelta(days=horizon)
    last_actual = retention_rates(history, last_start.date(), as_of_ts.date(), window_days=horizon)
    summary = {
        "as_of": str(as_of_ts.date()),
        "horizon_days": horizon,
        "customers_scored": len(scores),
        "model": {"name": artifact.name, "version": artifact.version, "alias": artifact.alias,
                  "as_of": str(artifact.as_of), "run_id": artifact.run_id},
        "risk_bands": {band: int((scores["risk_band"] == band).sum())
                       for band in ("high", "medium", "low")},
        "risk_quantiles": {f"p{q}": float(np.quantile(risk, q / 100)) for q in (10, 50, 90)}
        if len(risk) else {},
        "mean_churn_risk": float(np.mean(risk)) if len(risk) else None,
        "expected_customers_lost": predicted.expected_lost,
        "value_at_risk_total": float(scores["value_at_risk"].sum()),
        "predicted": predicted.to_dict(),
        "predicted_retention_all": float((1 - np.mean(risk)) * 100) if len(risk) else None,
        "last_actual": {"start": str(last_start.date()), "end": str(as_of_ts.date()),
                        **_rates_dict(last_actual)},
    }
    return ScoreResult(scores=scores, summary=summary, features=features)


def _rates_dict(rates: Any) -> dict[str, Any]:
    raw = rates.to_dict() if hasattr(rates, "to_dict") else dict(rates)
    return {k: v for k, v in raw.items() if k not in ("start", "end")}


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

    Rows are sorted by ``sort`` (descending, ties by customer id), filtered by
    ``min_risk``, ``segment`` and ``band``, then cut to ``top`` rows.
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
        require_choice(band, name="band", allowed=("high", "medium", "low"))
        keep &= scores["risk_band"] == band
    chosen = scores.loc[keep]
    order = np.lexsort((chosen["customer_id"].astype(str).to_numpy(), -chosen[sort].to_numpy()))
    chosen = chosen.iloc[order]
    if top is not None:
        if top < 1:
            raise ModelError(f"top must be at least 1, got {top}.")
        chosen = chosen.head(top)
    return chosen.reset_index(drop=True)


def score_histories(
    rows: list[tuple[Any, str, float]],
    customer_ids: list[Any],
    as_of: dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Score a few customers from their raw purchases (the API's ``POST /score``).

    ``rows`` are ``(customer_id, timestamp, amount)``; purchases after ``as_of`` are
    ignored. Returns the scored customers and those that cannot be scored (no purchase
    occasion on or before ``as_of``), in request order.
    """
    from churnlens._features import compute_features
    from churnlens._loading import load_transactions

    scored: dict[str, dict[str, Any]] = {}
    if rows:
        raw = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
        raw["customer_id"] = raw["customer_id"].astype(str)
        try:
            tx, _ = load_transactions(raw, as_of=as_of)
        except ChurnlensError:
            tx = None  # every purchase is after as_of: nobody is scored
        if tx is not None:
            features = compute_features(tx, as_of, windows_days=artifact.windows_days)
            if len(features):
                risk = artifact.churn_risk(features)
                value = expected_value(features, artifact.horizon_days)
                bands = risk_band(risk, settings)
                why = explain(artifact, features)
                for i, cid in enumerate(features["customer_id"].astype(str)):
                    scored[cid] = {
                        "churn_risk": float(risk[i]), "risk_band": str(bands[i]),
                        "expected_value": float(value[i]),
                        "value_at_risk": float(risk[i] * value[i]),
                        "recency_days": int(features["recency_days"].iloc[i]),
                        "frequency": int(features["frequency"].iloc[i]),
                        "reasons": [r for r in why.iloc[i].tolist() if r],
                    }
    results, unscored = [], []
    for cid in customer_ids:
        found = scored.get(str(cid))
        if found is None:
            unscored.append({"customer_id": cid, "reason": "no purchase occasion (positive net "
                             f"amount) on or before {as_of}"})
        else:
            results.append({"customer_id": cid, **found})
    return results, unscored
