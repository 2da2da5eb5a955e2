"""Per-customer value outputs (churnlens._value): golden tables, a simulation oracle,
the fit's fallbacks, and the outputs in scores (issue 20, item 3)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import churnlens
from churnlens._bgnbd import bgnbd_prob_purchase_in
from churnlens._config import ScoringSettings, ValueSettings, load_config
from churnlens._paretonbd import ParetoNBDModel, paretonbd_prob_purchase_in
from churnlens._value import (
    DAYS_PER_MONTH,
    VALUE_COLUMNS,
    ValueModel,
    fit_value_model,
    predict_value,
    value_model_of,
)
from churnlens.exceptions import ChurnlensError, ModelError

OUTPUTS = [*VALUE_COLUMNS, "expected_value"]


def _frame(x, t_x, T, *, mean_repeat=None, mean=None) -> pd.DataFrame:
    n = len(x)
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "repeat_frequency": np.asarray(x, dtype=np.int64),
        "frequency": np.asarray(x, dtype=np.int64) + 1,
        "t_x_days": np.asarray(t_x, dtype=float),
        "tenure_days": np.asarray(T, dtype=float),
        "monetary_mean_repeat": np.asarray(mean_repeat if mean_repeat is not None
                                           else [np.nan] * n, dtype=float),
        "monetary_mean": np.asarray(mean if mean is not None else [10.0] * n, dtype=float),
    })


# --- golden tables, by hand --------------------------------------------------------------

# Pareto/NBD with alpha = beta = one month (30.4375 days), s = 2, and customers who just
# bought (t_x = T, so P(alive) = 1): the posterior-given-alive expectation of purchases in
# (T, T+t] is (r+x) t / (B+t), B = beta + T.
MONTH = DAYS_PER_MONTH
PARETO = {"r": 1.0, "alpha": MONTH, "s": 2.0, "beta": MONTH}


def test_golden_clv_discounting_and_expected_value_without_spend_model():
    # x = 0, T = 0: E[Y(t)] = t / (30.4375 + t), month i: i / (1 + i). Monthly rate 10%:
    # annual (1.1)^12 - 1. Spend: no Gamma-Gamma, the customer's own first basket, 10.
    model = ValueModel("pareto/nbd", PARETO, None)
    features = _frame([0], [0.0], [0.0], mean=[10.0])
    out = predict_value(model, features, horizon_days=91, clv_months=3,
                        annual_discount_rate=1.1 ** 12 - 1)
    row = out.iloc[0]
    assert list(out.columns) == OUTPUTS
    assert row["p_alive"] == pytest.approx(1.0, abs=1e-12)
    assert row["expected_purchases"] == pytest.approx(91 / (MONTH + 91), rel=1e-12)
    assert row["expected_spend"] == pytest.approx(10 * 91 / (MONTH + 91), rel=1e-12)
    # increments 1/2, 2/3 - 1/2 = 1/6, 3/4 - 2/3 = 1/12, discounted 1.1, 1.21, 1.331
    assert row["clv"] == pytest.approx(10 * (0.5 / 1.1 + (1 / 6) / 1.21 + (1 / 12) / 1.331),
                                       rel=1e-12)
    assert row["clv"] == pytest.approx(6.548960, abs=1e-6)
    # if active: rate (r + x) / (alpha + T) = 1 / 30.4375 per day, 91 days, basket 10
    assert row["expected_value"] == pytest.approx(91 / MONTH * 10, rel=1e-12)
    # P(ever buying again) = (r+x)/(r+x+s) = 1/3 < 1/2: the median does not exist
    assert math.isnan(row["days_to_next_purchase"])


def test_golden_gamma_gamma_spend_and_expected_value():
    # p = 6, q = 4, gamma = 15: population mean 6 * 15 / 3 = 30; a customer with x = 2
    # repeat occasions of mean 20: (15 + 40) * 6 / (12 + 3) = 22.
    model = ValueModel("pareto/nbd", PARETO, {"p": 6.0, "q": 4.0, "gamma": 15.0})
    T = 2 * MONTH
    features = _frame([0, 2], [T, T], [T, T], mean_repeat=[np.nan, 20.0], mean=[99.0, 99.0])
    out = predict_value(model, features, horizon_days=91, clv_months=1,
                        annual_discount_rate=0.0)
    B = MONTH + T
    # x = 0 with t_x = T = 0 months after the first purchase... here T = 2 months and
    # t_x = T: P(alive) = 1 for both; E[Y(t)] = (r+x) t / (B+t)
    for i, (x, spend) in enumerate(((0, 30.0), (2, 22.0))):
        purchases = (1 + x) * 91 / (B + 91)
        assert out["p_alive"].iloc[i] == pytest.approx(1.0, abs=1e-12)
        assert out["expected_purchases"].iloc[i] == pytest.approx(purchases, rel=1e-12)
        assert out["expected_spend"].iloc[i] == pytest.approx(purchases * spend, rel=1e-12)
        assert out["clv"].iloc[i] == pytest.approx((1 + x) * MONTH / (B + MONTH) * spend,
                                                   rel=1e-12)
        assert out["expected_value"].iloc[i] == pytest.approx(
            (1 + x) / (MONTH + T) * 91 * spend, rel=1e-12)


def test_golden_median_days_to_next_purchase():
    # Pareto/NBD with alpha = beta = A, x = 0, t_x = T = 0: P(buy in t) =
    # r/(r+s) (1 - (A/(A+t))^(r+s)); r = 1, s = 0.25: 0.8 (1 - (A/(A+t))^1.25) = 1/2.
    pareto = ValueModel("pareto/nbd", {"r": 1.0, "alpha": MONTH, "s": 0.25, "beta": MONTH},
                        None)
    out = predict_value(pareto, _frame([0], [0.0], [0.0]), horizon_days=91)
    assert out["days_to_next_purchase"].iloc[0] == pytest.approx(
        MONTH * (0.375 ** -0.8 - 1), rel=1e-9)
    assert MONTH * (0.375 ** -0.8 - 1) == pytest.approx(36.2714, abs=1e-4)
    # BG/NBD, x = 0 (alive for sure): 1 - 10 / (10 + t) = 1/2 at t = 10 days.
    bgnbd = ValueModel("bg/nbd", {"r": 1.0, "alpha": 10.0, "a": 0.8, "b": 2.5}, None)
    out = predict_value(bgnbd, _frame([0], [0.0], [0.0]), horizon_days=91)
    assert out["days_to_next_purchase"].iloc[0] == pytest.approx(10.0, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_solves_half_with_the_models_own_probability(seed):
    # The root-find against the model's P(purchase within t) (paretonbd_prob_purchase_in,
    # bgnbd_prob_purchase_in), solved here with brentq; NaN exactly where P(ever) <= 1/2.
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    n = 40
    T = rng.uniform(1, 700, n)
    x = rng.integers(0, 30, n)
    t_x = np.where(x > 0, rng.uniform(0, 1, n) * T, 0.0)
    pareto = {"r": rng.uniform(0.2, 2), "alpha": rng.uniform(5, 200),
              "s": rng.uniform(0.2, 2), "beta": rng.uniform(5, 400)}
    bgnbd = {"r": rng.uniform(0.2, 2), "alpha": rng.uniform(5, 200),
             "a": rng.uniform(0.2, 2), "b": rng.uniform(0.5, 5)}
    features = _frame(x, t_x, T)
    for name, params, prob in (("pareto/nbd", pareto, paretonbd_prob_purchase_in),
                               ("bg/nbd", bgnbd, bgnbd_prob_purchase_in)):
        days = predict_value(ValueModel(name, params, None), features,
                             horizon_days=91)["days_to_next_purchase"].to_numpy()
        ever = prob(params, 1e12, x, t_x, T)
        for i in range(n):
            if ever[i] <= 0.5 - 1e-9:
                assert math.isnan(days[i]), (name, i)
                continue
            if ever[i] < 0.5 + 1e-6:
                continue  # the median runs off to infinity
            root = optimize.brentq(
                lambda t, i=i, f=prob, p=params: f(p, t, x[i], t_x[i], T[i]) - 0.5,
                0.0, 1e12, xtol=1e-12, rtol=1e-12)
            assert days[i] == pytest.approx(root, rel=1e-6, abs=1e-6), (name, i)


# --- a simulation oracle -------------------------------------------------------------------


def _simulate_pareto(params, x, t_x, T, horizon, draws, rng):
    """Importance-sampled Pareto/NBD process given a history: (p_alive, E[purchases in H],
    P(next purchase within t) as a function, effective sample size).

    Purchase rate ``lambda`` drawn from Gamma(r+x, alpha+T), dropout rate ``mu`` and the
    lifetime ``tau`` from the prior; the weight is prior x likelihood / proposal:
    ``exp(lambda (T - min(tau, T)))`` when ``tau > t_x``, else 0 (the history is
    impossible). Then the future by the process itself: alive at T when ``tau > T``,
    purchases at rate lambda until ``min(tau, T+H)``, the next purchase after an
    exponential wait if it comes before ``tau``.
    """
    r, alpha, s, beta = (params[k] for k in ("r", "alpha", "s", "beta"))
    lam = rng.gamma(r + x, 1.0 / (alpha + T), draws)
    mu = rng.gamma(s, 1.0 / beta, draws)
    tau = rng.exponential(1.0 / mu)
    w = np.where(tau > t_x, np.exp(lam * (T - np.minimum(tau, T))), 0.0)
    w = w / w.sum()
    ess = 1.0 / np.sum(w ** 2)
    alive = tau > T
    purchases = np.where(alive, lam * (np.minimum(tau, T + horizon) - T), 0.0)
    wait = rng.exponential(1.0 / lam)
    next_at = np.where(alive & (T + wait < tau), wait, np.inf)
    return (float(np.sum(w * alive)), float(np.sum(w * purchases)), purchases, w, next_at,
            ess)


@pytest.mark.parametrize("seed", [3, 4])
def test_value_outputs_against_a_simulation_of_the_process(seed):
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    params = {"r": 0.6, "alpha": 80.0, "s": 0.5, "beta": 60.0}
    spend = {"p": 6.0, "q": 4.0, "gamma": 15.0}
    model = ValueModel("pareto/nbd", params, spend)
    histories = [(0, 0.0, 120.0), (1, 30.0, 200.0), (3, 150.0, 160.0), (6, 300.0, 400.0),
                 (2, 20.0, 300.0), (10, 250.0, 260.0)]
    x, t_x, T = (np.array(v, dtype=float) for v in zip(*histories, strict=True))
    m = np.where(x > 0, rng.uniform(10, 60, len(x)), np.nan)
    features = _frame(x.astype(int), t_x, T, mean_repeat=m)
    out = predict_value(model, features, horizon_days=91, clv_months=12)
    for i in range(len(x)):
        alive, purchases, draws_purchases, w, next_at, ess = _simulate_pareto(
            params, x[i], t_x[i], T[i], 91.0, 400_000, rng)
        se_alive = math.sqrt(max(alive * (1 - alive), 1e-4) / ess)
        assert abs(out["p_alive"].iloc[i] - alive) < 4.5 * se_alive + 1e-3, i
        sd = math.sqrt(np.sum(w * (draws_purchases - purchases) ** 2))
        assert abs(out["expected_purchases"].iloc[i] - purchases) < 4.5 * sd / math.sqrt(ess) + 1e-3
        median = out["days_to_next_purchase"].iloc[i]
        within = float(np.sum(w * (next_at <= (median if np.isfinite(median) else np.inf))))
        ever = float(np.sum(w * np.isfinite(next_at)))
        if np.isfinite(median):  # half of the weight waits at most the median
            assert abs(within - 0.5) < 4.5 * math.sqrt(0.25 / ess), i
        else:
            assert ever < 0.5 + 4.5 * math.sqrt(0.25 / ess), i
        # spend per occasion: nu from the prior Gamma(q, gamma), weighted by the density of
        # the customer's mean m given nu (Gamma(p x, x nu)); E[p / nu] given m.
        nu = rng.gamma(spend["q"], 1.0 / spend["gamma"], 400_000)
        if x[i] > 0:
            px = spend["p"] * x[i]
            log_w = px * np.log(nu) - x[i] * m[i] * nu
            wn = np.exp(log_w - log_w.max())
        else:
            wn = np.ones_like(nu)
        wn /= wn.sum()
        per_occasion = float(np.sum(wn * spend["p"] / nu))
        sd_spend = math.sqrt(np.sum(wn * (spend["p"] / nu - per_occasion) ** 2))
        got = out["expected_spend"].iloc[i] / out["expected_purchases"].iloc[i]
        assert abs(got - per_occasion) < 4.5 * sd_spend * math.sqrt(np.sum(wn ** 2)) + 1e-3, i
        assert out["expected_value"].iloc[i] == pytest.approx(
            (params["r"] + x[i]) / (params["alpha"] + T[i]) * 91 * got, rel=1e-12)


def test_clv_is_the_monthly_discounted_sum_of_expected_spend():
    # Oracle: the model's own expected purchases at each month end, discounted monthly.
    from churnlens._bgnbd import bgnbd_expected_purchases
    from churnlens._paretonbd import paretonbd_expected_purchases

    rng = np.random.default_rng(5)
    n = 30
    T = rng.uniform(1, 700, n)
    x = rng.integers(0, 20, n)
    t_x = np.where(x > 0, rng.uniform(0, 1, n) * T, 0.0)
    features = _frame(x, t_x, T, mean=rng.uniform(5, 50, n))
    for name, params, expected in (
            ("pareto/nbd", {"r": 0.5, "alpha": 70.0, "s": 0.7, "beta": 90.0},
             paretonbd_expected_purchases),
            ("bg/nbd", {"r": 0.3, "alpha": 30.0, "a": 0.8, "b": 2.4}, bgnbd_expected_purchases)):
        out = predict_value(ValueModel(name, params, None), features, horizon_days=60,
                            clv_months=24, annual_discount_rate=0.07)
        monthly = 1.07 ** (1 / 12) - 1
        cum = [expected(params, MONTH * i, x, t_x, T) for i in range(25)]
        clv = sum(features["monetary_mean"].to_numpy() * (cum[i] - cum[i - 1])
                  / (1 + monthly) ** i for i in range(1, 25))
        np.testing.assert_allclose(out["clv"], clv, rtol=1e-10)
        np.testing.assert_allclose(out["expected_purchases"], expected(params, 60, x, t_x, T),
                                   rtol=1e-10)


# --- the fit: interior, fallbacks, notes ---------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_features() -> pd.DataFrame:
    from churnlens.datasets import load_cdnow_sample
    from churnlens.exceptions import DatasetNotAvailableError

    try:
        sample = load_cdnow_sample()
    except DatasetNotAvailableError as exc:  # the optional 'datasets' extra
        pytest.skip(f"CDNOW sample not installed: {exc}")
    return churnlens.compute_features(sample, dt.date(1997, 9, 30))


def test_fit_on_the_cdnow_sample_reproduces_the_published_models(cdnow_features):
    model = fit_value_model(cdnow_features, horizon_days=91)
    assert model.purchase_model == "pareto/nbd"
    p = model.purchase_params
    # Fader, Hardie and Lee (2005): r 0.55, alpha 10.58, s 0.61, beta 11.67 (weeks)
    assert p["r"] == pytest.approx(0.553, rel=0.01)
    assert p["alpha"] / 7 == pytest.approx(10.58, rel=0.01)
    assert p["s"] == pytest.approx(0.606, rel=0.01)
    assert p["beta"] / 7 == pytest.approx(11.67, rel=0.01)
    assert model.spend_params is not None
    assert model.spend_params["p"] == pytest.approx(6.25, rel=0.01)
    assert any("correlation of frequency and average spend" in n for n in model.notes)
    assert ValueModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    assert pickle.loads(pickle.dumps(model)) == model


def test_a_failed_pareto_fit_falls_back_to_bgnbd_and_says_so(cdnow_features, monkeypatch):
    def fail(self, features, y=None):
        raise ModelError("Pareto/NBD fit failed: forced by the test.")

    monkeypatch.setattr(ParetoNBDModel, "fit", fail)
    model = fit_value_model(cdnow_features, horizon_days=91)
    assert model.purchase_model == "bg/nbd"
    assert sorted(model.purchase_params) == ["a", "alpha", "b", "r"]
    assert any("Pareto/NBD fit failed" in n and "BG/NBD instead" in n for n in model.notes)
    out = predict_value(model, cdnow_features, horizon_days=91)
    assert np.isfinite(out[["p_alive", "expected_purchases", "clv"]].to_numpy()).all()


def test_a_pareto_fit_on_a_boundary_falls_back_and_says_which(cdnow_features, monkeypatch):
    real_fit = ParetoNBDModel.fit

    def on_boundary(self, features, y=None):
        real_fit(self, features, y)
        self.boundary_ = "no dropout (beta -> infinity): the NBD limit of Pareto/NBD"
        return self

    monkeypatch.setattr(ParetoNBDModel, "fit", on_boundary)
    model = fit_value_model(cdnow_features, horizon_days=91)
    assert model.purchase_model == "bg/nbd"
    assert any("on a boundary (no dropout" in n for n in model.notes)


def test_without_repeat_customers_the_spend_is_the_own_basket_and_notes_say_so():
    features = _frame([0] * 6, [0.0] * 6, [10.0, 40, 80, 120, 200, 300],
                      mean=[5.0, 10, 20, 40, 80, 160])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = fit_value_model(features, horizon_days=30)
    assert model.spend_params is None
    assert any("own mean basket" in n for n in model.notes)
    out = predict_value(model, features, horizon_days=30)
    np.testing.assert_allclose(out["expected_spend"],
                               out["expected_purchases"] * features["monetary_mean"])


def test_bad_arguments_are_refused():
    model = ValueModel("pareto/nbd", PARETO, None)
    features = _frame([0], [0.0], [0.0])
    with pytest.raises(ChurnlensError, match="clv_months"):
        predict_value(model, features, horizon_days=91, clv_months=0)
    with pytest.raises(ModelError, match="annual_discount_rate"):
        predict_value(model, features, horizon_days=91, annual_discount_rate=-0.1)
    with pytest.raises(ModelError, match="purchase_params"):
        ValueModel("pareto/nbd", {"r": 1.0, "alpha": 2.0}, None)
    with pytest.raises(ModelError, match="no finite mean"):
        ValueModel("pareto/nbd", PARETO, {"p": 6.0, "q": 0.9, "gamma": 15.0})
    with pytest.raises(ModelError, match="unreadable"):
        ValueModel.from_dict({"format": 99})
    with pytest.raises(ValueError):
        ValueSettings(annual_discount_rate=-1)
    assert ScoringSettings().value == ValueSettings(clv_months=12, annual_discount_rate=0.10)


# --- in the scores -----------------------------------------------------------------------

SEED = 11
FAST_MODEL = {"mlflow.enabled": False, "backtest_steps": 0, "snapshots.count": 6,
              "model.n_estimators": 40, "model.min_child_samples": 40,
              "model.early_stopping_rounds": 10}


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    print(f"synthetic transactions seed: {SEED}")
    raw = churnlens.generate_transactions(800, seed=SEED, start="2023-01-01",
                                          end="2024-06-30")
    return churnlens.load_transactions(raw).transactions


@pytest.fixture(scope="module")
def artifact(transactions):
    from churnlens._pipeline import train

    return train(transactions, as_of="2024-03-31",
                 settings=load_config(overrides=FAST_MODEL)).artifact


@pytest.mark.slow
def test_trained_model_carries_its_value_model_to_the_scorer(artifact, tmp_path):
    from churnlens._scorer import load_scorer

    model = artifact.full_model() if hasattr(artifact, "full_model") else artifact.model
    value = value_model_of(model)
    assert isinstance(value, ValueModel)
    scorer_form = value_model_of(artifact.model)
    assert scorer_form == value
    scorer = model.to_scorer()
    assert value_model_of(scorer) == value
    path = tmp_path / "scorer.npz"
    scorer.save(path)  # the pickle-free file: the value model as JSON in its metadata
    assert value_model_of(load_scorer(path.read_bytes())) == value


@pytest.mark.slow
def test_later_transactions_change_no_value_column(transactions, artifact):
    as_of = "2024-04-30"
    cut = transactions.loc[transactions["timestamp"] < pd.Timestamp("2024-05-01")]
    later = transactions.loc[transactions["timestamp"] >= pd.Timestamp("2024-05-01")]
    assert len(later)
    scored_cut = churnlens.score_customers(cut, as_of, artifact, reasons=False).scores
    scored_all = churnlens.score_customers(transactions, as_of, artifact,
                                           reasons=False).scores
    for column in OUTPUTS:
        np.testing.assert_array_equal(scored_all[column], scored_cut[column])
    assert scored_all["clv"].notna().all() and (scored_all["clv"] > 0).all()
    # the CLV settings are read from the scoring settings
    longer = churnlens.score_customers(
        transactions, as_of, artifact, reasons=False,
        settings=ScoringSettings(value=ValueSettings(clv_months=24))).scores
    assert (longer["clv"].to_numpy() > scored_all["clv"].to_numpy()).all()


@pytest.mark.slow
def test_a_model_without_value_model_scores_with_nan_and_the_heuristic(transactions,
                                                                         artifact):
    from churnlens._rules import heuristic_expected_value
    from churnlens._scoring import NO_VALUE_MODEL, SCORE_COLUMNS

    model = copy.copy(artifact.model)
    model.value_model_ = None  # as a scorer or model saved before issue 20
    old = dataclasses.replace(artifact, model=model)
    with pytest.warns(UserWarning, match="value model not recorded: retrain"):
        result = churnlens.score_customers(transactions, "2024-04-30", old, reasons=False)
    scores = result.scores
    assert [c for c in SCORE_COLUMNS if c in scores.columns] == list(scores.columns)
    assert scores[list(VALUE_COLUMNS)].isna().all().all()
    np.testing.assert_array_equal(scores["expected_value"],
                                  heuristic_expected_value(result.features, 91))
    np.testing.assert_array_equal(scores["value_at_risk"],
                                  scores["churn_risk"] * scores["expected_value"])
    assert "retrain" in NO_VALUE_MODEL

