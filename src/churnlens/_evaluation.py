"""Model quality: classification metrics, predicted vs actual retention and spend.

The pairing of predicted risk with retention follows ``retention.md``: with the
activity window ``W`` equal to the horizon ``H``, a customer active at ``t0`` is still
active at ``t0 + H`` exactly when they buy in ``(t0, t0 + H]``, i.e. when they did not
churn. So the model's churn risks ``p_i`` scored at ``t0`` predict the period's rates:

- predicted ``cohort_retention`` = mean over the active base ``S`` of ``(1 - p_i)``;
- predicted ``crr`` = sum over everyone acquired by ``t0`` of ``(1 - p_i)``, over ``|S|``;
- 95% intervals from the Poisson-binomial variance ``sum p_i (1 - p_i)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnlens._io import json_ready
from churnlens.exceptions import DataValidationError

__all__ = [
    "PredictedRetention",
    "actual_spend",
    "calibration_table",
    "classification_metrics",
    "lift_table",
    "predict_retention",
    "value_decile_table",
    "value_metrics",
]

_Z95 = 1.959963984540054


def _arrays(churned: Any, risk: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(churned, dtype=np.float64)
    p = np.asarray(risk, dtype=np.float64)
    if y.shape != p.shape:
        raise DataValidationError(f"{y.size} labels but {p.size} risks.")
    if y.size == 0:
        raise DataValidationError("no customers to evaluate.")
    if np.isnan(y).any() or np.isnan(p).any():
        raise DataValidationError("labels and risks must not be missing.")
    return y, p


def classification_metrics(churned: Any, risk: Any) -> dict[str, float]:
    """Quality of churn risks against what happened.

    Parameters
    ----------
    churned
        The truth per customer: 1 if they churned (no purchase in the horizon), else 0.
    risk
        The churn risk the model gave each customer, in the same order.

    Returns
    -------
    dict of str to float
        ``auc`` (ROC AUC), ``pr_auc`` (average precision for churned = 1), ``brier``,
        ``log_loss``, ``lift_top_decile`` (churn rate among the 10% highest risks over
        the overall churn rate), ``predicted_retention`` and ``actual_retention``
        (percent of customers predicted / seen to buy again in the horizon) and
        ``customers``. A metric undefined for the data (AUC with one class) is NaN.

    Raises
    ------
    DataValidationError
        Labels and risks of different lengths, none at all, or missing values.

    Examples
    --------
    >>> m = classification_metrics([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.4])
    >>> m["auc"], round(m["brier"], 4), m["actual_retention"]
    (1.0, 0.0925, 50.0)
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, p = _arrays(churned, risk)
    two_classes = len(np.unique(y)) == 2
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    return {
        "auc": float(roc_auc_score(y, p)) if two_classes else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if two_classes else math.nan,
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
        "lift_top_decile": _top_lift(y, p, 0.1),
        "predicted_retention": float((1 - p.mean()) * 100),
        "actual_retention": float((1 - y.mean()) * 100),
        "customers": float(y.size),
    }


def _top_lift(y: np.ndarray, p: np.ndarray, share: float) -> float:
    if y.mean() == 0:
        return math.nan
    k = max(1, round(share * y.size))
    # Stable order on ties: a model that gives everyone the same risk gets lift 1 on
    # average, not whatever the input order happens to favour.
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def lift_table(churned: Any, risk: Any, bins: int = 10) -> pd.DataFrame:
    """Churn rate, lift and cumulative gain by risk decile (decile 1 = highest risk).

    Parameters
    ----------
    churned
        What happened: 1 churned, 0 retained.
    risk
        Predicted churn risk of the same customers.
    bins
        Number of equal-count groups, highest risk first (ties keep input order).

    Returns
    -------
    pandas.DataFrame
        One row per group: ``decile``, ``customers``, ``mean_risk``, ``churn_rate``,
        ``lift`` (churn rate over the overall churn rate) and ``cumulative_gain``
        (share of all churners in this and the higher-risk groups).

    Examples
    --------
    >>> table = lift_table([1, 1, 0, 0], [0.9, 0.8, 0.3, 0.1], bins=2)
    >>> table[["decile", "churn_rate", "lift", "cumulative_gain"]]
       decile  churn_rate  lift  cumulative_gain
    0       1         1.0   2.0              1.0
    1       2         0.0   0.0              1.0
    """
    y, p = _arrays(churned, risk)
    order = np.argsort(-p, kind="stable")
    groups = np.array_split(order, bins)
    rows = []
    captured = 0.0
    total = y.sum()
    for i, idx in enumerate(groups, start=1):
        captured += y[idx].sum()
        rows.append({
            "decile": i,
            "customers": len(idx),
            "mean_risk": float(p[idx].mean()) if len(idx) else math.nan,
            "churn_rate": float(y[idx].mean()) if len(idx) else math.nan,
            "lift": float(y[idx].mean() / y.mean()) if len(idx) and y.mean() else math.nan,
            "cumulative_gain": float(captured / total) if total else math.nan,
        })
    return pd.DataFrame(rows)


def calibration_table(churned: Any, risk: Any, bins: int = 10) -> pd.DataFrame:
    """Mean predicted risk vs observed churn rate in equal-count bins of risk.

    Parameters
    ----------
    churned
        What happened: 1 churned, 0 retained.
    risk
        Predicted churn risk of the same customers.
    bins
        Number of equal-count bins, lowest risk first.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin``, ``customers``, ``mean_risk`` and ``churn_rate``. A
        calibrated model has ``mean_risk`` close to ``churn_rate`` in every bin.

    Examples
    --------
    >>> calibration_table([0, 1, 0, 1], [0.1, 0.3, 0.7, 0.9], bins=2)
       bin  customers  mean_risk  churn_rate
    0    1          2        0.2         0.5
    1    2          2        0.8         0.5
    """
    y, p = _arrays(churned, risk)
    return _equal_count_bins(y, p, bins, ("bin", "mean_risk", "churn_rate"))


def _equal_count_bins(truth: np.ndarray, predicted: np.ndarray, bins: int,
                      names: tuple[str, str, str]) -> pd.DataFrame:
    """Customers sorted by prediction (stable) in ``bins`` groups of equal count (as
    ``numpy.array_split`` cuts them; empty groups left out), each group's size and mean
    prediction and truth: the rows of :func:`calibration_table` and
    :func:`value_decile_table`, whose column ``names`` are (group, predicted, truth)."""
    group, mean_predicted, mean_truth = names
    order = np.argsort(predicted, kind="stable")
    rows = [
        {group: i, "customers": len(idx), mean_predicted: float(predicted[idx].mean()),
         mean_truth: float(truth[idx].mean())}
        for i, idx in enumerate(np.array_split(order, bins), start=1) if len(idx)
    ]
    return pd.DataFrame(rows)


SAMPLING_ONLY = "who churns given the risks (sampling only; not the model's own error)"
WITH_LEVEL_ERROR = ("who churns given the risks, and the model's level error measured on "
                    "its training cutoffs")


@dataclasses.dataclass(frozen=True)
class PredictedRetention:
    """Retention rates a model predicts for the coming period (percent).

    See ``docs/retention.md`` for the formulas. Built by :func:`predict_retention`.

    Attributes
    ----------
    window_days
        Activity window ``W``, equal to the model's horizon.
    S
        The active base at the start: customers whose last purchase is within the
        window.
    acquired
        Everyone acquired by the start (every customer scored).
    cohort_retention, cohort_retention_low, cohort_retention_high
        Predicted share of ``S`` still active at the end, with its 95% interval.
    crr, crr_low, crr_high
        Predicted customer retention rate ``(E - N) / S``, with its 95% interval.
    expected_lost, expected_retained
        Expected numbers of customers of ``S`` who churn / stay (sums of risks and of
        ``1 - risk`` over ``S``).
    level_error_cohort_retention, level_error_crr
        The half-width (points) the model's own measured level error adds to each
        interval; 0 when none was given.
    interval_covers
        What the intervals cover, in words.
    """

    window_days: int
    S: int
    acquired: int
    cohort_retention: float
    cohort_retention_low: float
    cohort_retention_high: float
    crr: float
    crr_low: float
    crr_high: float
    expected_lost: float
    expected_retained: float
    level_error_cohort_retention: float = 0.0
    level_error_crr: float = 0.0
    interval_covers: str = SAMPLING_ONLY

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        return json_ready(dataclasses.asdict(self))


def predict_retention(
    recency_days: Any, risk: Any, *, window_days: int,
    level_error: Mapping[str, Any] | None = None,
) -> PredictedRetention:
    """Predicted ``cohort_retention`` and ``crr`` for the period after the as-of date.

    Parameters
    ----------
    recency_days
        Days since each customer's last purchase occasion at the as-of date, for
        everyone acquired by then.
    risk
        Their churn risk for a horizon equal to ``window_days``.
    window_days
        Activity window ``W`` (= the horizon): a customer is active at the as-of date
        when ``recency_days < W``.
    level_error
        The model's measured level error (``ChurnModel.level_error_``): its
        ``half_width_cohort_retention`` and ``half_width_crr`` (points) are added in
        quadrature to the sampling half-widths. ``None``: sampling only.

    Returns
    -------
    PredictedRetention
        Predicted cohort retention and CRR in percent, with 95% intervals from the
        Poisson-binomial variance ``sum p_i (1 - p_i)`` (who churns given the risks),
        widened by the level error when given; NaN rates when ``S`` is empty.

    Raises
    ------
    DataValidationError
        ``recency_days`` and ``risk`` of different lengths.

    Examples
    --------
    >>> r = predict_retention([10, 100, 5], [0.2, 0.9, 0.5], window_days=91)
    >>> r.S, round(r.cohort_retention, 2), round(r.crr, 2)
    (2, 65.0, 70.0)
    """
    recency = np.asarray(recency_days, dtype=np.float64)
    p = np.clip(np.asarray(risk, dtype=np.float64), 0.0, 1.0)
    if recency.shape != p.shape:
        raise DataValidationError(f"{recency.size} recencies but {p.size} risks.")
    active = recency < window_days
    s = int(active.sum())
    stay_active = float((1 - p[active]).sum())
    stay_all = float((1 - p).sum())
    var_active = float((p[active] * (1 - p[active])).sum())
    var_all = float((p * (1 - p)).sum())

    return retention_from_sums(
        window_days=window_days, S=s, acquired=int(p.size), stay_active=stay_active,
        var_active=var_active, stay_all=stay_all, var_all=var_all,
        lost_active=float(p[active].sum()), level_error=level_error)


def retention_from_sums(*, window_days: int, S: int, acquired: int, stay_active: float,
                        var_active: float, stay_all: float, var_all: float,
                        lost_active: float, level_error: Mapping[str, Any] | None = None,
                        ) -> PredictedRetention:
    """:func:`predict_retention` from the sums it needs (the Spark engine aggregates them).

    ``S``: active customers; ``stay_*``: sums of ``1 - risk`` over the active customers
    and over everyone; ``var_*``: sums of ``risk * (1 - risk)``; ``lost_active``: sum of
    the active customers' risks; ``level_error`` as in :func:`predict_retention`.
    """
    level_cohort = _half_width(level_error, "half_width_cohort_retention")
    level_crr = _half_width(level_error, "half_width_crr")

    def rate(count: float, var: float, level: float) -> tuple[float, float, float]:
        if S == 0:
            return math.nan, math.nan, math.nan
        half = math.hypot(_Z95 * math.sqrt(var), level / 100 * S)
        return (count / S * 100, max(count - half, 0.0) / S * 100, (count + half) / S * 100)

    cohort, cohort_low, cohort_high = rate(stay_active, var_active, level_cohort)
    crr, crr_low, crr_high = rate(stay_all, var_all, level_crr)
    return PredictedRetention(
        window_days=int(window_days), S=S, acquired=acquired,
        cohort_retention=cohort, cohort_retention_low=cohort_low,
        cohort_retention_high=min(cohort_high, 100.0) if S else cohort_high,
        crr=crr, crr_low=crr_low, crr_high=crr_high,
        expected_lost=lost_active, expected_retained=float(stay_active),
        level_error_cohort_retention=level_cohort, level_error_crr=level_crr,
        interval_covers=WITH_LEVEL_ERROR if level_cohort or level_crr else SAMPLING_ONLY,
    )


def _half_width(level_error: Mapping[str, Any] | None, key: str) -> float:
    """A level-error half-width in points; 0 when unknown (missing or NaN)."""
    if not level_error:
        return 0.0
    value = level_error.get(key)
    if value is None:
        return 0.0
    value = float(value)
    return value if math.isfinite(value) and value > 0 else 0.0


# --- value: predicted vs actual spend -------------------------------------------------

_UNITS_PER_CURRENCY = 1_000_000_000  # amounts add as whole billionths (retention.md)


def actual_spend(transactions: pd.DataFrame, start: Any, end: Any) -> pd.Series:
    """What each customer spent on their purchase occasions in the days ``(start, end]``.

    The spend of a period counts as the retention rules count purchases
    (``docs/retention.md``): a day's amounts net out (refunds included, added as whole
    billionths), a day whose net amount is positive is an occasion and adds that net
    amount, and a day whose net is zero or negative (a refund-only day) adds nothing,
    as it is no occasion. This is the quantity the value models forecast: purchases
    times spend per purchase occasion.

    Parameters
    ----------
    transactions
        Clean transactions (``customer_id``, ``timestamp``, ``amount``).
    start, end
        The period: days after ``start`` up to and including ``end``.

    Returns
    -------
    pandas.Series
        Spend by ``customer_id``, only for customers with an occasion in the period.

    Examples
    --------
    >>> tx = pd.DataFrame({"customer_id": ["A", "A", "A", "B", "B"],
    ...                    "timestamp": pd.to_datetime(["2024-01-02", "2024-01-02",
    ...                        "2024-01-05", "2024-01-03", "2024-01-01"]),
    ...                    "amount": [30.0, -10.0, -5.0, 20.0, 99.0]})
    >>> actual_spend(tx, "2024-01-01", "2024-01-31").to_dict()
    {'A': 20.0, 'B': 20.0}
    """
    ts = transactions["timestamp"]
    after = pd.Timestamp(start) + pd.Timedelta(days=1)
    until = pd.Timestamp(end) + pd.Timedelta(days=1)
    window = transactions.loc[(ts >= after) & (ts < until)]
    units = np.round(window["amount"].to_numpy(dtype=np.float64) * _UNITS_PER_CURRENCY)
    daily = pd.Series(units.astype(np.int64), index=window.index).groupby(
        [window["customer_id"], window["timestamp"].dt.normalize()], sort=True).sum()
    occasions = daily[daily > 0]
    spend = occasions.groupby(level=0, sort=True).sum() / _UNITS_PER_CURRENCY
    spend.index.name = "customer_id"
    return spend.astype(np.float64)



def _spend_arrays(actual: Any, predicted: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if a.shape != p.shape or a.ndim != 1:
        raise DataValidationError(f"{a.size} actual spends but {p.size} predictions.")
    if a.size == 0:
        raise DataValidationError("no customers to evaluate.")
    if not (np.isfinite(a).all() and np.isfinite(p).all()):
        raise DataValidationError("actual and predicted spend must be finite numbers.")
    return a, p


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as Spearman's correlation needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    # boundaries of runs of equal values in sorted order
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _spearman(a: np.ndarray, p: np.ndarray) -> float:
    ra, rp = _average_ranks(a), _average_ranks(p)
    da, dp = ra - ra.mean(), rp - rp.mean()
    denominator = math.sqrt(float((da * da).sum()) * float((dp * dp).sum()))
    return float((da * dp).sum() / denominator) if denominator > 0 else math.nan


def value_metrics(actual: Any, predicted: Any) -> dict[str, float]:
    """Predicted vs actual spend per customer in a horizon.

    Parameters
    ----------
    actual
        What each customer spent in the horizon.
    predicted
        What a model predicted they would spend, in the same order.

    Returns
    -------
    dict of str to float
        ``mae`` (mean absolute error), ``rmse`` (root mean squared error),
        ``spearman`` (Spearman's rank correlation, ties at their average rank; NaN
        when either side is constant), ``aggregate_error_pct`` (100 times the
        predicted total minus the actual total, over the actual total; NaN when the
        actual total is 0), ``predicted_total``, ``actual_total``,
        ``predicted_mean``, ``actual_mean`` and ``customers``.

    Raises
    ------
    DataValidationError
        Arrays of different lengths, empty, or with a missing or infinite value.

    Examples
    --------
    >>> m = value_metrics([0.0, 10.0, 30.0], [5.0, 10.0, 20.0])
    >>> m["mae"], round(m["rmse"], 4), m["spearman"], m["aggregate_error_pct"]
    (5.0, 6.455, 1.0, -12.5)
    """
    a, p = _spend_arrays(actual, predicted)
    error = p - a
    total = float(a.sum())
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(math.sqrt(float((error * error).mean()))),
        "spearman": _spearman(a, p),
        "aggregate_error_pct": (float(p.sum()) - total) / total * 100 if total else math.nan,
        "predicted_total": float(p.sum()),
        "actual_total": total,
        "predicted_mean": float(p.mean()),
        "actual_mean": float(a.mean()),
        "customers": float(a.size),
    }


def value_decile_table(actual: Any, predicted: Any, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs mean actual spend in equal-count groups of predicted spend.

    Parameters
    ----------
    actual
        What each customer spent in the horizon.
    predicted
        Predicted spend of the same customers.
    bins
        Number of equal-count groups, lowest prediction first (ties keep input order).

    Returns
    -------
    pandas.DataFrame
        One row per group: ``decile``, ``customers``, ``mean_predicted`` and
        ``mean_actual``. A well-calibrated value model has the two close in every group.

    Examples
    --------
    >>> value_decile_table([0.0, 5.0, 20.0, 40.0], [1.0, 2.0, 30.0, 25.0], bins=2)
       decile  customers  mean_predicted  mean_actual
    0       1          2             1.5          2.5
    1       2          2            27.5         30.0
    """
    a, p = _spend_arrays(actual, predicted)
    return _equal_count_bins(a, p, bins, ("decile", "mean_predicted", "mean_actual"))
