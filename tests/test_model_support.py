"""Issue 15: the support guard, the BG/NBD fallback, the measured level error and the
short-history warning (README, "A model that holds on any purchase log")."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnlens._artifact import ModelArtifact
from churnlens._bgnbd import boundary_issue
from churnlens._config import Settings
from churnlens._evaluation import SAMPLING_ONLY, WITH_LEVEL_ERROR, predict_retention
from churnlens._model import (
    SUPPORT_RATIO,
    _level_error,
    _paired_auc,
    _signed_log1p,
    _unsupported_inputs,
)
from churnlens._synthetic import generate_transactions
from churnlens._training import backtest, fit_models

HORIZON = 91
LOG_START = pd.Timestamp("2023-01-01")


# --- the guard: golden and randomized -------------------------------------------------


def test_an_input_constant_in_training_is_dropped_and_a_wide_one_too() -> None:
    rng = np.random.default_rng(0)
    train = np.column_stack([np.ones(200), rng.normal(size=200), rng.normal(size=200)])
    z = rng.normal(size=200)
    z = (z - z.mean()) / z.std()  # spread exactly 1

    def widened(column: np.ndarray, factor: float) -> np.ndarray:
        # values whose signed log has exactly `factor` times the column's spread
        return np.sign(z) * np.expm1(np.abs(z) * factor * _signed_log1p(column).std())

    reference = np.column_stack([z, widened(train[:, 1], 5.0), widened(train[:, 2], 3.0)])
    dropped = _unsupported_inputs(["flat", "wide", "fine"], train, reference)
    assert [d["feature"] for d in dropped] == ["flat", "wide"]
    assert dropped[0]["ratio"] is None and "constant" in dropped[0]["reason"]
    assert dropped[1]["ratio"] == pytest.approx(5.0, rel=0.2)
    assert f"limit {SUPPORT_RATIO:g}x" in dropped[1]["reason"]


@pytest.mark.parametrize("seed", range(5))
def test_the_guard_matches_a_plain_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 6
    train = rng.normal(size=(300, k)) * rng.uniform(0, 3, size=k)
    train[:, 0] = 2.5
    reference = rng.normal(size=(100, k)) * rng.uniform(0, 12, size=k)
    reference[rng.random(reference.shape) < 0.1] = np.nan
    names = [f"x{j}" for j in range(k)]
    expected = []
    for j in range(k):
        a = [math.copysign(math.log1p(abs(v)), v) for v in train[:, j] if not math.isnan(v)]
        b = [math.copysign(math.log1p(abs(v)), v) for v in reference[:, j] if not math.isnan(v)]
        sa, sb = float(np.std(a)), float(np.std(b))
        if sa <= 1e-9 or sb > SUPPORT_RATIO * sa:
            expected.append(names[j])
    assert [d["feature"] for d in _unsupported_inputs(names, train, reference)] == expected


# --- DeLong's paired AUC difference ---------------------------------------------------


def test_paired_auc_golden() -> None:
    # 2 positives, 2 negatives. a ranks perfectly (AUC 1); b gets 3 of 4 pairs right.
    labels = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.8, 0.2, 0.1])
    b = np.array([0.9, 0.3, 0.4, 0.1])
    auc_a, auc_b, se = _paired_auc(labels, a, b)
    assert (auc_a, auc_b) == (1.0, 0.75)
    # placements of positives: a (1, 1), b (1, 0.5); of negatives: a (1, 1), b (0.5, 1)
    # var(diff) = var_pos(0, 0.5) / 2 + var_neg(0.5, 0) / 2 with sample variances 0.125
    assert se == pytest.approx(math.sqrt(0.125 / 2 + 0.125 / 2))


def test_paired_auc_standard_error_matches_a_bootstrap() -> None:
    rng = np.random.default_rng(1)
    n = 1500
    labels = rng.integers(0, 2, n)
    a = labels + rng.normal(size=n) * 1.5
    b = labels + 0.5 * (a - labels) + rng.normal(size=n)
    auc_a, auc_b, se = _paired_auc(labels, a, b)
    assert auc_a == pytest.approx(roc_auc_score(labels, a))
    assert auc_b == pytest.approx(roc_auc_score(labels, b))
    diffs = []
    for _ in range(400):
        idx = rng.integers(0, n, n)
        diffs.append(roc_auc_score(labels[idx], b[idx]) - roc_auc_score(labels[idx], a[idx]))
    assert se == pytest.approx(float(np.std(diffs)), rel=0.15)


# --- level error and the widened interval ---------------------------------------------


def test_level_error_golden() -> None:
    # two cutoffs; at each, two active customers (recency < 91) and one inactive
    cuts = np.array(["2024-01-01"] * 3 + ["2024-02-01"] * 3, dtype="datetime64[ns]")
    X = pd.DataFrame({"recency_days": [10, 20, 200, 10, 20, 200]})
    labels = np.array([0, 1, 1, 0, 0, 0])
    risk = np.array([0.5, 0.5, 0.9, 0.2, 0.2, 0.6])
    level = _level_error(cuts, X, labels, risk, HORIZON)
    # cutoff 1: predicted stay 1.0 of 2 active vs 1 actual -> 0 points; CRR: (1.0 + 0.1 -
    # 1) / 2 = +5 points. cutoff 2: 1.6 vs 2 -> -20 points; CRR (1.6 + 0.4 - 3) / 2 = -50.
    assert level["cohort_retention_errors"] == pytest.approx([0.0, -20.0])
    assert level["crr_errors"] == pytest.approx([5.0, -50.0])
    assert level["rms_cohort_retention"] == pytest.approx(math.sqrt(200.0))
    # Student's t(0.975, 2) = 4.302652729911275
    assert level["half_width_cohort_retention"] == pytest.approx(
        4.302652729911275 * math.sqrt(200.0))
    assert level["n_cutoffs"] == 2


def test_the_interval_adds_the_level_error_in_quadrature() -> None:
    recency = [10, 20, 30, 40]
    risk = [0.2, 0.4, 0.6, 0.8]
    plain = predict_retention(recency, risk, window_days=HORIZON)
    assert plain.interval_covers == SAMPLING_ONLY
    wide = predict_retention(recency, risk, window_days=HORIZON, level_error={
        "half_width_cohort_retention": 10.0, "half_width_crr": 20.0})
    assert wide.interval_covers == WITH_LEVEL_ERROR
    sampling = 1.959963984540054 * math.sqrt(0.16 + 0.24 + 0.24 + 0.16)  # customers
    half = math.hypot(sampling, 0.10 * 4)
    assert wide.cohort_retention == plain.cohort_retention == pytest.approx(50.0)
    assert wide.cohort_retention_high == pytest.approx((2.0 + half) / 4 * 100)
    assert wide.crr_low == pytest.approx((2.0 - math.hypot(sampling, 0.20 * 4)) / 4 * 100)
    # unknown level error (NaN, None) leaves the sampling interval
    same = predict_retention(recency, risk, window_days=HORIZON, level_error={
        "half_width_cohort_retention": float("nan"), "half_width_crr": None})
    assert same == plain


# --- BG/NBD's boundary ------------------------------------------------------------------


def test_boundary_fits_are_named() -> None:
    assert boundary_issue((0.24, 4.4, 0.79, 2.4)) is None
    assert "no dropout" in str(boundary_issue((0.9, 24.0, 1e-9, 7e4)))
    assert "one dropout probability" in str(boundary_issue((0.8, 20.0, 6e6, 6e7)))
    assert "purchase rates" in str(boundary_issue((1e-6, 20.0, 1.0, 5.0)))


# --- on a log that starts mid-life ----------------------------------------------------


@pytest.fixture(scope="module")
def truncated() -> pd.DataFrame:
    tx = generate_transactions(8000, seed=11, start="2021-01-01", end="2024-12-31")
    return tx.loc[tx["timestamp"] >= LOG_START].reset_index(drop=True)


def _as_of(days_after_start: int) -> dt.date:
    """The as-of date whose latest training cutoff is this many days after the start."""
    return (LOG_START + pd.Timedelta(days=days_after_start + HORIZON)).date()


@pytest.mark.slow
def test_a_left_truncated_log_does_not_lose_to_bgnbd(truncated: pd.DataFrame) -> None:
    result = backtest(truncated, [_as_of(90), _as_of(182)], Settings())
    for run in result.runs:
        models = run["models"]
        assert models["churnlens"]["auc"] >= models["bgnbd"]["auc"] - 0.005, run["as_of"]
        # the model says what it did not use and why, in the backtest document
        notes = run["fitted"].churnlens
        assert notes.dropped_inputs_, run["as_of"]
        assert any("rate_trend" in d["feature"] for d in notes.dropped_inputs_)
    document = result.to_dict()
    assert all(run["model"]["dropped_inputs"] for run in document["runs"])


@pytest.mark.slow
def test_dropped_inputs_contribute_nothing_and_the_card_lists_them(
        truncated: pd.DataFrame) -> None:
    fitted = fit_models(truncated, _as_of(90), Settings().with_overrides(
        {"model.select_blend": False}))
    model = fitted.churnlens
    dropped = [d["feature"] for d in model.dropped_inputs_]
    assert dropped
    explanation = model.explain(fitted.features)
    logistic = model.logistic_.named_steps["logisticregression"]
    for name in dropped:
        assert logistic.coef_[0, model.feature_names_.index(name)] == 0.0
    # the dropped inputs' values at scoring do not move the linear part at all
    shaken = fitted.features.copy()
    for name in dropped:
        if name in shaken:
            shaken[name] = shaken[name] * 1000 + 7
    matrix = model._inputs_matrix(fitted.features)[0]
    shaken_matrix = model._inputs_matrix(shaken)[0]
    np.testing.assert_array_equal(model.logistic_.decision_function(matrix),
                                  model.logistic_.decision_function(shaken_matrix))
    assert np.isfinite(explanation.log_odds).all()
    card = ModelArtifact(model=model, horizon_days=HORIZON, as_of=fitted.as_of,
                         windows_days=tuple(Settings().features.windows_days)).card()
    listed = card["self_assessment"]["dropped_inputs"]
    assert [d["feature"] for d in listed] == dropped
    assert all(d["reason"] for d in listed)
    # and the scoring form keeps the same self-assessment
    scorer = model.to_scorer()
    assert [d["feature"] for d in scorer.dropped_inputs_] == dropped
    assert scorer.warnings_ == model.warnings_


@pytest.mark.slow
def test_the_short_history_warning_appears_only_where_it_should(
        truncated: pd.DataFrame) -> None:
    settings = Settings()
    short = fit_models(truncated, _as_of(182), settings)
    assert short.churnlens.short_history_
    assert any("no full season of history" in w for w in short.warnings)
    long = fit_models(truncated, dt.date(2024, 9, 30), settings)
    assert long.churnlens.history_days_ >= 365 + HORIZON
    assert not long.churnlens.short_history_
    assert not any("no full season" in w for w in long.warnings)


@pytest.mark.slow
def test_when_the_blend_is_not_better_the_model_is_bgnbd_alone(
        truncated: pd.DataFrame) -> None:
    fitted = fit_models(truncated, dt.date(2024, 3, 31), Settings())
    model = fitted.churnlens
    selection = model.selection_
    assert selection["chosen"] in ("blend", "bgnbd")
    assert selection["z"] == pytest.approx(
        (selection["held_out_auc_blend"] - selection["held_out_auc_bgnbd"])
        / selection["difference_se"])
    features = fitted.features
    if selection["chosen"] == "bgnbd":
        np.testing.assert_allclose(model.predict_proba(features)[:, 1],
                                   fitted.baselines["bgnbd"].predict_churn_risk(features),
                                   rtol=0, atol=1e-6)  # both clipped to [1e-6, 1 - 1e-6]
        assert any("BG/NBD alone" in w for w in model.warnings_)
    forced = fit_models(truncated, dt.date(2024, 3, 31), Settings().with_overrides(
        {"model.select_blend": False})).churnlens
    assert forced.selection_["chosen"] == "blend"
    # the scoring form gives the same numbers in both cases
    for m in (model, forced):
        np.testing.assert_array_equal(m.to_scorer().predict_proba(features),
                                      m.predict_proba(features))


def test_the_blend_needs_a_clear_held_out_gain_and_a_comparable_bgnbd() -> None:
    from churnlens._model import SELECTION_Z, _select_blend

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 4000)
    weak = labels + rng.normal(size=4000) * 3.0     # BG/NBD alone
    strong = labels + rng.normal(size=4000) * 1.0   # a clearly better blend
    tied = weak + rng.normal(size=4000) * 0.01      # the same ranking, up to noise
    clear = _select_blend(labels, weak, strong, enabled=True)
    assert clear["chosen"] == "blend" and clear["z"] > SELECTION_Z
    assert _select_blend(labels, weak, tied, enabled=True)["chosen"] == "bgnbd"
    assert _select_blend(labels, weak, tied, enabled=False)["chosen"] == "blend"
    # a held-out BG/NBD on its boundary is not the scoring one: BG/NBD alone
    unlike = _select_blend(labels, weak, strong, enabled=True,
                           held_out_bgnbd_on_boundary=True)
    assert unlike["chosen"] == "bgnbd"
    both = _select_blend(labels, weak, strong, enabled=True,
                         held_out_bgnbd_on_boundary=True, scoring_bgnbd_on_boundary=True)
    assert both["chosen"] == "blend"


def test_the_disagreement_with_bgnbd_widens_the_level_half_width() -> None:
    from churnlens._model import _with_disagreement

    reference = pd.DataFrame({"recency_days": [10, 20, 300, 400]})
    risk = np.array([0.2, 0.4, 0.9, 0.9])
    bgnbd_risk = np.array([0.4, 0.6, 0.8, 0.9])
    level = {"half_width_cohort_retention": 3.0, "half_width_crr": 4.0}
    out = _with_disagreement(level, reference, risk, bgnbd_risk, HORIZON)
    # active: the first two. Model keeps 1.4 of 2, BG/NBD 1.0: +20 points; CRR adds the
    # inactive ones: model 1.6, BG/NBD 1.3 of the 2 active -> +15 points
    assert out["disagreement_cohort_retention"] == pytest.approx(20.0)
    assert out["disagreement_crr"] == pytest.approx(15.0)
    assert out["half_width_cohort_retention"] == pytest.approx(math.hypot(3.0, 20.0))
    assert out["half_width_crr"] == pytest.approx(math.hypot(4.0, 15.0))
    assert level == {"half_width_cohort_retention": 3.0, "half_width_crr": 4.0}


@pytest.mark.slow
def test_the_scoring_summary_carries_the_short_history_warning(
        truncated: pd.DataFrame) -> None:
    from churnlens._report import outlook_section
    from churnlens._scoring import score_customers

    settings = Settings()
    for as_of, short in ((_as_of(182), True), (dt.date(2024, 9, 30), False)):
        fitted = fit_models(truncated, as_of, settings)
        artifact = ModelArtifact(model=fitted.churnlens, horizon_days=HORIZON, as_of=as_of,
                                 windows_days=tuple(settings.features.windows_days))
        summary = score_customers(truncated, as_of, artifact, reasons=False).summary
        warned = any("no full season of history" in w for w in summary["model_warnings"])
        assert warned is short, as_of
        assert summary["model_warnings"] == fitted.churnlens.warnings_
        # the report's outlook says it too, and the interval says what it covers
        _, captions = outlook_section(summary)
        assert any("no full season of history" in c for c in captions.values()) is short
        pairing = {row["rate"]: row for row in summary["pairing"]}
        assert "level error" in pairing["cohort_retention"]["interval_covers"]
