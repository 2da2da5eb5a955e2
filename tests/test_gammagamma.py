"""Tests of churnlens._gammagamma: the Gamma-Gamma spend model.

Kinds (docs/style.md): the published CDNOW fit of Fader and Hardie (2013) and the
conditional expectations lifetimes' documentation prints for the same data; the
likelihood and the conditional expectation against numerical integration over ``nu``;
recovery of simulated parameters; the frequency-spend assumption check; the estimator
contract and its errors. Seeds are fixed and printed.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy import integrate, stats

from churnlens._gammagamma import (
    GammaGammaModel,
    GammaGammaParams,
    gammagamma_expected_spend,
    gammagamma_fit,
    gammagamma_log_likelihood,
    spend_frequency_correlation,
)
from churnlens.datasets import cdnow_path, load_cdnow_sample
from churnlens.exceptions import (
    ChurnlensError,
    DatasetNotAvailableError,
    DataValidationError,
    EmptyDataError,
    MissingColumnError,
    ModelError,
    NotFittedError,
)

# Fader and Hardie (2013), "The Gamma-Gamma model of monetary value"
# (brucehardie.com/notes/025): the 946 repeat customers of the CDNOW 1/10 sample in the
# 39-week calibration period. The log-likelihood to more digits is CLVTools'
# correctness test (tests/testthat/test_correctness_gg.R, "Parameter estimates from
# Fader & Hardie, 2013": p = 6.25, q = 3.74, gamma = 15.44, LL = -4055.9177).
PUBLISHED = {"p": 6.25, "q": 3.74, "gamma": 15.44}
PUBLISHED_LL = -4055.9177
CALIBRATION_END = pd.Timestamp("1997-09-30")


@pytest.fixture(scope="module")
def cdnow_repeat() -> pd.DataFrame:
    """``x`` and ``m`` of the CDNOW sample's repeat customers, as in the paper.

    Purchases of one day are summed (one occasion); the first purchase day is left out;
    ``m`` is the mean of the repeat days' amounts.
    """
    try:
        tx = load_cdnow_sample()
    except DatasetNotAvailableError as exc:  # the optional 'datasets' extra
        pytest.skip(f"CDNOW sample not installed: {exc}")
    calibration = tx[tx["timestamp"] <= CALIBRATION_END]
    days = calibration.groupby(["customer_id", "timestamp"], as_index=False)["amount"].sum()
    days = days.sort_values(["customer_id", "timestamp"])
    repeat = days[days.groupby("customer_id").cumcount() > 0]
    summary = repeat.groupby("customer_id")["amount"].agg(x="size", m="mean")
    return summary.astype("float64")


def test_cdnow_data_preparation_matches_hardies_summary(cdnow_repeat: pd.DataFrame) -> None:
    # Hardie's own (x, zbar) per customer (zbar rounded to cents) ships in lifetimes.
    hardie = pd.read_csv(cdnow_path("cdnow_customers_summary_with_transactions.csv"))
    hardie = hardie[hardie["x"] > 0].set_index("ID").sort_index()
    ours = cdnow_repeat.set_axis(cdnow_repeat.index.astype(int)).sort_index()
    assert len(ours) == 946
    assert ours.index.equals(hardie.index)
    np.testing.assert_array_equal(ours["x"], hardie["x"])
    np.testing.assert_allclose(ours["m"], hardie["zbar"], atol=0.0051)


def test_cdnow_fit_matches_published_parameters(cdnow_repeat: pd.DataFrame) -> None:
    x, m = cdnow_repeat["x"], cdnow_repeat["m"]
    params = gammagamma_fit(x, m)
    ll = float(gammagamma_log_likelihood(params, x, m).sum())
    print(f"CDNOW Gamma-Gamma fit: {params}, LL = {ll:.4f}")
    for name, value in PUBLISHED.items():
        assert getattr(params, name) == pytest.approx(value, rel=0.01), name
        # Published to 2 decimals: the fit rounds to them.
        assert getattr(params, name) == pytest.approx(value, abs=0.005), name
    assert ll == pytest.approx(PUBLISHED_LL, abs=0.01)
    assert ll >= float(gammagamma_log_likelihood(tuple(PUBLISHED.values()), x, m).sum())


def test_cdnow_model_reports_the_assumption_check(cdnow_repeat: pd.DataFrame) -> None:
    features = pd.DataFrame(
        {"repeat_frequency": cdnow_repeat["x"], "monetary_mean_repeat": cdnow_repeat["m"]}
    )
    # Customers without a repeat purchase are in a real features frame too (m = NaN):
    # the fit leaves them out.
    one_timers = pd.DataFrame({"repeat_frequency": [0.0] * 5, "monetary_mean_repeat": np.nan})
    model = GammaGammaModel().fit(pd.concat([features, one_timers], ignore_index=True))
    assert model.n_customers_ == 946
    assert model.converged_ and model.boundary_ is None
    assert model.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.01)
    check = model.assumption_check_
    print(check)
    # Fader and Hardie (2013) report a correlation of 0.11 between x and m.
    assert check["pearson_r"] == pytest.approx(0.11, abs=0.005)
    assert check["customers"] == 946 and check["weak"] is True
    assert "r = 0.114" in check["message"]
    p = model.params_
    assert model.population_mean_spend_ == pytest.approx(
        p["p"] * p["gamma"] / (p["q"] - 1), rel=1e-12
    )


def test_conditional_expectations_match_lifetimes_documentation() -> None:
    # lifetimes' Quickstart (docs/Quickstart.md, "Estimating customer lifetime value
    # using the gamma-gamma model of monetary value") fits Hardie's summary file
    # (zbar rounded to cents) and prints these expected average profits for
    # customers 1, 2, 3 (no repeat purchase: the population mean), 6 and 9; it also
    # prints the correlation 0.113884 of frequency and monetary value.
    hardie = pd.read_csv(cdnow_path("cdnow_customers_summary_with_transactions.csv"))
    hardie = hardie.set_index("ID")
    repeat = hardie[hardie["x"] > 0]
    params = gammagamma_fit(repeat["x"], repeat["zbar"])
    documented = {1: 24.658619, 2: 18.911489, 3: 35.170981, 6: 71.462843, 9: 27.282408}
    rows = hardie.loc[list(documented)]
    ours = gammagamma_expected_spend(params, rows["x"], rows["zbar"].where(rows["x"] > 0))
    print(dict(zip(documented, ours.round(6), strict=True)))
    np.testing.assert_allclose(ours, list(documented.values()), rtol=2e-6)
    check = spend_frequency_correlation(repeat["x"], repeat["zbar"])
    assert check["pearson_r"] == pytest.approx(0.113884, abs=5e-7)


# --------------------------------------------------------------------------- oracle


def _gamma_pdf(value: float, shape: float, rate: float) -> float:
    return float(stats.gamma.pdf(value, shape, scale=1.0 / rate))


def test_likelihood_and_expectation_match_integration_over_nu() -> None:
    # m given nu is Gamma(px, rate x nu); nu ~ Gamma(q, rate gamma). The density of m
    # and the posterior mean of p / nu, by quad over nu.
    seed = 2013
    print(f"seed = {seed}")
    rng = np.random.default_rng(seed)
    for _ in range(20):
        p, q, g = rng.uniform(0.5, 8.0), rng.uniform(1.5, 6.0), rng.uniform(2.0, 40.0)
        x = int(rng.integers(1, 12))
        m = float(rng.uniform(2.0, 80.0))

        def joint(nu: float, p: float = p, q: float = q, g: float = g, x: int = x,
                  m: float = m) -> float:
            return _gamma_pdf(m, p * x, x * nu) * _gamma_pdf(nu, q, g)

        density, _ = integrate.quad(joint, 0.0, np.inf, epsabs=0.0, epsrel=1e-11, limit=200)
        spend, _ = integrate.quad(
            lambda nu, joint=joint, p=p: p / nu * joint(nu),
            0.0,
            np.inf,
            epsabs=0.0,
            epsrel=1e-11,
            limit=200,
        )
        params = (p, q, g)
        assert float(gammagamma_log_likelihood(params, x, m)) == pytest.approx(
            math.log(density), abs=1e-7
        )
        assert float(gammagamma_expected_spend(params, x, m)) == pytest.approx(
            spend / density, rel=1e-7
        )


def test_expected_spend_is_a_weighted_mean_of_population_and_own_mean() -> None:
    p, q, g = 6.25, 3.74, 15.44
    population = p * g / (q - 1)
    x = np.array([0, 1, 2, 10, 1000])
    m = np.array([np.nan, 80.0, 80.0, 80.0, 80.0])
    spend = gammagamma_expected_spend((p, q, g), x, m)
    assert spend[0] == pytest.approx(population, rel=1e-12)
    # More transactions: closer to the customer's own mean, from the population's.
    assert np.all(np.diff(spend) > 0) and np.all(spend[1:] < 80.0)
    assert spend[-1] == pytest.approx(80.0, rel=0.01)


# --------------------------------------------------------------------------- simulation


def simulate_spend(
    params: tuple[float, float, float], x: npt.NDArray[np.int64], rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Mean of ``x`` Gamma(p, nu) transaction values, ``nu ~ Gamma(q, gamma)``."""
    p, q, g = params
    nu = rng.gamma(q, 1.0 / g, size=x.size)
    return rng.gamma(p * x, 1.0 / nu) / x


def test_fit_recovers_simulated_parameters_and_expected_spend() -> None:
    seed = 25
    print(f"seed = {seed}")
    rng = np.random.default_rng(seed)
    true = (4.0, 3.0, 20.0)
    x = rng.integers(1, 10, size=20_000)
    m = simulate_spend(true, x, rng)
    fitted = gammagamma_fit(x, m)
    print(f"fitted {fitted}, true {true}")
    np.testing.assert_allclose(np.asarray(fitted), true, rtol=0.1)
    # The conditional expectation is the posterior mean of p / nu: on fresh
    # transactions of the same customers it is unbiased within groups of x.
    nu = rng.gamma(true[1], 1.0 / true[2], size=x.size)
    m = rng.gamma(true[0] * x, 1.0 / nu) / x
    future = rng.gamma(true[0], 1.0 / nu)  # one next transaction each
    expected = gammagamma_expected_spend(true, x, m)
    for group in (x == 1, (x >= 2) & (x <= 4), x >= 5):
        diff = future[group] - expected[group]
        z = diff.mean() / (diff.std() / math.sqrt(diff.size))
        assert abs(z) < 4.5, z
    # And the assumption check sees no correlation here (independent by design).
    assert spend_frequency_correlation(x, m)["weak"] is True


def test_assumption_check_flags_spend_that_grows_with_frequency() -> None:
    rng = np.random.default_rng(8)
    x = rng.integers(1, 20, size=2000)
    m = 10.0 * x * rng.gamma(20.0, 1 / 20.0, size=x.size)
    check = spend_frequency_correlation(x, m)
    assert check["weak"] is False and check["pearson_r"] > 0.8
    assert "doubtful" in check["message"]
    too_few = spend_frequency_correlation([1, 2], [10.0, 12.0])
    assert too_few["pearson_r"] is None and too_few["weak"] is None


# --------------------------------------------------------------------------- estimator


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    x = rng.integers(0, 8, size=1500)
    m = np.where(x > 0, simulate_spend((4.0, 3.0, 20.0), np.maximum(x, 1), rng), np.nan)
    return pd.DataFrame({"repeat_frequency": x, "monetary_mean_repeat": m})


def test_init_only_stores_arguments() -> None:
    assert vars(GammaGammaModel(penalizer=0.1)) == {"penalizer": 0.1}


def test_fit_and_expected_spend(features: pd.DataFrame) -> None:
    model = GammaGammaModel()
    assert model.fit(features) is model
    assert set(model.params_) == {"p", "q", "gamma"}
    assert model.n_customers_ == int((features["repeat_frequency"] > 0).sum())
    assert model.feature_names_ == ["repeat_frequency", "monetary_mean_repeat"]
    spend = model.expected_spend(features)
    np.testing.assert_allclose(
        spend,
        gammagamma_expected_spend(
            GammaGammaParams(**model.params_),
            features["repeat_frequency"],
            features["monetary_mean_repeat"],
        ),
    )
    assert np.all(spend > 0)
    np.testing.assert_allclose(
        spend[features["repeat_frequency"].to_numpy() == 0], model.population_mean_spend_
    )
    assert GammaGammaModel().fit(features).params_ == model.params_  # deterministic


def test_errors(features: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError, match="fit"):
        GammaGammaModel().expected_spend(features)
    with pytest.raises(EmptyDataError, match="repeat"):
        GammaGammaModel().fit(features[features["repeat_frequency"] == 0])
    with pytest.raises(MissingColumnError, match="monetary_mean_repeat"):
        GammaGammaModel().fit(features.drop(columns="monetary_mean_repeat"))
    bad = features.copy()
    bad.loc[bad["repeat_frequency"] > 0, "monetary_mean_repeat"] *= -1
    with pytest.raises(DataValidationError, match="> 0"):
        GammaGammaModel().fit(bad)
    bad = features.assign(repeat_frequency=features["repeat_frequency"] - 1)
    with pytest.raises(DataValidationError, match="whole numbers >= 0"):
        GammaGammaModel().fit(bad)
    with pytest.raises(DataValidationError, match="x must be >= 1"):
        gammagamma_fit([0, 2], [10.0, 20.0])
    with pytest.raises(DataValidationError, match="whole numbers"):
        gammagamma_log_likelihood((1.0, 2.0, 3.0), [1.5], [10.0])
    with pytest.raises(EmptyDataError):
        gammagamma_fit([], [])
    with pytest.raises(ChurnlensError, match="penalizer"):
        gammagamma_fit([1, 2], [10.0, 20.0], penalizer=-1.0)
    with pytest.raises(ChurnlensError, match="3 values"):
        gammagamma_expected_spend((1.0, 2.0), 1, 10.0)
    # q <= 1: no finite population mean, so no expected spend without history.
    with pytest.raises(ModelError, match="infinite"):
        gammagamma_expected_spend((2.0, 0.8, 10.0), [0, 3], [np.nan, 10.0])
    assert float(gammagamma_expected_spend((2.0, 0.8, 10.0), 3, 10.0)) > 0
