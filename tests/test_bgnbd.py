"""Tests of churnlens._bgnbd: the BG/NBD baseline.

Kinds (docs/style.md): golden hand-computed likelihoods and a naive reference
formula as oracle; the published CDNOW fit of Fader, Hardie and Lee (2005); recovery
of known parameters from data simulated by the BG/NBD generative process; a Monte
Carlo check of the conditional predictions; properties; the estimator contract.
Seeds are fixed and printed.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from btyd_support import (
    BAD_FEATURE_VALUES,
    cdnow_calibration_days,
    features_frame,
    with_bad_value,
)

from churnlens import (
    BGNBDModel,
    ChurnlensError,
    DataValidationError,
    MissingColumnError,
    NotFittedError,
    bgnbd_expected_purchases,
    bgnbd_fit,
    bgnbd_log_likelihood,
    bgnbd_p_alive,
    bgnbd_prob_purchase_in,
)
from churnlens._bgnbd import BGNBDParams, _ll_and_grad_log_params
from churnlens.datasets import cdnow_path

# --------------------------------------------------------------------------- helpers


def naive_log_likelihood(
    params: tuple[float, float, float, float], x: int, t_x: float, T: float
) -> float:
    """Eq. 6 of Fader, Hardie and Lee (2005), written literally with math.gamma.

    No logs, no log-sum-exp: an independent oracle for small inputs only.
    """
    r, alpha, a, b = params

    def beta(p: float, q: float) -> float:
        return math.gamma(p) * math.gamma(q) / math.gamma(p + q)

    gamma_part = math.gamma(r + x) * alpha**r / math.gamma(r)
    likelihood = beta(a, b + x) / beta(a, b) * gamma_part / (alpha + T) ** (r + x)
    if x > 0:
        likelihood += beta(a + 1, b + x - 1) / beta(a, b) * gamma_part / (alpha + t_x) ** (r + x)
    return math.log(likelihood)


def simulate_bgnbd(
    params: tuple[float, float, float, float],
    T: npt.NDArray[np.float64],
    horizon: float,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Simulate the BG/NBD generative process (FHL 2005, section 2).

    Each customer makes a first purchase at time 0, then buys as a Poisson process
    with rate ``lambda ~ Gamma(r, rate alpha)`` and drops out right after each repeat
    purchase with probability ``p ~ Beta(a, b)``: the repeat purchase after which
    they drop out is ``Geometric(p)``. Returns ``x`` and ``t_x`` in ``(0, T]`` and the
    number of purchases in ``(T, T + horizon]``.
    """
    r, alpha, a, b = params
    n = T.size
    rate = rng.gamma(shape=r, scale=1.0 / alpha, size=n)
    dropout = rng.beta(a, b, size=n)
    last_repeat = rng.geometric(dropout)  # drops out right after this repeat purchase
    time = np.zeros(n)
    made = np.zeros(n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    future = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        time[idx] += rng.exponential(1.0 / rate[idx])
        made[idx] += 1
        in_calibration = time[idx] <= T[idx]
        in_horizon = ~in_calibration & (time[idx] <= T[idx] + horizon)
        x[idx[in_calibration]] += 1
        t_x[idx[in_calibration]] = time[idx[in_calibration]]
        future[idx[in_horizon]] += 1
        done = (made[idx] >= last_repeat[idx]) | (time[idx] > T[idx] + horizon)
        active[idx[done]] = False
    return x, t_x, future


# --------------------------------------------------------------------------- CDNOW

# Fader, Hardie and Lee (2005), section 4: the CDNOW 1/10 sample, 39-week calibration
# period ending 1997-09-30, times in weeks.
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4


@pytest.fixture(scope="module")
def cdnow_days() -> pd.DataFrame:
    """``x``, ``t_x`` and ``T`` in days for the CDNOW sample, as in the paper (the
    conventions: :func:`btyd_support.cdnow_calibration_days`)."""
    return cdnow_calibration_days()


def test_cdnow_data_preparation_matches_hardies_summary(cdnow_days: pd.DataFrame) -> None:
    # Hardie's own (x, t_x, T) per customer, in weeks rounded to 2 decimals, ships
    # beside the transactions; our preparation must agree customer by customer.
    summary = pd.read_csv(cdnow_path("cdnow_customers_summary.csv"))
    ours = cdnow_days.set_axis(cdnow_days.index.astype(int)).sort_index()
    summary = summary.set_index("ID").sort_index()
    assert len(ours) == 2357
    assert ours.index.equals(summary.index)
    np.testing.assert_array_equal(ours["x"].to_numpy(), summary["frequency"].to_numpy())
    np.testing.assert_allclose(ours["t_x"] / 7, summary["recency"], atol=0.0051)
    np.testing.assert_allclose(ours["T"] / 7, summary["T"], atol=0.0051)


def test_cdnow_fit_matches_published_parameters(cdnow_days: pd.DataFrame) -> None:
    x, t_x, T = cdnow_days["x"], cdnow_days["t_x"] / 7, cdnow_days["T"] / 7
    params = bgnbd_fit(x, t_x, T)
    ll = float(bgnbd_log_likelihood(params, x, t_x, T).sum())
    print(f"CDNOW fit (weeks): {params}, LL = {ll:.3f}")
    # Published to 3 decimals: the fit must round to them.
    assert params.r == pytest.approx(PUBLISHED["r"], abs=0.0005)
    assert params.alpha == pytest.approx(PUBLISHED["alpha"], abs=0.0005)
    assert params.a == pytest.approx(PUBLISHED["a"], abs=0.0005)
    assert params.b == pytest.approx(PUBLISHED["b"], abs=0.0005)
    assert ll == pytest.approx(PUBLISHED_LL, abs=0.05)
    # It is a maximum: the published (rounded) parameters are not better.
    assert ll >= float(bgnbd_log_likelihood(tuple(PUBLISHED.values()), x, t_x, T).sum())


def test_cdnow_end_of_day_convention_does_not_reproduce_the_paper(
    cdnow_days: pd.DataFrame,
) -> None:
    # Why T has no "+ 1 day" (see the cdnow_days fixture): the other convention fits
    # visibly worse than the published numbers.
    x, t_x, T = cdnow_days["x"], cdnow_days["t_x"] / 7, (cdnow_days["T"] + 1) / 7
    params = bgnbd_fit(x, t_x, T)
    ll = float(bgnbd_log_likelihood(params, x, t_x, T).sum())
    assert abs(ll - PUBLISHED_LL) > 5
    assert abs(params.a - PUBLISHED["a"]) > 0.01


def test_cdnow_fit_in_days_is_the_same_model(cdnow_days: pd.DataFrame) -> None:
    weeks = bgnbd_fit(cdnow_days["x"], cdnow_days["t_x"] / 7, cdnow_days["T"] / 7)
    ll_weeks = float(
        bgnbd_log_likelihood(
            weeks, cdnow_days["x"], cdnow_days["t_x"] / 7, cdnow_days["T"] / 7
        ).sum()
    )
    model = BGNBDModel(horizon_days=91).fit(
        features_frame(cdnow_days["x"], cdnow_days["t_x"], cdnow_days["T"])
    )
    days = model.params_
    print(f"CDNOW fit (days): {days}, LL = {model.log_likelihood_:.3f}")
    # r, a, b are unit-free; alpha is a time: alpha_days = 7 alpha_weeks.
    assert days["r"] == pytest.approx(weeks.r, rel=1e-5)
    assert days["a"] == pytest.approx(weeks.a, rel=1e-5)
    assert days["b"] == pytest.approx(weeks.b, rel=1e-5)
    assert days["alpha"] == pytest.approx(7 * weeks.alpha, rel=1e-5)
    assert days["alpha"] == pytest.approx(7 * PUBLISHED["alpha"], abs=0.01)
    # Each of the x purchase times has density 1/7 as large per day as per week: the
    # log-likelihood shifts by the Jacobian sum(x) ln 7.
    jacobian = float(cdnow_days["x"].sum()) * math.log(7)
    assert model.log_likelihood_ + jacobian == pytest.approx(ll_weeks, abs=1e-4)
    assert model.n_customers_ == 2357


def test_cdnow_conditional_expectation_matches_published_example() -> None:
    # Fader, Hardie and Lee's Excel note on BG/NBD: customer 1 of the sample
    # (x = 2, t_x = 30.43, T = 38.86 weeks) is expected to make 1.226 purchases in the
    # next 39 weeks under the published parameters.
    expected = bgnbd_expected_purchases(tuple(PUBLISHED.values()), 39, 2, 30.43, 38.86)
    assert float(expected) == pytest.approx(1.226, abs=0.0005)


# --------------------------------------------------------------------------- likelihood

GOLDEN_PARAMS = (0.5, 2.0, 0.8, 1.5)


def test_log_likelihood_golden_hand_computed() -> None:
    # GOLDEN_PARAMS: r = 0.5, alpha = 2, a = 0.8, b = 1.5.
    # x = 0, T = 5: L = (alpha / (alpha + T))**r = (2/7)**0.5.
    by_hand_x0 = 0.5 * math.log(2 / 7)
    # x = 1, t_x = 2, T = 5: Gamma(1.5)/Gamma(0.5) = 0.5, alpha**r = sqrt(2),
    # B(a, b+1)/B(a, b) = b/(a+b) = 1.5/2.3, B(a+1, b)/B(a, b) = a/(a+b) = 0.8/2.3:
    # L = 0.5 sqrt(2) [ (1.5/2.3) / 7**1.5 + (0.8/2.3) / 4**1.5 ].
    by_hand_x1 = math.log(0.5 * math.sqrt(2) * ((1.5 / 2.3) / 7**1.5 + (0.8 / 2.3) / 8))
    # x = 3, t_x = 4, T = 6: Gamma(3.5)/Gamma(0.5) = 0.5 * 1.5 * 2.5 = 1.875;
    # B(a, b+3)/B(a, b) = b (b+1) (b+2) / ((a+b) (a+b+1) (a+b+2)) = 13.125 / 32.637;
    # B(a+1, b+2)/B(a, b) = a b (b+1) / ((a+b) (a+b+1) (a+b+2)) = 3.0 / 32.637;
    # (alpha + T)**3.5 = 8**3.5 and (alpha + t_x)**3.5 = 6**3.5.
    denominator = 2.3 * 3.3 * 4.3
    by_hand_x3 = math.log(
        1.875
        * math.sqrt(2)
        * ((1.5 * 2.5 * 3.5 / denominator) / 8**3.5 + (0.8 * 1.5 * 2.5 / denominator) / 6**3.5)
    )
    got = bgnbd_log_likelihood(GOLDEN_PARAMS, [0, 1, 3], [0.0, 2.0, 4.0], [5.0, 5.0, 6.0])
    np.testing.assert_allclose(got, [by_hand_x0, by_hand_x1, by_hand_x3], rtol=1e-12)
    # Literal values, so that a change in both the code and the hand formula shows.
    np.testing.assert_allclose(got, [-0.62638148, -2.88878302, -6.72790442], atol=1e-8)


def test_log_likelihood_matches_naive_formula_on_random_inputs() -> None:
    seed = 20050301
    print(f"seed = {seed}")
    rng = np.random.default_rng(seed)
    n = 200
    params = tuple(rng.uniform(0.2, 3.0, 4) * [1, 10, 1, 1])
    x = rng.integers(0, 12, n)
    T = rng.uniform(0.5, 60, n)
    t_x = np.where(x > 0, rng.uniform(0, 1, n) * T, 0.0)
    expected = [
        naive_log_likelihood(params, int(xi), ti, Ti) for xi, ti, Ti in zip(x, t_x, T, strict=True)
    ]
    np.testing.assert_allclose(bgnbd_log_likelihood(params, x, t_x, T), expected, rtol=1e-10)


def test_log_likelihood_is_stable_for_large_inputs() -> None:
    # Gamma(r + x) and (alpha + T)**(r + x) overflow a naive formula here.
    params = (0.8, 3.0, 0.5, 6.0)
    x = np.array([0, 400, 2000, 2000])
    t_x = np.array([0.0, 9000.0, 9999.0, 10.0])
    T = np.full(4, 10_000.0)
    with pytest.raises(OverflowError):
        naive_log_likelihood(params, 400, 9000.0, 10_000.0)
    ll = bgnbd_log_likelihood(params, x, t_x, T)
    assert np.all(np.isfinite(ll))
    alive = bgnbd_p_alive(params, x, t_x, T)
    assert np.all(np.isfinite(alive))
    assert np.all((alive >= 0) & (alive <= 1))
    assert alive[0] == 1.0
    # Bought 2000 times, the last one long ago: gone (0 to double precision, not NaN).
    assert alive[3] < 1e-12


def test_x_zero_does_not_use_b_minus_one() -> None:
    # For x = 0 the second term is absent; with b < 1, b + x - 1 < 0 must not leak
    # into the result (no NaN, no warning).
    params = (0.5, 2.0, 0.8, 0.4)
    with np.errstate(all="raise"):
        ll = bgnbd_log_likelihood(params, 0, 0.0, 5.0)
        alive = bgnbd_p_alive(params, 0, 0.0, 5.0)
    assert float(ll) == pytest.approx(0.5 * math.log(2 / 7), rel=1e-12)
    assert float(alive) == 1.0


def test_analytic_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 8, 50).astype(float)
    T = rng.uniform(1, 40, 50)
    t_x = np.where(x > 0, rng.uniform(0, 1, 50) * T, 0.0)
    theta = np.log([0.4, 6.0, 0.9, 2.2])
    _, grad = _ll_and_grad_log_params(BGNBDParams(*np.exp(theta)), x, t_x, T)
    step = 1e-6
    for k in range(4):
        up, down = theta.copy(), theta.copy()
        up[k] += step
        down[k] -= step
        numeric = (
            bgnbd_log_likelihood(np.exp(up), x, t_x, T)
            - bgnbd_log_likelihood(np.exp(down), x, t_x, T)
        ) / (2 * step)
        np.testing.assert_allclose(grad[k], numeric, rtol=1e-6, atol=1e-8)


def test_fit_with_weights_equals_fit_on_repeated_rows() -> None:
    # Whole-day data repeat; fitting the distinct rows with their counts as weights is
    # the same likelihood as fitting every row.
    rng = np.random.default_rng(5)
    T = rng.choice([40.0, 70.0, 100.0], 2000)  # three acquisition cohorts
    x, t_x, _ = simulate_bgnbd((0.5, 10.0, 0.8, 2.5), T, 0.0, rng)
    rows = np.column_stack([x, np.floor(t_x), T])
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    print(f"{len(distinct)} distinct rows of {len(rows)}")
    assert len(distinct) < len(rows) / 2
    weighted = bgnbd_fit(*distinct.T, weights=counts)
    every_row = bgnbd_fit(*rows.T)
    np.testing.assert_allclose(weighted, every_row, rtol=1e-6)
    # Weights are not ignored: doubling one group's weight moves the fit.
    heavier = counts.copy()
    heavier[distinct[:, 0] == 0] *= 2
    assert not np.allclose(bgnbd_fit(*distinct.T, weights=heavier), weighted, rtol=1e-3)


def test_penalizer_shrinks_parameters() -> None:
    rng = np.random.default_rng(3)
    T = rng.uniform(20, 60, 500)
    x, t_x, _ = simulate_bgnbd((0.5, 5.0, 0.8, 2.5), T, 0.0, rng)
    plain = np.asarray(bgnbd_fit(x, t_x, T))
    penalized = np.asarray(bgnbd_fit(x, t_x, T, penalizer=0.1))
    assert float(penalized @ penalized) < float(plain @ plain)


def test_fit_rejects_bad_data() -> None:
    with pytest.raises(DataValidationError, match="t_x <= T"):
        bgnbd_fit([1, 2], [5.0, 3.0], [4.0, 10.0])
    with pytest.raises(DataValidationError, match="negative"):
        bgnbd_fit([1, -1], [1.0, 0.0], [4.0, 10.0])
    with pytest.raises(DataValidationError, match="whole numbers"):
        bgnbd_fit([1.5, 0], [1.0, 0.0], [4.0, 10.0])
    with pytest.raises(ChurnlensError, match="penalizer"):
        bgnbd_fit([1, 0], [1.0, 0.0], [4.0, 10.0], penalizer=-1.0)
    with pytest.raises(ChurnlensError, match="> 0"):
        bgnbd_p_alive((0.5, 0.0, 1.0, 1.0), 1, 1.0, 2.0)


# --------------------------------------------------------------------------- simulation


def test_fit_recovers_simulated_parameters() -> None:
    # Known parameters, data from the generative process; the estimate must lie within
    # 4 standard errors (from the observed information) of the truth, and those
    # errors must be small enough for that to mean something.
    seed = 1997
    print(f"seed = {seed}")
    rng = np.random.default_rng(seed)
    true = (0.5, 5.0, 0.8, 2.5)
    T = rng.uniform(52, 104, 5000)
    x, t_x, _ = simulate_bgnbd(true, T, 0.0, rng)
    fitted = bgnbd_fit(x, t_x, T)
    theta = np.log(np.asarray(fitted))
    # Hessian of the total log-likelihood in log-parameters, by central differences
    # of the analytic gradient.
    step = 1e-5
    hessian = np.empty((4, 4))
    for k in range(4):
        up, down = theta.copy(), theta.copy()
        up[k] += step
        down[k] -= step
        g_up = _ll_and_grad_log_params(BGNBDParams(*np.exp(up)), x, t_x, T)[1].sum(axis=1)
        g_down = _ll_and_grad_log_params(BGNBDParams(*np.exp(down)), x, t_x, T)[1].sum(axis=1)
        hessian[:, k] = (g_up - g_down) / (2 * step)
    standard_errors = np.sqrt(np.diag(np.linalg.inv(-hessian)))
    z = (theta - np.log(true)) / standard_errors
    print(f"fitted = {fitted}, SE(log) = {standard_errors}, z = {z}")
    assert np.all(standard_errors < 0.15)
    assert np.all(np.abs(z) < 4)
    # And in plain relative terms, loosely.
    np.testing.assert_allclose(np.asarray(fitted), true, rtol=0.3)


def test_fit_is_deterministic() -> None:
    rng = np.random.default_rng(11)
    T = rng.uniform(20, 60, 300)
    x, t_x, _ = simulate_bgnbd((0.5, 5.0, 0.8, 2.5), T, 0.0, rng)
    assert bgnbd_fit(x, t_x, T) == bgnbd_fit(x, t_x, T)


def test_conditional_predictions_match_simulated_future() -> None:
    # Given (x, t_x, T), P(purchase in (T, T+H]) and E[purchases in (T, T+H]] are
    # exact conditional expectations under the model. So within any group of
    # customers selected on x, the mean prediction must equal the mean outcome, up to
    # sampling error (customers are independent).
    seed = 2005
    print(f"seed = {seed}")
    rng = np.random.default_rng(seed)
    params = (0.6, 8.0, 0.9, 2.0)
    horizon = 26.0
    T = rng.uniform(20, 52, 60_000)
    x, t_x, future = simulate_bgnbd(params, T, horizon, rng)
    bought = (future > 0).astype(float)
    prob = bgnbd_prob_purchase_in(params, horizon, x, t_x, T)
    expected = bgnbd_expected_purchases(params, horizon, x, t_x, T)
    groups = [x == 0, x == 1, x == 2, (x >= 3) & (x <= 5), x >= 6]
    for group in groups:
        n = int(group.sum())
        assert n > 1000
        p = prob[group]
        z_prob = (bought[group].mean() - p.mean()) / (math.sqrt(float(np.sum(p * (1 - p)))) / n)
        z_count = (future[group].mean() - expected[group].mean()) / (
            future[group].std() / math.sqrt(n)
        )
        assert abs(z_prob) < 4.5, (n, bought[group].mean(), p.mean())
        assert abs(z_count) < 4.5, (n, future[group].mean(), expected[group].mean())


# --------------------------------------------------------------------------- properties

CDNOW_PARAMS_DAYS = (0.243, 7 * 4.414, 0.793, 2.426)


def test_p_alive_is_one_without_repeat_purchase() -> None:
    T = np.array([0.0, 1.0, 30.0, 365.0, 5000.0])
    np.testing.assert_array_equal(bgnbd_p_alive(CDNOW_PARAMS_DAYS, 0, 0.0, T), 1.0)


def test_p_alive_decreases_with_time_since_last_purchase() -> None:
    T = np.arange(100.0, 1000.0, 25.0)
    alive = bgnbd_p_alive(CDNOW_PARAMS_DAYS, 3, 100.0, T)
    assert np.all(np.diff(alive) < 0)
    assert np.all((alive > 0) & (alive < 1))
    # Bought just now (t_x = T): P(alive) = 1 / (1 + a / (b + x - 1)).
    _, _, a, b = CDNOW_PARAMS_DAYS
    assert float(bgnbd_p_alive(CDNOW_PARAMS_DAYS, 3, 100.0, 100.0)) == pytest.approx(
        1 / (1 + a / (b + 2)), rel=1e-12
    )


def test_prob_purchase_in_grows_with_horizon_and_is_a_probability() -> None:
    # The last horizon stands for "for ever": with r + x as small as 0.243 the
    # bracket converges to 1 only like H**-(r+x).
    horizons = np.array([0.0, 1.0, 7.0, 30.0, 91.0, 365.0, 3650.0, 1e80])
    for x, t_x, T in [(0, 0.0, 50.0), (2, 40.0, 200.0), (10, 300.0, 310.0)]:
        prob = bgnbd_prob_purchase_in(CDNOW_PARAMS_DAYS, horizons, x, t_x, T)
        assert prob[0] == 0.0
        assert np.all(np.diff(prob) > 0)
        assert np.all((prob >= 0) & (prob <= 1))
        # For ever: buys again exactly when alive.
        alive = float(bgnbd_p_alive(CDNOW_PARAMS_DAYS, x, t_x, T))
        assert prob[-1] == pytest.approx(alive, rel=1e-12)


def test_prob_purchase_in_by_hand_for_new_customer() -> None:
    # x = 0: alive for sure, rate ~ Gamma(r, alpha + T), so
    # P(no purchase in H) = ((alpha + T) / (alpha + T + H))**r.
    r, alpha, _, _ = CDNOW_PARAMS_DAYS
    prob = bgnbd_prob_purchase_in(CDNOW_PARAMS_DAYS, 91, 0, 0.0, 200.0)
    assert float(prob) == pytest.approx(1 - ((alpha + 200) / (alpha + 291)) ** r, rel=1e-12)


# --------------------------------------------------------------------------- estimator


@pytest.fixture(scope="module")
def simulated_features() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    T = np.floor(rng.uniform(30, 400, 1500))
    x, t_x, _ = simulate_bgnbd((0.5, 30.0, 0.8, 2.5), T, 0.0, rng)
    return features_frame(x, np.floor(t_x), T)


def test_init_only_stores_arguments() -> None:
    model = BGNBDModel(horizon_days=30, penalizer=0.01)
    assert vars(model) == {"horizon_days": 30, "penalizer": 0.01}


def test_fit_returns_self_and_learned_attributes(simulated_features: pd.DataFrame) -> None:
    model = BGNBDModel(horizon_days=91)
    assert model.fit(simulated_features) is model
    assert set(model.params_) == {"r", "alpha", "a", "b"}
    assert all(v > 0 for v in model.params_.values())
    assert model.horizon_days_ == 91
    assert model.n_customers_ == len(simulated_features)
    assert model.log_likelihood_ == pytest.approx(
        float(
            bgnbd_log_likelihood(
                tuple(model.params_.values()),
                simulated_features["repeat_frequency"],
                simulated_features["t_x_days"],
                simulated_features["tenure_days"],
            ).sum()
        )
    )
    assert model.feature_names_ == ["repeat_frequency", "t_x_days", "tenure_days"]


def test_predict_proba_shape_and_columns(simulated_features: pd.DataFrame) -> None:
    model = BGNBDModel(horizon_days=91).fit(simulated_features)
    proba = model.predict_proba(simulated_features)
    risk = model.predict_churn_risk(simulated_features)
    assert proba.shape == (len(simulated_features), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba[:, 1], risk)
    expected_risk = 1 - bgnbd_prob_purchase_in(
        tuple(model.params_.values()),
        91,
        simulated_features["repeat_frequency"],
        simulated_features["t_x_days"],
        simulated_features["tenure_days"],
    )
    np.testing.assert_allclose(risk, expected_risk, rtol=1e-12)
    np.testing.assert_allclose(
        model.p_alive(simulated_features),
        bgnbd_p_alive(
            tuple(model.params_.values()),
            simulated_features["repeat_frequency"],
            simulated_features["t_x_days"],
            simulated_features["tenure_days"],
        ),
    )
    assert np.all((risk >= 0) & (risk <= 1))


def test_longer_horizon_means_lower_risk(simulated_features: pd.DataFrame) -> None:
    short = BGNBDModel(horizon_days=30).fit(simulated_features)
    long = BGNBDModel(horizon_days=365).fit(simulated_features)
    assert short.params_ == long.params_
    assert np.all(
        long.predict_churn_risk(simulated_features) < short.predict_churn_risk(simulated_features)
    )


def test_risk_rises_as_time_passes_without_purchase(simulated_features: pd.DataFrame) -> None:
    model = BGNBDModel().fit(simulated_features)
    # The same customers, scored later without any new purchase.
    for x, t_x in [(0, 0), (1, 20), (4, 150)]:
        later = features_frame([x] * 5, [t_x] * 5, [160, 200, 300, 500, 900])
        assert np.all(np.diff(model.predict_churn_risk(later)) > 0)
    # A customer who just bought is less at risk than the same customer a year later.
    now = features_frame([3, 3], [200, 200], [200, 565])
    risk_now, risk_year_later = model.predict_churn_risk(now)
    assert risk_now < risk_year_later


def test_risk_does_not_depend_on_customer_id_or_row_order(
    simulated_features: pd.DataFrame,
) -> None:
    model = BGNBDModel().fit(simulated_features)
    base = model.predict_churn_risk(simulated_features)
    with_ids = simulated_features.assign(
        customer_id=[f"c{i:05d}" for i in range(len(simulated_features))]
    )
    np.testing.assert_array_equal(model.predict_churn_risk(with_ids), base)
    order = np.random.default_rng(0).permutation(len(simulated_features))
    shuffled = simulated_features.iloc[order]
    np.testing.assert_array_equal(model.predict_churn_risk(shuffled), base[order])
    refit = BGNBDModel().fit(shuffled.reset_index(drop=True))
    assert refit.params_ == pytest.approx(model.params_, rel=1e-7)


def test_not_fitted_raises() -> None:
    model = BGNBDModel()
    features = features_frame([1], [10], [20])
    for method in (
        model.predict_proba,
        model.predict_churn_risk,
        model.p_alive,
        model.expected_purchases,
    ):
        with pytest.raises(NotFittedError, match="fit"):
            method(features)


def test_missing_column_is_named(simulated_features: pd.DataFrame) -> None:
    with pytest.raises(MissingColumnError, match="t_x_days"):
        BGNBDModel().fit(simulated_features.drop(columns="t_x_days"))
    model = BGNBDModel().fit(simulated_features)
    with pytest.raises(MissingColumnError, match="tenure_days"):
        model.predict_proba(simulated_features.rename(columns={"tenure_days": "T"}))


@pytest.mark.parametrize(("column", "value", "message"), BAD_FEATURE_VALUES)
def test_bad_values_get_clear_errors(
    simulated_features: pd.DataFrame, column: str, value: object, message: str
) -> None:
    with pytest.raises(DataValidationError, match=message):
        BGNBDModel().fit(with_bad_value(simulated_features, column, value))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon_days": 0}, "horizon_days"),
        ({"horizon_days": 9.5}, "horizon_days"),
        ({"penalizer": -0.1}, "penalizer"),
    ],
)
def test_bad_settings_are_rejected_at_fit(
    simulated_features: pd.DataFrame, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ChurnlensError, match=message):
        BGNBDModel(**kwargs).fit(simulated_features)


def test_not_a_dataframe_is_rejected() -> None:
    with pytest.raises(DataValidationError, match="DataFrame"):
        BGNBDModel().fit(np.zeros((3, 3)))
