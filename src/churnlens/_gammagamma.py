"""Gamma-Gamma: the spend model of the BTYD family.

Model (Fader and Hardie 2013, "The Gamma-Gamma model of monetary value",
http://brucehardie.com/notes/025/; first in Colombo and Jiang 1999):

- the value of each of a customer's transactions is ``Gamma(shape=p, rate=nu)``,
  so a customer's mean transaction value is ``p / nu``;
- ``nu ~ Gamma(shape=q, rate=gamma)`` across customers;
- spend is independent of the purchase process (the number and timing of
  transactions): the model is fitted apart from BG/NBD or Pareto/NBD and multiplied
  with their expected purchases. The check of that assumption is the correlation
  between frequency and average spend, reported by :class:`GammaGammaModel` as
  ``assumption_check_``.

Per customer the data are ``x``, the number of transactions averaged, and ``m``,
their mean value. Fader and Hardie fit repeat customers only (``x >= 1`` repeat
transactions) and ``m`` the mean of the repeat transactions (the first purchase left
out, purchases of one day summed): churnlens' features ``repeat_frequency`` and
``monetary_mean_repeat``. The derivations are in ``docs/value.md``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from churnlens._btyd import (
    LOG_BOUND,
    ArrayLike,
    FloatArray,
    ParamsLike,
    as_params,
    check_penalizer,
    feature_arrays,
    fit_outcome,
    polish,
)
from churnlens._validation import format_bad_rows
from churnlens.exceptions import (
    DataValidationError,
    EmptyDataError,
    ModelError,
    NotFittedError,
)

__all__ = [
    "GammaGammaModel",
    "GammaGammaParams",
    "gammagamma_expected_spend",
    "gammagamma_fit",
    "gammagamma_log_likelihood",
    "spend_frequency_correlation",
]

# The bound of the log-parameters during the fit (churnlens._btyd.LOG_BOUND).
_LOG_BOUND = LOG_BOUND
# |Pearson r| between frequency and average spend below this is read as "weak", the
# reading Fader and Hardie (2013, section 4) give CDNOW's 0.11. It is a rule of thumb,
# not a test: with many customers a tiny correlation is "significant".
WEAK_CORRELATION = 0.3


class GammaGammaParams(NamedTuple):
    """The three Gamma-Gamma parameters.

    Attributes
    ----------
    p
        Shape of the gamma distribution of one customer's transaction values.
    q, gamma
        Shape and rate of the gamma distribution of ``nu`` across customers (``gamma``
        is in money units: a customer's mean spend ``p / nu`` has population mean
        ``p * gamma / (q - 1)`` when ``q > 1``).
    """

    p: float
    q: float
    gamma: float


def _as_params(params: ParamsLike) -> GammaGammaParams:
    return as_params(params, GammaGammaParams, "Gamma-Gamma")


def _as_data(
    x: ArrayLike, mean_spend: ArrayLike, *, allow_no_repeat: bool
) -> tuple[FloatArray, FloatArray]:
    """``(x, mean_spend)`` as float arrays, checked.

    ``x`` must be whole and >= 1 (>= 0 with ``allow_no_repeat``, where ``mean_spend``
    of an ``x = 0`` row is ignored and may be NaN); ``mean_spend`` finite and > 0.
    """
    try:
        xa, ma = np.broadcast_arrays(
            np.asarray(x, dtype=float), np.asarray(mean_spend, dtype=float)
        )
    except ValueError as exc:
        raise DataValidationError(
            f"x and mean_spend must have the same length (or broadcast): {exc}. "
            "Suggestion: pass one value per customer in each."
        ) from exc
    if not np.all(np.isfinite(xa)) or np.any(xa != np.floor(xa)):
        raise DataValidationError(
            "x (number of transactions averaged) must be whole numbers. Suggestion: pass "
            "the repeat frequency (occasions - 1)."
        )
    lowest = 0 if allow_no_repeat else 1
    if np.any(xa < lowest):
        raise DataValidationError(
            f"x must be >= {lowest}; found {int(np.sum(xa < lowest))} rows below. "
            "Suggestion: the Gamma-Gamma fit takes repeat customers only (x >= 1)."
        )
    used = xa > 0
    bad = used & ~(np.isfinite(ma) & (ma > 0))
    if np.any(bad):
        raise DataValidationError(
            f"mean_spend must be finite and > 0 for every customer with x >= 1; "
            f"{int(bad.sum())} rows are not. Suggestion: average the net amounts of the "
            "repeat purchase days (churnlens' monetary_mean_repeat)."
        )
    return xa, np.where(used, ma, 0.0)


def _ll_unchecked(p: GammaGammaParams, x: FloatArray, m: FloatArray) -> FloatArray:
    pp, q, g = p
    px = pp * x
    return np.asarray(
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * math.log(g)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(g + x * m),
        dtype=float,
    )


def gammagamma_log_likelihood(
    params: ParamsLike, x: ArrayLike, mean_spend: ArrayLike
) -> FloatArray:
    """Per-customer log-likelihood of the Gamma-Gamma model.

    The sum of ``x`` transaction values given ``nu`` is ``Gamma(px, nu)``, so their
    mean ``m`` is ``Gamma(px, x nu)``; mixing over ``nu ~ Gamma(q, gamma)``
    (Fader and Hardie 2013, eq. 3):

    .. math::

        f(m \\mid p, q, \\gamma, x) = \\frac{\\Gamma(px+q)}{\\Gamma(px)\\,\\Gamma(q)}
          \\frac{\\gamma^q\\, m^{px-1}\\, x^{px}}{(\\gamma + m x)^{px+q}}

    computed in logs with ``gammaln``.

    Parameters
    ----------
    params
        ``(p, q, gamma)``, all > 0.
    x
        Number of transactions averaged, whole, >= 1.
    mean_spend
        Their mean value ``m`` > 0.

    Returns
    -------
    numpy.ndarray
        The log-density of each customer's ``m`` (broadcast shape of the inputs).

    Examples
    --------
    With ``x = 1``, ``m`` has the density of ``Gamma(p, nu)`` mixed over ``nu``: for
    ``p = q = gamma = 1`` that is ``1 / (1 + m)**2``.

    >>> round(float(gammagamma_log_likelihood((1.0, 1.0, 1.0), 1, 3.0)[()]), 6)
    -2.772589
    """
    p = _as_params(params)
    return _ll_unchecked(p, *_as_data(x, mean_spend, allow_no_repeat=False))


class _FitResult(NamedTuple):
    params: GammaGammaParams
    converged: bool
    message: str


def _fit(x: FloatArray, m: FloatArray, penalizer: float) -> _FitResult:
    def objective(theta: FloatArray) -> float:
        p = GammaGammaParams(*np.exp(theta))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value = -float(np.mean(_ll_unchecked(p, x, m)))
        if penalizer:
            value += penalizer * float(np.sum(np.exp(2 * theta)))
        return value if math.isfinite(value) else 1e300

    mean_m = float(np.mean(m))
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 3
    best: optimize.OptimizeResult | None = None
    # Starts: a few (p, q), gamma set so that the population mean p gamma / (q - 1)
    # is the observed mean spend (scale-free: the same starts work in cents).
    for p0, q0 in ((1.0, 2.0), (5.0, 3.0), (0.5, 5.0)):
        start = np.log([p0, q0, mean_m * (q0 - 1.0) / p0])
        result = optimize.minimize(
            objective,
            start,
            method="L-BFGS-B",
            jac="3-point",
            bounds=bounds,
            options={"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-10},
        )
        if result.fun < 1e300 and (best is None or result.fun < best.fun):
            best = result
    if best is None:
        raise ModelError(
            "Gamma-Gamma fit failed: the likelihood is not finite at any starting point. "
            "Suggestion: check the mean spends for extreme values."
        )
    polished = polish(objective, best.x, bounds)
    theta, converged, message = fit_outcome(objective, best, polished)
    return _FitResult(GammaGammaParams(*(float(v) for v in np.exp(theta))), converged, message)


_check_penalizer = check_penalizer


def gammagamma_fit(
    x: ArrayLike, mean_spend: ArrayLike, *, penalizer: float = 0.0
) -> GammaGammaParams:
    """Maximum-likelihood estimate of the Gamma-Gamma parameters.

    Minimises the mean negative log-likelihood (plus ``penalizer * (p**2 + q**2 +
    gamma**2)``) over the log-parameters: L-BFGS-B with central-difference gradients
    from three deterministic starting points, then a Nelder-Mead polish.

    Parameters
    ----------
    x
        Number of transactions averaged per customer, whole, >= 1 (repeat customers
        only).
    mean_spend
        Each customer's mean transaction value, > 0.
    penalizer
        Strength of the L2 penalty, >= 0; 0 gives the maximum-likelihood estimate.

    Returns
    -------
    GammaGammaParams
        ``(p, q, gamma)``, ``gamma`` in the money unit of ``mean_spend``.

    Raises
    ------
    DataValidationError
        If ``x < 1``, not whole, or a mean spend is not > 0.
    EmptyDataError
        If there is no customer.
    """
    pen = _check_penalizer(penalizer)
    xa, ma = (v.ravel() for v in _as_data(x, mean_spend, allow_no_repeat=False))
    if xa.size == 0:
        raise EmptyDataError(
            "Gamma-Gamma needs at least one repeat customer. Suggestion: check the as-of "
            "date; customers with one purchase only say nothing about spend variation."
        )
    return _fit(xa, ma, pen).params


def gammagamma_expected_spend(
    params: ParamsLike, x: ArrayLike, mean_spend: ArrayLike
) -> FloatArray:
    """Expected mean transaction value of a customer, given their ``x`` and ``m``.

    The posterior of ``nu`` is ``Gamma(px+q, gamma+mx)``, and ``E[p/nu] =
    p (gamma+mx) / (px+q-1)`` (Fader and Hardie 2013, eq. 5):

    .. math::

        E[M \\mid p, q, \\gamma, m, x] = \\frac{(\\gamma + m x)\\,p}{px + q - 1}
          = \\frac{q-1}{px+q-1}\\,\\frac{p\\gamma}{q-1} + \\frac{px}{px+q-1}\\,m

    a weighted mean of the population mean and the customer's own mean. For ``x = 0``
    (no repeat purchase) it is the population mean ``p gamma / (q-1)`` and ``m`` is
    ignored (it may be NaN).

    Parameters
    ----------
    params
        ``(p, q, gamma)``.
    x
        Number of transactions averaged, whole, >= 0.
    mean_spend
        Their mean value (> 0 where ``x >= 1``).

    Returns
    -------
    numpy.ndarray
        Expected mean transaction values.

    Raises
    ------
    ModelError
        If ``px + q <= 1`` for some customer: the expectation is infinite (for ``x = 0``
        whenever ``q <= 1``).

    Examples
    --------
    >>> params = (6.25, 3.74, 15.44)
    >>> gammagamma_expected_spend(params, [0, 2], [float("nan"), 22.35]).round(2)
    array([35.22, 24.66])
    """
    pp, q, g = _as_params(params)
    xa, ma = _as_data(x, mean_spend, allow_no_repeat=True)
    denominator = pp * xa + q - 1.0
    if np.any(denominator <= 0):
        raise ModelError(
            f"the expected spend is infinite for {int(np.sum(denominator <= 0))} customers "
            f"(p x + q <= 1 with q = {q:.4g}): the model has no finite mean spend. "
            "Suggestion: refit on more repeat customers, or do not use this spend model."
        )
    return np.asarray((g + ma * xa) * pp / denominator, dtype=float)


def spend_frequency_correlation(x: ArrayLike, mean_spend: ArrayLike) -> dict[str, Any]:
    """The Gamma-Gamma assumption check: Pearson correlation of frequency and spend.

    The model assumes average spend independent of the number of transactions; Fader
    and Hardie (2013) check it by the correlation between ``x`` and ``m`` across repeat
    customers (0.11 on CDNOW).

    Parameters
    ----------
    x
        Number of transactions averaged (repeat customers only, >= 1).
    mean_spend
        Their mean values.

    Returns
    -------
    dict
        ``pearson_r`` (``None`` with fewer than 3 customers or no variation),
        ``p_value``, ``customers``, ``weak`` (``|r| < WEAK_CORRELATION``, or ``None``)
        and ``message``, a sentence for reports.
    """
    xa, ma = (v.ravel() for v in _as_data(x, mean_spend, allow_no_repeat=False))
    n = int(xa.size)
    if n < 3 or np.ptp(xa) == 0 or np.ptp(ma) == 0:
        return {
            "pearson_r": None,
            "p_value": None,
            "customers": n,
            "weak": None,
            "message": f"not checked: {n} repeat customers, too few or without variation",
        }
    r, p_value = stats.pearsonr(xa, ma)
    r, p_value = float(r), float(p_value)
    weak = abs(r) < WEAK_CORRELATION
    verdict = (
        "weak: the independence assumption holds well enough"
        if weak
        else "not weak: spend depends on frequency, the independence assumption is doubtful"
    )
    return {
        "pearson_r": r,
        "p_value": p_value,
        "customers": n,
        "weak": weak,
        "message": f"correlation of frequency and average spend r = {r:.3f} ({verdict})",
    }


# --------------------------------------------------------------------------- estimator

_FEATURES = ("repeat_frequency", "monetary_mean_repeat")


def _features_to_data(features: pd.DataFrame) -> tuple[FloatArray, FloatArray]:
    """``(x, m)`` from a churnlens features frame; ``m`` may be NaN where ``x = 0``."""
    x, m = feature_arrays(
        features, _FEATURES, "Gamma-Gamma", numeric_hint="pass counts and amounts, not text."
    )
    bad_x = ~np.isfinite(x) | (x < 0) | (x != np.floor(x))
    if bad_x.any():
        raise DataValidationError(
            "column 'repeat_frequency' must hold whole numbers >= 0: "
            f"{format_bad_rows(features['repeat_frequency'][bad_x], file_rows=False)}. "
            "Suggestion: it is the number of occasions minus 1."
        )
    bad_m = (x > 0) & ~(np.isfinite(m) & (m > 0))
    if bad_m.any():
        raise DataValidationError(
            "column 'monetary_mean_repeat' must be > 0 for every repeat customer: "
            f"{format_bad_rows(features['monetary_mean_repeat'][bad_m], file_rows=False)}. "
            "Suggestion: it is the mean net amount of the repeat purchase days."
        )
    return x, m


class GammaGammaModel:
    """Gamma-Gamma spend model on churnlens features, scikit-learn style.

    Fits :func:`gammagamma_fit` on the repeat customers of a features frame
    (``repeat_frequency >= 1``, their ``monetary_mean_repeat``) and predicts each
    customer's expected mean transaction value (:func:`gammagamma_expected_spend`;
    the population mean for customers without a repeat purchase).

    Parameters
    ----------
    penalizer
        L2 penalty of the fit, >= 0; 0 is plain maximum likelihood.

    Attributes
    ----------
    params_ : dict
        ``{"p", "q", "gamma"}``, ``gamma`` in the money unit of the data.
    log_likelihood_ : float
        Log-likelihood of the repeat customers' mean spends at ``params_``.
    converged_ : bool
        Whether the optimiser converged (``fit_message_`` says how it stopped).
    boundary_ : str or None
        ``"no finite mean spend (q <= 1)"`` when the population mean is infinite, a
        parameter at the edge of its range, or ``None``.
    assumption_check_ : dict
        :func:`spend_frequency_correlation` on the training repeat customers.
    population_mean_spend_ : float or None
        ``p gamma / (q - 1)``; ``None`` when ``q <= 1``.
    n_customers_ : int
        Repeat customers the model was fitted on.
    feature_names_ : list of str
        The feature columns the model reads.

    Examples
    --------
    >>> import pandas as pd
    >>> features = pd.DataFrame({"repeat_frequency": [0, 1, 3, 2, 5, 1, 2],
    ...                          "monetary_mean_repeat": [None, 20.0, 35.0, 18.0,
    ...                                                   26.0, 60.0, 15.0]})
    >>> model = GammaGammaModel().fit(features)
    >>> model.expected_spend(features).shape
    (7,)
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def fit(self, features: pd.DataFrame, y: Any = None) -> GammaGammaModel:
        """Fit the Gamma-Gamma parameters on the repeat customers of ``features``.

        Parameters
        ----------
        features
            A churnlens features frame with ``repeat_frequency`` and
            ``monetary_mean_repeat`` (other columns are ignored).
        y
            Ignored; accepted for scikit-learn compatibility.

        Returns
        -------
        GammaGammaModel
            ``self``.

        Raises
        ------
        EmptyDataError
            If no customer has a repeat purchase.
        """
        penalizer = _check_penalizer(self.penalizer)
        x, m = _features_to_data(features)
        repeat = x > 0
        if not repeat.any():
            raise EmptyDataError(
                f"Gamma-Gamma needs repeat customers; none of the {x.size} customers has "
                "a repeat purchase. Suggestion: use a later as-of date or a longer history."
            )
        x, m = x[repeat], m[repeat]
        result = _fit(x, m, penalizer)
        p = result.params
        self.params_ = p._asdict()
        self.log_likelihood_ = float(_ll_unchecked(p, x, m).sum())
        self.converged_ = result.converged
        self.fit_message_ = result.message
        if p.q <= 1:
            self.boundary_: str | None = "no finite mean spend (q <= 1)"
        elif min(p) <= 1e-4 or max(p) >= 1e5:
            self.boundary_ = "parameters at the edge of their range (p, q or gamma)"
        else:
            self.boundary_ = None
        self.population_mean_spend_ = p.p * p.gamma / (p.q - 1.0) if p.q > 1 else None
        self.assumption_check_ = spend_frequency_correlation(x, m)
        self.n_customers_ = int(x.size)
        self.feature_names_ = list(_FEATURES)
        return self

    def expected_spend(self, features: pd.DataFrame) -> FloatArray:
        """Expected mean transaction value of each customer (see
        :func:`gammagamma_expected_spend`)."""
        if not hasattr(self, "params_"):
            raise NotFittedError(
                "this GammaGammaModel is not fitted yet. Suggestion: call fit(features) first."
            )
        x, m = _features_to_data(features)
        return gammagamma_expected_spend(GammaGammaParams(**self.params_), x, m)

    def __repr__(self) -> str:
        return f"GammaGammaModel(penalizer={self.penalizer!r})"
