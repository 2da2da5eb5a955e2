"""BG/NBD: the beta-geometric / negative binomial distribution model of repeat buying.

A baseline churn model, implemented here because the ``lifetimes`` package is
archived and breaks on pandas 3 (churnlens never imports it).

Model (Fader, Hardie and Lee 2005, "Counting your customers the easy way: an
alternative to the Pareto/NBD model", *Marketing Science* 24(2), 275-284):

- while alive, a customer buys as a Poisson process with rate ``lambda``;
  ``lambda ~ Gamma(shape=r, rate=alpha)`` across customers;
- right after each purchase the customer drops out for good with probability ``p``;
  ``p ~ Beta(a, b)`` across customers.

Per customer the data are ``x`` (repeat purchases: occasions after the first one),
``t_x`` (time of the last purchase since the first one; 0 when ``x = 0``) and ``T``
(time from the first purchase to the end of the observation period).

Time unit: any, as long as ``t_x``, ``T``, horizons and ``alpha`` share it. ``r``,
``a`` and ``b`` are unit-free while ``alpha`` is a time (``alpha_days = 7 *
alpha_weeks``), and the log-likelihood shifts by ``sum(x) * ln(7)`` between weeks and
days (the Jacobian of the change of unit of the purchase times). churnlens works in
days throughout.

The pure functions (``bgnbd_*``) take ``params`` as ``(r, alpha, a, b)`` (a
:class:`BGNBDParams`, any 4-sequence or a mapping with those keys) and broadcast
their array arguments like numpy. :class:`BGNBDModel` wraps them as a scikit-learn
style estimator on churnlens' feature frame.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, special

from churnlens._btyd import (
    LOG_BOUND,
    REPEAT_FEATURES,
    aggregate,
    as_params,
    as_repeat_data,
    check_penalizer,
    finite_nonnegative,
    fit_weights,
    repeat_features_to_data,
    single_threaded_blas,
)
from churnlens._validation import require_positive_int
from churnlens.exceptions import (
    ChurnlensError,
    EmptyDataError,
    ModelError,
    NotFittedError,
)

__all__ = [
    "BGNBDModel",
    "BGNBDParams",
    "bgnbd_expected_purchases",
    "bgnbd_fit",
    "bgnbd_log_likelihood",
    "bgnbd_p_alive",
    "bgnbd_prob_purchase_in",
]

ArrayLike = npt.ArrayLike
ParamsLike = Sequence[float] | Mapping[str, float] | npt.NDArray[np.float64]

# The bound of the log-parameters during the fit (churnlens._btyd.LOG_BOUND).
_LOG_BOUND = LOG_BOUND


class BGNBDParams(NamedTuple):
    """The four BG/NBD parameters.

    Attributes
    ----------
    r, alpha
        Shape and rate of the gamma distribution of purchase rates across customers
        (``alpha`` is in the time unit of the data: 7x larger in days than in weeks).
    a, b
        Shape parameters of the beta distribution of the probability of dropping out
        after each purchase.
    """

    r: float
    alpha: float
    a: float
    b: float


# A parameter below or above these is a fit at (or running off to) the edge of the
# parameter space: the likelihood is flat there and the fit is not identified.
_DEGENERATE_LOW, _DEGENERATE_HIGH = 1e-4, 1e5


def boundary_issue(params: ParamsLike) -> str | None:
    """Why a BG/NBD fit is on the boundary of its parameter space, or ``None``.

    ``a`` near 0 (or ``b`` huge while ``a`` is not) means no dropout at all: the
    model's no-dropout limit, where every customer is alive forever. ``a`` and ``b``
    both huge mean the same dropout probability for everyone (the heterogeneity is not
    identified). A tiny or huge ``r`` or ``alpha`` means the purchase rates are not
    identified. Typical of short histories, where few customers could drop out yet.

    Examples
    --------
    >>> boundary_issue({"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4}) is None
    True
    >>> boundary_issue({"r": 0.9, "alpha": 24.0, "a": 1e-9, "b": 7e4})
    'no dropout (a -> 0): the no-dropout limit of BG/NBD'
    """
    p = _as_params(params)
    if p.a <= _DEGENERATE_LOW or (p.b >= _DEGENERATE_HIGH and p.a < _DEGENERATE_HIGH):
        return "no dropout (a -> 0): the no-dropout limit of BG/NBD"
    if p.a >= _DEGENERATE_HIGH and p.b >= _DEGENERATE_HIGH:
        return "one dropout probability for everyone (a, b -> infinity)"
    if min(p.r, p.alpha) <= _DEGENERATE_LOW or max(p.r, p.alpha) >= _DEGENERATE_HIGH:
        return "purchase rates not identified (r or alpha at the edge)"
    return None


def _as_params(params: ParamsLike) -> BGNBDParams:
    return as_params(params, BGNBDParams, "BG/NBD")


def _finite_nonnegative(values: ArrayLike, what: str) -> npt.NDArray[np.float64]:
    """``values`` as a float array, refused unless every value is finite and >= 0."""
    return finite_nonnegative(values, what)


def _as_data(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Broadcast ``(x, t_x, T)`` to float arrays and check the BG/NBD data contract."""
    return as_repeat_data(x, t_x, T, "BG/NBD")


def _log_terms(
    p: BGNBDParams,
    x: npt.NDArray[np.float64],
    t_x: npt.NDArray[np.float64],
    T: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Shared pieces of the likelihood, in logs.

    Returns ``(common, log_d, has_repeat)``: ``common = ln A1 + ln A2 + ln A3`` (the
    likelihood of "alive at T"), ``log_d = ln(A4 / A3)`` (``-inf`` where ``x = 0``)
    and ``x > 0`` as 0/1 floats, with ``A1 = G(r+x) alpha^r / G(r)``, ``A2 =
    B(a, b+x) / B(a, b)``, ``A3 = (alpha+T)^-(r+x)`` and ``A4 = a / (b+x-1)
    (alpha+t_x)^-(r+x)`` as in Fader, Hardie and Lee's note on the likelihood.
    """
    r, alpha, a, b = p
    has_repeat = x > 0
    # ln A1 + ln A2 + ln A3 = ln G(r+x) - ln G(r) + r ln alpha + ln B(a, b+x) - ln B(a, b)
    #                         - (r+x) ln(alpha+T)
    common = (
        special.gammaln(r + x)
        - special.gammaln(r)
        + r * np.log(alpha)
        # ln B(a, b+x) - ln B(a, b), by gammaln (betaln is several times slower)
        + special.gammaln(a + b)
        - special.gammaln(b)
        + special.gammaln(b + x)
        - special.gammaln(a + b + x)
        - (r + x) * np.log(alpha + T)
    )
    # ln(A4/A3) = ln a - ln(b+x-1) + (r+x) ln((alpha+T)/(alpha+t_x)), defined for x > 0
    # only (for x = 0 and b < 1, b+x-1 would be negative): x_safe avoids that branch.
    x_safe = np.where(has_repeat, x, 1.0)
    log_d = np.where(
        has_repeat,
        np.log(a)
        - np.log(b + x_safe - 1.0)
        + (r + x_safe) * (np.log(alpha + T) - np.log(alpha + t_x)),
        -np.inf,
    )
    return common, log_d, has_repeat.astype(float)


def _ll_unchecked(
    p: BGNBDParams,
    x: npt.NDArray[np.float64],
    t_x: npt.NDArray[np.float64],
    T: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    common, log_d, _ = _log_terms(p, x, t_x, T)
    # ln(A3 + A4) = ln A3 + ln(1 + A4/A3); logaddexp(0, -inf) = 0 handles x = 0.
    return common + np.logaddexp(0.0, log_d)


def bgnbd_log_likelihood(
    params: ParamsLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> npt.NDArray[np.float64]:
    """Per-customer log-likelihood of the BG/NBD model.

    Fader, Hardie and Lee (2005), eq. 6:

    .. math::

        L(r, \\alpha, a, b \\mid x, t_x, T) =
          \\frac{B(a, b+x)}{B(a, b)}
          \\frac{\\Gamma(r+x)\\,\\alpha^r}{\\Gamma(r)\\,(\\alpha+T)^{r+x}}
        + \\delta_{x>0}\\,\\frac{B(a+1, b+x-1)}{B(a, b)}
          \\frac{\\Gamma(r+x)\\,\\alpha^r}{\\Gamma(r)\\,(\\alpha+t_x)^{r+x}}

    computed in logs with ``gammaln`` and a log-sum-exp of the two terms
    (their ratio is ``a / (b+x-1) * ((alpha+T)/(alpha+t_x))**(r+x)``), so that large
    ``x`` or ``T`` neither overflow nor underflow.

    Parameters
    ----------
    params
        ``(r, alpha, a, b)``, all > 0; ``alpha`` in the time unit of ``t_x`` and ``T``.
    x
        Repeat purchases (occasions after the first), whole numbers >= 0.
    t_x
        Time of the last purchase since the first (0 when ``x = 0``).
    T
        Time from the first purchase to the end of observation, ``T >= t_x``.

    Returns
    -------
    numpy.ndarray
        The log-likelihood of each customer (broadcast shape of the inputs). Sum it for
        the log-likelihood of a sample.

    Examples
    --------
    A customer with no repeat purchase contributes ``r * ln(alpha / (alpha + T))``:

    >>> ll = bgnbd_log_likelihood((0.243, 4.414, 0.793, 2.426), 0, 0.0, 38.86)
    >>> round(float(ll[()]), 4)
    -0.5547
    """
    p = _as_params(params)
    return _ll_unchecked(p, *_as_data(x, t_x, T))


def _ll_and_grad_log_params(
    p: BGNBDParams,
    x: npt.NDArray[np.float64],
    t_x: npt.NDArray[np.float64],
    T: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-customer log-likelihood and its gradient with respect to ``log(params)``.

    With ``s = A4 / (A3 + A4) = 1 - P(alive)`` (0 where ``x = 0``) and ``psi`` the
    digamma function, differentiating eq. 6 of FHL (2005) in logs gives

    - d/dr     = psi(r+x) - psi(r) + ln(alpha) - ln(alpha+T)
                 + s (ln(alpha+T) - ln(alpha+t_x))
    - d/dalpha = r/alpha - (r+x)/(alpha+T) + s (r+x) (1/(alpha+T) - 1/(alpha+t_x))
    - d/da     = psi(a+b) - psi(a+b+x) + s/a
    - d/db     = psi(a+b) - psi(b) + psi(b+x) - psi(a+b+x) - s/(b+x-1)

    and the chain rule multiplies each by its parameter. Returns the log-likelihood,
    shape ``(n,)``, and the gradient, shape ``(4, n)``.
    """
    r, alpha, a, b = p
    common, log_d, has_repeat = _log_terms(p, x, t_x, T)
    ll = common + np.logaddexp(0.0, log_d)
    s = special.expit(log_d)  # expit(-inf) = 0 for x = 0
    x_safe = np.where(has_repeat > 0, x, 1.0)
    log_alpha_T = np.log(alpha + T)
    psi_ab = special.digamma(a + b)
    psi_abx = special.digamma(a + b + x)
    d_r = (
        special.digamma(r + x)
        - special.digamma(r)
        + math.log(alpha)
        - log_alpha_T
        + s * (log_alpha_T - np.log(alpha + t_x))
    )
    d_alpha = (
        r / alpha - (r + x) / (alpha + T) + s * (r + x) * (1.0 / (alpha + T) - 1.0 / (alpha + t_x))
    )
    d_a = psi_ab - psi_abx + s / a
    d_b = psi_ab - special.digamma(b) + special.digamma(b + x) - psi_abx - s / (b + x_safe - 1.0)
    return ll, np.stack([r * d_r, alpha * d_alpha, a * d_a, b * d_b])


# Model-free fit helpers, kept under their old names (churnlens._btyd owns them).
_aggregate = aggregate
_single_threaded_blas = single_threaded_blas


def _starting_points(
    x: npt.NDArray[np.float64], T: npt.NDArray[np.float64], w: npt.NDArray[np.float64]
) -> list[npt.NDArray[np.float64]]:
    """Deterministic starting points, in log-parameters, scaled to the time unit.

    The mean purchase rate ``r / alpha`` is matched to the observed repeat rate
    ``sum(x) / sum(T)`` so that the same starts work in days and in weeks; ``r``, ``a``
    and ``b`` are unit-free and start at a few typical values.
    """
    rate = float(np.sum(w * x)) / max(float(np.sum(w * T)), 1e-12)
    rate = min(max(rate, 1e-6), 1e6)
    starts = []
    for r0, a0, b0 in ((1.0, 1.0, 1.0), (0.25, 0.75, 2.5), (3.0, 0.5, 5.0)):
        starts.append(np.log([r0, r0 / rate, a0, b0]))
    return starts


def bgnbd_fit(
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    penalizer: float = 0.0,
) -> BGNBDParams:
    """Maximum-likelihood estimate of the BG/NBD parameters.

    Maximises ``sum(weights * bgnbd_log_likelihood(params, x, t_x, T))`` over the
    log-parameters (which keeps every parameter positive) with L-BFGS-B and the
    analytic gradient, from three deterministic starting points scaled to the time
    unit of the data; the best optimum wins. Identical ``(x, t_x, T)`` rows are
    collapsed first (exact, and faster).

    The objective actually minimised is the weighted mean negative log-likelihood
    plus ``penalizer * (r**2 + alpha**2 + a**2 + b**2)``, the L2 penalty of
    ``lifetimes``' ``BetaGeoFitter`` (it depends on the time unit through ``alpha``).

    Parameters
    ----------
    x, t_x, T
        Repeat purchases, time of last purchase and length of observation, all from
        each customer's first purchase, in one time unit (see
        :func:`bgnbd_log_likelihood`).
    weights
        Non-negative weight of each row (for example the number of customers it
        stands for); default 1.
    penalizer
        Strength of the L2 penalty, >= 0; 0 gives the maximum-likelihood estimate.

    Returns
    -------
    BGNBDParams
        ``(r, alpha, a, b)``, ``alpha`` in the time unit of the data.

    Raises
    ------
    DataValidationError
        If the data break the BG/NBD contract (negative values, ``t_x > T``...).
    EmptyDataError
        If there is no row (or all weights are 0).
    ModelError
        If no starting point reaches a finite likelihood.

    References
    ----------
    Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005). "Counting your customers"
    the easy way: an alternative to the Pareto/NBD model. *Marketing Science*, 24(2),
    275-284. The CDNOW fit of its section 4 is reproduced by churnlens' tests.
    """
    xa, txa, Ta = _as_data(x, t_x, T)
    xa, txa, Ta = xa.ravel(), txa.ravel(), Ta.ravel()
    w = fit_weights(xa, weights)
    if not math.isfinite(penalizer) or penalizer < 0:
        raise ChurnlensError(f"penalizer must be a number >= 0, got {penalizer!r}.")
    if xa.size == 0 or float(w.sum()) <= 0:
        raise EmptyDataError("BG/NBD needs at least one customer (with a weight > 0).")

    xa, txa, Ta, w = _aggregate(xa, txa, Ta, w)
    total = float(w.sum())

    def objective(theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        p = BGNBDParams(*np.exp(theta))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ll, ll_grad = _ll_and_grad_log_params(p, xa, txa, Ta)
            # Elementwise sums rather than BLAS dot products: multithreaded BLAS on
            # these small vectors is slower, and much slower on a busy machine.
            value = -float(np.sum(w * ll)) / total
            grad = -np.sum(ll_grad * w, axis=1) / total
        if penalizer:
            values = np.asarray(p)
            value += penalizer * float(np.sum(values**2))
            grad = grad + 2.0 * penalizer * values**2  # d(p^2)/d(log p) = 2 p^2
        if not (math.isfinite(value) and np.all(np.isfinite(grad))):
            return math.inf, np.zeros(4)
        return value, grad

    best: optimize.OptimizeResult | None = None
    with _single_threaded_blas():
        for start in _starting_points(xa, Ta, w):
            result = optimize.minimize(
                objective,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
                options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
            )
            if math.isfinite(result.fun) and (best is None or result.fun < best.fun):
                best = result
    if best is None:
        raise ModelError(
            "BG/NBD fit failed: the likelihood is not finite at any starting point. "
            "Suggestion: check the data for extreme values (x, t_x, T)."
        )
    # L-BFGS-B reports a line-search failure when the likelihood is flat, typically
    # when the optimum is at infinity (tiny data sets where a, b -> infinity: a point
    # mass of dropout probabilities). That point is still the maximum found; warn only
    # when the projected gradient does not vanish, i.e. the fit really stopped early.
    theta, grad = best.x, np.asarray(best.jac)
    pushing_out = ((theta <= -_LOG_BOUND) & (grad > 0)) | ((theta >= _LOG_BOUND) & (grad < 0))
    projected = np.where(pushing_out, 0.0, grad)
    if not best.success and float(np.max(np.abs(projected))) > 1e-5:
        warnings.warn(
            f"BG/NBD fit did not fully converge ({best.message}); using the best point found.",
            RuntimeWarning,
            stacklevel=2,
        )
    return BGNBDParams(*(float(v) for v in np.exp(best.x)))


def _p_alive_unchecked(
    p: BGNBDParams,
    x: npt.NDArray[np.float64],
    t_x: npt.NDArray[np.float64],
    T: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    _, log_d, _ = _log_terms(p, x, t_x, T)
    # 1 / (1 + d) = expit(-ln d); exactly 1 for x = 0 (ln d = -inf).
    return special.expit(-log_d)


def bgnbd_p_alive(
    params: ParamsLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> npt.NDArray[np.float64]:
    """Probability that a customer is still alive at ``T``.

    Fader, Hardie and Lee (2005), eq. 11 (with the ``x = 0`` case of their note):

    .. math::

        P(\\text{alive} \\mid x, t_x, T) = \\left(1 + \\delta_{x>0}\\,\\frac{a}{b+x-1}
            \\left(\\frac{\\alpha+T}{\\alpha+t_x}\\right)^{r+x}\\right)^{-1}

    It is 1 for ``x = 0``: in BG/NBD a customer can only drop out right after a
    purchase.

    Parameters
    ----------
    params
        ``(r, alpha, a, b)``.
    x, t_x, T
        Repeat purchases, time of last purchase and length of observation (see
        :func:`bgnbd_log_likelihood`).

    Returns
    -------
    numpy.ndarray
        Probabilities in ``(0, 1]``.

    Examples
    --------
    >>> params = (0.243, 4.414, 0.793, 2.426)
    >>> bgnbd_p_alive(params, [0, 2, 2], [0.0, 30.43, 5.0], [38.86, 38.86, 38.86]).round(3)
    array([1.   , 0.727, 0.124])
    """
    p = _as_params(params)
    return _p_alive_unchecked(p, *_as_data(x, t_x, T))


def bgnbd_expected_purchases(
    params: ParamsLike, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> npt.NDArray[np.float64]:
    """Expected number of purchases in ``(T, T+t]`` given a customer's history.

    Fader, Hardie and Lee (2005), eq. 10:

    .. math::

        E[Y(t) \\mid x, t_x, T] =
          \\frac{\\frac{a+b+x-1}{a-1}\\left[1 - \\left(\\frac{\\alpha+T}{\\alpha+T+t}
          \\right)^{r+x} {}_2F_1\\left(r+x, b+x; a+b+x-1; \\frac{t}{\\alpha+T+t}\\right)
          \\right]}{1 + \\delta_{x>0}\\,\\frac{a}{b+x-1}
          \\left(\\frac{\\alpha+T}{\\alpha+t_x}\\right)^{r+x}}

    with ``2F1`` the Gaussian hypergeometric function (``scipy.special.hyp2f1``). The
    formula has a removable singularity at ``a = 1``; fitted values of ``a`` are never
    exactly 1.

    Parameters
    ----------
    params
        ``(r, alpha, a, b)``.
    t
        Length of the prediction period, >= 0, in the time unit of the data.
    x, t_x, T
        Repeat purchases, time of last purchase and length of observation (see
        :func:`bgnbd_log_likelihood`).

    Returns
    -------
    numpy.ndarray
        Expected purchases (broadcast shape of the inputs).

    Examples
    --------
    Customer 1 of the CDNOW sample, next 39 weeks (1.226 in Fader, Hardie and Lee's
    Excel note on the model):

    >>> params = (0.243, 4.414, 0.793, 2.426)
    >>> round(float(bgnbd_expected_purchases(params, 39, 2, 30.43, 38.86)[()]), 3)
    1.226
    """
    p = _as_params(params)
    r, alpha, a, b = p
    xa, txa, Ta = _as_data(x, t_x, T)
    ta = _finite_nonnegative(t, "t (prediction period)")
    xa, txa, Ta, ta = np.broadcast_arrays(xa, txa, Ta, ta)
    rx = r + xa
    log_ratio = rx * (np.log(alpha + Ta) - np.log(alpha + Ta + ta))
    hyp = special.hyp2f1(rx, b + xa, a + b + xa - 1.0, ta / (alpha + Ta + ta))
    numerator = (a + b + xa - 1.0) / (a - 1.0) * (1.0 - np.exp(log_ratio) * hyp)
    return numerator * _p_alive_unchecked(p, xa, txa, Ta)


def bgnbd_prob_purchase_in(
    params: ParamsLike, horizon: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> npt.NDArray[np.float64]:
    """Probability of at least one purchase in ``(T, T+horizon]``.

    A customer alive at ``T`` cannot drop out before their next purchase (BG/NBD
    dropout happens right after a purchase), and given alive their rate has the
    posterior ``Gamma(r+x, alpha+T)``; so

    .. math::

        P(Y(H) > 0 \\mid x, t_x, T) = P(\\text{alive} \\mid x, t_x, T)
          \\left[1 - \\left(\\frac{\\alpha+T}{\\alpha+T+H}\\right)^{r+x}\\right]

    (the bracket is one minus the gamma mixture of ``exp(-lambda H)``). churnlens'
    churn risk over a horizon ``H`` is one minus this.

    Parameters
    ----------
    params
        ``(r, alpha, a, b)``.
    horizon
        ``H`` >= 0, in the time unit of the data.
    x, t_x, T
        Repeat purchases, time of last purchase and length of observation (see
        :func:`bgnbd_log_likelihood`).

    Returns
    -------
    numpy.ndarray
        Probabilities in ``[0, 1]``.

    Examples
    --------
    >>> params = (0.243, 4.414, 0.793, 2.426)
    >>> round(float(bgnbd_prob_purchase_in(params, 13, 0, 0.0, 38.86)[()]), 3)
    0.062
    """
    p = _as_params(params)
    r, alpha, _, _ = p
    xa, txa, Ta = _as_data(x, t_x, T)
    H = _finite_nonnegative(horizon, "horizon")
    # 1 - exp(y) with y = (r+x) ln((alpha+T)/(alpha+T+H)) <= 0, via expm1 for small H.
    y = (r + xa) * (np.log(alpha + Ta) - np.log(alpha + Ta + H))
    return _p_alive_unchecked(p, xa, txa, Ta) * -np.expm1(y)


# --------------------------------------------------------------------------- estimator

_FEATURES = REPEAT_FEATURES


def _features_to_data(
    features: pd.DataFrame,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Read and check ``(x, t_x, T)`` in days from a churnlens features frame.

    The rules (t_x <= T, whole repeat counts) are those of every repeat-purchase model:
    :func:`churnlens._btyd.repeat_features_to_data`.
    """
    return repeat_features_to_data(features, "BG/NBD")


class BGNBDModel:
    """BG/NBD churn baseline on churnlens features, scikit-learn style.

    Fits the BG/NBD model (see :func:`bgnbd_fit`) in days on the columns
    ``repeat_frequency`` (x = occasions - 1), ``t_x_days`` (last - first occasion)
    and ``tenure_days`` (T = cutoff - first occasion), and scores the churn risk over
    ``horizon_days``: ``1 - P(at least one purchase in (T, T + horizon_days])``.

    Parameters
    ----------
    horizon_days
        Churn horizon ``H`` in days, >= 1.
    penalizer
        L2 penalty of the fit, >= 0 (see :func:`bgnbd_fit`); 0 is plain maximum
        likelihood.

    Attributes
    ----------
    params_ : dict
        ``{"r", "alpha", "a", "b"}`` with ``alpha`` in days.
    log_likelihood_ : float
        Log-likelihood of the training data at ``params_`` (times in days).
    n_customers_ : int
        Number of training rows.
    horizon_days_ : int
        The validated horizon.
    feature_names_ : list of str
        The feature columns the model reads.
    classes_ : numpy.ndarray
        ``[0, 1]``: column 1 of :meth:`predict_proba` is ``churned = 1``.

    Examples
    --------
    >>> import pandas as pd
    >>> features = pd.DataFrame({"repeat_frequency": [0, 1, 3, 0, 2, 5],
    ...                          "t_x_days": [0, 40, 200, 0, 30, 300],
    ...                          "tenure_days": [100, 120, 250, 300, 200, 310]})
    >>> model = BGNBDModel(horizon_days=91).fit(features)
    >>> model.predict_churn_risk(features).shape
    (6,)
    """

    def __init__(self, horizon_days: int = 91, penalizer: float = 0.0) -> None:
        self.horizon_days = horizon_days
        self.penalizer = penalizer

    def fit(self, features: pd.DataFrame, y: Any = None) -> BGNBDModel:
        """Fit the BG/NBD parameters by maximum likelihood.

        Parameters
        ----------
        features
            A churnlens features frame with ``repeat_frequency``, ``t_x_days`` and
            ``tenure_days`` (other columns are ignored).
        y
            Ignored: BG/NBD learns from the purchase histories alone. Accepted for
            scikit-learn compatibility.

        Returns
        -------
        BGNBDModel
            ``self``.
        """
        horizon = require_positive_int(self.horizon_days, name="horizon_days")
        penalizer = check_penalizer(self.penalizer)
        x, t_x, T = _features_to_data(features)
        if x.size == 0:
            raise EmptyDataError("BG/NBD needs at least one customer; features has no rows.")
        params = bgnbd_fit(x, t_x, T, penalizer=float(penalizer))
        self.params_ = params._asdict()
        self.log_likelihood_ = float(_ll_unchecked(params, x, t_x, T).sum())
        self.boundary_ = boundary_issue(params)
        self.n_customers_ = int(x.size)
        self.horizon_days_ = horizon
        self.feature_names_ = list(_FEATURES)
        self.classes_ = np.array([0, 1])
        return self

    def _fitted_params(self) -> BGNBDParams:
        if not hasattr(self, "params_"):
            raise NotFittedError(
                "this BGNBDModel is not fitted yet. Suggestion: call fit(features) first."
            )
        return BGNBDParams(**self.params_)

    def p_alive(self, features: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Probability that each customer is still alive at the cutoff (see
        :func:`bgnbd_p_alive`)."""
        params = self._fitted_params()
        return _p_alive_unchecked(params, *_features_to_data(features))

    def predict_churn_risk(self, features: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Churn risk: probability of no purchase in ``(cutoff, cutoff + horizon_days_]``.

        ``1 - bgnbd_prob_purchase_in(params_, horizon_days_, x, t_x, T)``.
        """
        params = self._fitted_params()
        x, t_x, T = _features_to_data(features)
        return 1.0 - bgnbd_prob_purchase_in(params, self.horizon_days_, x, t_x, T)

    def _alive_and_churn_risk(
        self, features: pd.DataFrame
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """:meth:`p_alive` and :meth:`predict_churn_risk`, reading the features once."""
        params = self._fitted_params()
        x, t_x, T = _features_to_data(features)
        alive = _p_alive_unchecked(params, x, t_x, T)
        return alive, 1.0 - bgnbd_prob_purchase_in(params, self.horizon_days_, x, t_x, T)

    def predict_proba(self, features: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Probabilities of ``churned = 0`` (column 0) and ``churned = 1`` (column 1).

        Returns
        -------
        numpy.ndarray
            Shape ``(n, 2)``; column 1 is :meth:`predict_churn_risk`.
        """
        risk = self.predict_churn_risk(features)
        return np.column_stack([1.0 - risk, risk])

    def expected_purchases(
        self, features: pd.DataFrame, horizon_days: int | None = None
    ) -> npt.NDArray[np.float64]:
        """Expected purchases of each customer in the next ``horizon_days`` (default:
        the model's horizon), see :func:`bgnbd_expected_purchases`."""
        params = self._fitted_params()
        horizon = (
            self.horizon_days_
            if horizon_days is None
            else require_positive_int(horizon_days, name="horizon_days", minimum=0)
        )
        x, t_x, T = _features_to_data(features)
        return bgnbd_expected_purchases(params, horizon, x, t_x, T)

    def __repr__(self) -> str:
        return f"BGNBDModel(horizon_days={self.horizon_days!r}, penalizer={self.penalizer!r})"
