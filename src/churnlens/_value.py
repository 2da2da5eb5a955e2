"""Per-customer value: the value model fitted at training, and its outputs at scoring.

The rules this module owns (``docs/value.md``, "Value outputs"; ``docs/scoring.md``):

- **the value model** (:class:`ValueModel`, :func:`fit_value_model`): a purchase model,
  Pareto/NBD (:mod:`churnlens._paretonbd`), or BG/NBD (:mod:`churnlens._bgnbd`) when
  the Pareto/NBD fit fails, does not converge or ends on a boundary of its parameter
  space; and the Gamma-Gamma spend model (:mod:`churnlens._gammagamma`), or none when
  it cannot be fitted or has no finite mean (then each customer's own mean basket is
  the spend). Fitted once, on the features at the training as-of date (the whole
  calibration history), and kept as plain numbers: picklable and JSON-ready
  (:meth:`ValueModel.to_dict`, :meth:`ValueModel.from_dict`). Every fallback, boundary
  and failed assumption check is a sentence of ``notes``.
- **the outputs** (:func:`predict_value`, :data:`VALUE_COLUMNS`), per customer, row-wise
  (a customer's values depend on their own history and the model only), over a horizon
  ``H`` in days:

  - ``p_alive``: probability that the customer is still alive (has not dropped out) at
    the as-of date;
  - ``expected_purchases``: expected purchase occasions in the next ``H`` days;
  - ``days_to_next_purchase``: median waiting time, in days, to the next purchase
    occasion: the ``t`` with ``P(a purchase in (as_of, as_of + t]) = 1/2``; NaN when the
    probability of ever buying again is at most 1/2 (the median does not exist);
  - ``expected_spend``: ``expected_purchases`` times the Gamma-Gamma conditional mean
    spend per occasion, in the money unit of the data;
  - ``clv``: the discounted expected spend over ``clv_months`` months of 30.4375 days:
    ``sum_i spend * (E[Y(30.4375 i)] - E[Y(30.4375 (i-1))]) / (1 + m)^i`` for ``i = 1 ..
    clv_months``, with ``m = (1 + annual_discount_rate)^(1/12) - 1`` the monthly rate
    (the same steps as ``lifetimes``' ``customer_lifetime_value``);
  - ``expected_value``: the expected spend in the horizon *if the customer stays
    active*: the posterior mean purchase rate given alive, ``(r + x) / (alpha + T)``
    per day, times ``H`` times the spend per occasion. ``value_at_risk = churn_risk *
    expected_value`` (:func:`churnlens._rules.value_at_risk`).

  Customers without a repeat purchase get the Gamma-Gamma population mean spend (or
  their own first basket when Gamma-Gamma is not fitted).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnlens._btyd import FIT_ERRORS, FloatArray, repeat_features_to_data
from churnlens.exceptions import EmptyDataError, ModelError

__all__ = [
    "DAYS_PER_MONTH",
    "MAX_FIT_CUSTOMERS",
    "PURCHASE_MODELS",
    "VALUE_COLUMNS",
    "ValueModel",
    "fit_sample",
    "fit_value_model",
    "predict_value",
    "value_model_of",
]

VALUE_COLUMNS = ("p_alive", "expected_purchases", "days_to_next_purchase", "expected_spend",
                 "clv")
PURCHASE_MODELS = ("pareto/nbd", "bg/nbd")
# A month of the CLV sum: a year of 365.25 days in 12 steps.
DAYS_PER_MONTH = 30.4375
# Customers the purchase and spend models are fitted on at most (a seeded sample beyond):
# the fits collapse identical rows, but each distinct history costs 2F1 evaluations, and
# four parameters are pinned down well by this many customers (the published CDNOW fits
# use 2,357). Measured: a Pareto/NBD fit of 50,000 synthetic customers takes ~9 s; on
# some short-history logs the same size took minutes before the sample and the
# evaluation budget (churnlens._paretonbd.BOUNDED_FIT_EVALUATIONS) bounded it.
MAX_FIT_CUSTOMERS = 50_000
_SAMPLE_SEED = 0
_FORMAT = 1
_PURCHASE_PARAMS = {"pareto/nbd": ("r", "alpha", "s", "beta"),
                    "bg/nbd": ("r", "alpha", "a", "b")}
_SPEND_PARAMS = ("p", "q", "gamma")
# Newton steps of the median's root-find at most (it converges in a handful).
_MAX_NEWTON = 60


@dataclasses.dataclass(frozen=True)
class ValueModel:
    """The fitted value model: plain parameters (picklable, JSON-ready).

    Attributes
    ----------
    purchase_model
        ``"pareto/nbd"``, or ``"bg/nbd"`` when the Pareto/NBD fit failed, did not
        converge or ended on a boundary (``notes`` says which).
    purchase_params
        ``r, alpha, s, beta`` (Pareto/NBD) or ``r, alpha, a, b`` (BG/NBD); ``alpha``
        and ``beta`` in days.
    spend_params
        Gamma-Gamma ``p, q, gamma`` (``gamma`` in the money unit of the data), or
        ``None``: the spend per occasion is then each customer's own mean basket.
    notes
        Every fallback, boundary and failed assumption check, in words, and the spend
        model's assumption check (correlation of frequency and average spend).
    horizon_days
        The horizon the model was fitted for (its churn horizon); predictions take
        their own.
    customers
        Customers the purchase model was fitted on.
    """

    purchase_model: str
    purchase_params: dict[str, float]
    spend_params: dict[str, float] | None
    notes: tuple[str, ...] = ()
    horizon_days: int = 91
    customers: int = 0

    def __post_init__(self) -> None:
        if self.purchase_model not in _PURCHASE_PARAMS:
            raise ModelError(f"value model: purchase_model must be one of "
                             f"{list(_PURCHASE_PARAMS)}, got {self.purchase_model!r}.")
        for what, params, names in (
                ("purchase_params", self.purchase_params, _PURCHASE_PARAMS[self.purchase_model]),
                ("spend_params", self.spend_params, _SPEND_PARAMS)):
            if params is None and what == "spend_params":
                continue
            if not isinstance(params, Mapping) or sorted(params) != sorted(names) or not all(
                    isinstance(v, int | float) and math.isfinite(v) and v > 0
                    for v in params.values()):
                raise ModelError(f"value model: {what} must be {list(names)}, each finite and "
                                 f"> 0, got {params!r}. Suggestion: retrain the model.")
        if self.spend_params is not None and self.spend_params["q"] <= 1:
            raise ModelError(f"value model: the spend model has no finite mean (q = "
                             f"{self.spend_params['q']} <= 1). Suggestion: retrain the model.")

    @property
    def population_mean_spend(self) -> float | None:
        """Gamma-Gamma's population mean spend per occasion ``p gamma / (q - 1)``, or
        ``None`` without a spend model."""
        if self.spend_params is None:
            return None
        p = self.spend_params
        return p["p"] * p["gamma"] / (p["q"] - 1.0)

    def to_dict(self) -> dict[str, Any]:
        """The model as JSON-ready data (:meth:`from_dict` reads it back)."""
        return {"format": _FORMAT, "purchase_model": self.purchase_model,
                "purchase_params": {k: float(v) for k, v in self.purchase_params.items()},
                "spend_params": None if self.spend_params is None else {
                    k: float(v) for k, v in self.spend_params.items()},
                "notes": list(self.notes), "horizon_days": int(self.horizon_days),
                "customers": int(self.customers)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValueModel:
        """Read a model written by :meth:`to_dict`.

        Raises
        ------
        ModelError
            If ``data`` is not a value model of a known format.
        """
        try:
            if data.get("format") != _FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            spend = data["spend_params"]
            return cls(purchase_model=str(data["purchase_model"]),
                       purchase_params={str(k): float(v)
                                        for k, v in data["purchase_params"].items()},
                       spend_params=None if spend is None else {
                           str(k): float(v) for k, v in spend.items()},
                       notes=tuple(str(n) for n in data.get("notes", ())),
                       horizon_days=int(data.get("horizon_days", 91)),
                       customers=int(data.get("customers", 0)))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the saved value model is unreadable ({type(exc).__name__}: "
                             f"{exc}). Suggestion: retrain the model.") from exc


def value_model_of(model: Any) -> ValueModel | None:
    """The value model a fitted churn model (or its scoring form) carries, or ``None``.

    A :class:`~churnlens.ChurnModel` holds a :class:`ValueModel` in ``value_model_``;
    its pickle-free :class:`~churnlens._scorer.ChurnScorer` the same as a dict. A model
    trained before value models were kept has neither.
    """
    value = getattr(model, "value_model_", None)
    if value is None or isinstance(value, ValueModel):
        return value
    if isinstance(value, Mapping):
        return ValueModel.from_dict(value)
    raise ModelError(f"the model's value_model_ is a {type(value).__name__}, not a value "
                     "model. Suggestion: retrain the model.")


# --------------------------------------------------------------------------- fit


def fit_sample(features: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """The customers a BTYD fit uses: all, or a seeded sample of :data:`MAX_FIT_CUSTOMERS`.

    The value model and the backtest's Pareto/NBD baseline draw the same sample from
    the same features, so the baseline can reuse the value model's fit.

    Returns
    -------
    tuple
        The rows (in their original order) and a note saying that a sample was used,
        or ``None`` when every customer is.
    """
    if len(features) <= MAX_FIT_CUSTOMERS:
        return features, None
    rows = np.sort(np.random.default_rng(_SAMPLE_SEED).choice(
        len(features), MAX_FIT_CUSTOMERS, replace=False))
    return features.iloc[rows], (f"fitted on a seeded sample of {MAX_FIT_CUSTOMERS:,} of "
                                 f"the {len(features):,} customers")


def _sample(features: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    sample, note = fit_sample(features)
    if note is not None:
        notes.append(f"value models {note}")
    return sample


def _fit_purchase(features: pd.DataFrame, horizon_days: int, notes: list[str]
                  ) -> tuple[str, dict[str, float]]:
    """Pareto/NBD, or BG/NBD when Pareto/NBD fails, does not converge or is on a boundary."""
    from churnlens._bgnbd import BGNBDModel
    from churnlens._paretonbd import BOUNDED_FIT_EVALUATIONS, ParetoNBDModel

    try:
        pareto = ParetoNBDModel(horizon_days=horizon_days,
                                max_evaluations=BOUNDED_FIT_EVALUATIONS).fit(features)
    except FIT_ERRORS as exc:
        why = f"the Pareto/NBD fit failed ({exc})"
    else:
        if pareto.boundary_ is None and pareto.converged_:
            return "pareto/nbd", {k: float(v) for k, v in pareto.params_.items()}
        why = (f"the Pareto/NBD fit is on a boundary ({pareto.boundary_})"
               if pareto.boundary_ is not None else
               f"the Pareto/NBD fit did not converge ({pareto.fit_message_})")
    bgnbd = BGNBDModel(horizon_days=horizon_days).fit(features)
    notes.append(f"{why}: purchases from BG/NBD instead")
    issue = getattr(bgnbd, "boundary_", None)
    if issue:
        notes.append(f"the BG/NBD fit is on a boundary too ({issue})")
    return "bg/nbd", {k: float(v) for k, v in bgnbd.params_.items()}


def _fit_spend(features: pd.DataFrame, notes: list[str]) -> dict[str, float] | None:
    """Gamma-Gamma on the repeat customers with a positive mean repeat basket, or None."""
    from churnlens._gammagamma import GammaGammaModel

    own = "the spend per occasion is each customer's own mean basket"
    if "monetary_mean_repeat" not in features.columns:
        notes.append(f"no monetary_mean_repeat feature: no spend model; {own}")
        return None
    x = features["repeat_frequency"].to_numpy(dtype=np.float64)
    m = features["monetary_mean_repeat"].to_numpy(dtype=np.float64, na_value=np.nan)
    usable = (x > 0) & np.isfinite(m) & (m > 0)
    dropped = int(((x > 0) & ~usable).sum())
    if dropped:
        notes.append(f"{dropped} repeat customers without a positive mean repeat basket left "
                     "out of the spend model")
    try:
        spend = GammaGammaModel().fit(features.loc[usable | (x == 0)])
    except FIT_ERRORS as exc:
        notes.append(f"the Gamma-Gamma fit failed ({exc}); {own}")
        return None
    notes.append(f"spend model check: {spend.assumption_check_['message']}")
    if spend.boundary_ is not None:
        notes.append(f"the Gamma-Gamma fit is on a boundary ({spend.boundary_}); {own}")
        return None
    if not spend.converged_:
        notes.append(f"the Gamma-Gamma fit did not fully converge ({spend.fit_message_}); "
                     "its best point is used")
    return {k: float(v) for k, v in spend.params_.items()}


def fit_value_model(features: pd.DataFrame, *, horizon_days: int) -> ValueModel:
    """Fit the value model on the features at one as-of date.

    Parameters
    ----------
    features
        :func:`churnlens.compute_features` output at the training as-of date (the
        whole calibration history): ``repeat_frequency``, ``t_x_days`` and
        ``tenure_days`` (the BTYD ``x, t_x, T`` in days) and ``monetary_mean_repeat``.
    horizon_days
        The churn horizon (recorded; Pareto/NBD's fit does not depend on it).

    Returns
    -------
    ValueModel
        Pareto/NBD (or BG/NBD as a fallback) and Gamma-Gamma (or none), with notes.

    Raises
    ------
    EmptyDataError
        If ``features`` has no rows.
    DataValidationError
        If the BTYD columns break their contract (see
        :func:`churnlens._btyd.repeat_features_to_data`).
    """
    from churnlens._validation import require_positive_int

    horizon = require_positive_int(horizon_days, name="horizon_days")
    repeat_features_to_data(features, "the value model")  # the contract, checked once
    if not len(features):
        raise EmptyDataError("the value model needs at least one customer; features has no "
                             "rows. Suggestion: check the as-of date.")
    notes: list[str] = []
    sample = _sample(features, notes)
    purchase_model, purchase_params = _fit_purchase(sample, horizon, notes)
    spend_params = _fit_spend(sample, notes)
    return ValueModel(purchase_model=purchase_model, purchase_params=purchase_params,
                      spend_params=spend_params, notes=tuple(notes), horizon_days=horizon,
                      customers=len(sample))


# --------------------------------------------------------------------------- predict


def _spend_per_occasion(model: ValueModel, x: FloatArray, features: pd.DataFrame
                        ) -> FloatArray:
    """Gamma-Gamma's conditional mean spend, or the customer's own mean basket."""
    from churnlens._gammagamma import gammagamma_expected_spend

    n = len(x)
    m = (features["monetary_mean_repeat"].to_numpy(dtype=np.float64, na_value=np.nan)
         if "monetary_mean_repeat" in features.columns else np.full(n, np.nan))
    usable = (x > 0) & np.isfinite(m) & (m > 0)
    if model.spend_params is not None:
        # A repeat customer without a positive repeat basket counts as having none: the
        # population mean (as a customer without a repeat purchase).
        return gammagamma_expected_spend(model.spend_params, np.where(usable, x, 0.0),
                                         np.where(usable, m, np.nan))
    own = features["monetary_mean"].to_numpy(dtype=np.float64, na_value=np.nan) if (
        "monetary_mean" in features.columns) else np.full(n, np.nan)
    basket = np.where(usable, m, own)
    return np.where(np.isfinite(basket), np.maximum(basket, 0.0), 0.0)


def _pareto_median_days(params: Mapping[str, float], p_alive: FloatArray, x: FloatArray,
                        T: FloatArray) -> FloatArray:
    """Median days to the next purchase under Pareto/NBD (NaN when ``P(ever) <= 1/2``).

    ``P(buy in (T, T+t]) = P(alive) K (I(0) - I(t))`` with ``K = (r+x) A^(r+x) B^s`` and
    ``I(c) = int_c^inf (A+u)^-(r+x+1) (B+u)^-s du`` (``A = alpha+T``, ``B = beta+T``;
    ``docs/value.md``). The median solves ``ln I(t) = ln tau`` with ``tau = I(0) (1 -
    1/(2 P(ever)))``. ``ln I`` is convex and decreasing in ``t`` (the integrand is
    log-convex), so Newton's method started left of the root climbs to it without
    overshooting. The start: with ``d = r+x+s``, ``S = min(A, B)``, ``L = max(A, B)``,
    ``(L+t)^-d / d <= I(t) <= (S+t)^-d / d``, so the root lies in ``[Q - L, Q - S]``
    with ``Q = (d tau)^(-1/d)``; Newton starts at ``max(0, Q - L)`` and is clipped to
    the bracket's right end.
    """
    from churnlens._paretonbd import _log_tail  # the one stable 2F1 form of the model

    r, alpha, s, beta = (params[k] for k in _PURCHASE_PARAMS["pareto/nbd"])
    out = np.full(len(x), np.nan)
    A, B = alpha + T, beta + T
    m, n, d = r + x + 1.0, np.full(len(x), s), r + x + s
    log_k = np.log(r + x) + (r + x) * np.log(A) + s * np.log(B)
    log_i0 = _log_tail(m, n, A, B, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ever = np.log(p_alive) + np.minimum(log_k + log_i0, 0.0)
        rows = np.flatnonzero(log_ever > math.log(0.5))
    if not rows.size:
        return out
    m, n, d, A, B, log_i0 = (v[rows] for v in (m, n, d, A, B, log_i0))
    log_tau = log_i0 + np.log1p(-0.5 * np.exp(-log_ever[rows]))
    log_q = -(np.log(d) + log_tau) / d
    low, high = np.maximum(np.exp(log_q) - np.maximum(A, B), 0.0), np.exp(log_q) - np.minimum(A, B)
    t = low
    active = np.ones(rows.size, dtype=bool)
    for _ in range(_MAX_NEWTON):
        idx = np.flatnonzero(active)
        if not idx.size:
            break
        ti = t[idx]
        log_i = _log_tail(m[idx], n[idx], A[idx], B[idx], ti)
        log_f = -m[idx] * np.log(A[idx] + ti) - n[idx] * np.log(B[idx] + ti)
        h = log_i - log_tau[idx]  # > 0 left of the root
        step = np.where(np.isfinite(h), h * np.exp(log_i - log_f), 0.0)
        new = np.minimum(ti + np.maximum(step, 0.0), high[idx])
        t[idx] = new
        active[idx] = (np.abs(new - ti) > 1e-9 * (1.0 + new)) & np.isfinite(new)
    out[rows] = t
    return out


def _bgnbd_median_days(params: Mapping[str, float], p_alive: FloatArray, x: FloatArray,
                       T: FloatArray) -> FloatArray:
    """Median days to the next purchase under BG/NBD, in closed form.

    ``P(buy in (T, T+t]) = P(alive) (1 - (A/(A+t))^(r+x))`` with ``A = alpha + T``, so
    ``t = A ((1 - 1/(2 P(alive)))^(-1/(r+x)) - 1)`` when ``P(alive) > 1/2``, else NaN.
    """
    r, alpha = params["r"], params["alpha"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        days = (alpha + T) * np.expm1(-np.log1p(-0.5 / p_alive) / (r + x))
    return np.where((p_alive > 0.5) & np.isfinite(days), days, np.nan)


def predict_value(
    model: ValueModel,
    features: pd.DataFrame,
    *,
    horizon_days: int,
    clv_months: int = 12,
    annual_discount_rate: float = 0.10,
) -> pd.DataFrame:
    """The value outputs of each customer (module docstring; ``docs/value.md``).

    Parameters
    ----------
    model
        The fitted :class:`ValueModel`.
    features
        :func:`churnlens.compute_features` output at the scoring date (``x, t_x, T``
        from ``repeat_frequency``, ``t_x_days``, ``tenure_days``; spend from
        ``monetary_mean_repeat``, and ``monetary_mean`` without a spend model).
    horizon_days
        The horizon ``H`` of ``expected_purchases``, ``expected_spend`` and
        ``expected_value``, in days, >= 1.
    clv_months
        Months of 30.4375 days the CLV sums over, >= 1.
    annual_discount_rate
        Yearly discount rate of the CLV, >= 0 (0.10: 10%); applied monthly as
        ``(1 + rate)^(1/12) - 1``.

    Returns
    -------
    pandas.DataFrame
        Index of ``features``; columns :data:`VALUE_COLUMNS` and ``expected_value``:
        probabilities, purchase occasions, days and money in the data's unit.

    Examples
    --------
    >>> model = ValueModel("pareto/nbd", {"r": 1.0, "alpha": 30.4375, "s": 2.0,
    ...                    "beta": 30.4375}, None)
    >>> f = pd.DataFrame({"repeat_frequency": [0], "t_x_days": [0.0], "tenure_days": [0.0],
    ...                   "monetary_mean": [10.0]})
    >>> predict_value(model, f, horizon_days=91).round(4).iloc[0].tolist()
    [1.0, 0.7494, nan, 7.4936, 9.0607, 29.8973]
    """
    from churnlens._validation import require_positive_int

    horizon = float(require_positive_int(horizon_days, name="horizon_days"))
    months = require_positive_int(clv_months, name="clv_months")
    if isinstance(annual_discount_rate, bool) or not isinstance(
            annual_discount_rate, int | float) or not math.isfinite(annual_discount_rate) or (
            annual_discount_rate < 0):
        raise ModelError(f"annual_discount_rate must be a number >= 0 (0.10 for 10%), got "
                         f"{annual_discount_rate!r}.")
    x, t_x, T = repeat_features_to_data(features, "the value model")
    params = model.purchase_params
    r, alpha = params["r"], params["alpha"]
    if model.purchase_model == "pareto/nbd":
        from churnlens._paretonbd import paretonbd_p_alive

        p_alive = paretonbd_p_alive(params, x, t_x, T)
        s, beta = params["s"], params["beta"]

        def expected(t: float) -> FloatArray:
            # Schmittlein et al. eq. 22, P(alive) computed once for every t
            k = s - 1.0
            log_ratio = np.log(beta + T) - np.log(beta + T + t)
            bracket = (-log_ratio if abs(k) < 1e-10 else -np.expm1(k * log_ratio) / k)
            return np.asarray(p_alive * (r + x) / (alpha + T) * (beta + T) * bracket)

        median = _pareto_median_days(params, p_alive, x, T)
    else:
        from churnlens._bgnbd import bgnbd_expected_purchases, bgnbd_p_alive

        p_alive = bgnbd_p_alive(params, x, t_x, T)

        def expected(t: float) -> FloatArray:
            return np.asarray(bgnbd_expected_purchases(params, t, x, t_x, T))

        median = _bgnbd_median_days(params, p_alive, x, T)
    spend = _spend_per_occasion(model, x, features)
    purchases = expected(horizon)
    monthly = (1.0 + float(annual_discount_rate)) ** (1.0 / 12.0) - 1.0
    clv = np.zeros(len(x))
    before = np.zeros(len(x))
    for i in range(1, months + 1):
        upto = expected(DAYS_PER_MONTH * i)
        clv += spend * (upto - before) / (1.0 + monthly) ** i
        before = upto
    return pd.DataFrame({
        "p_alive": np.asarray(p_alive, dtype=np.float64),
        "expected_purchases": purchases,
        "days_to_next_purchase": median,
        "expected_spend": purchases * spend,
        "clv": clv,
        "expected_value": (r + x) / (alpha + T) * horizon * spend,
    }, index=features.index)
