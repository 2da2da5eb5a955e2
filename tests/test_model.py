"""Model tests: the estimator contract of ChurnModel and the baselines, and the
behaviour of a trained churn model on small synthetic snapshots (style.md, 6).

Data: ``generate_transactions(3000, seed=SEED)``; snapshots at 12 monthly cutoffs
ending ``AS_OF - HORIZON``, labels observed until ``AS_OF``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import churnlens
from churnlens._model import ChurnModel, LogisticBaseline, RecencyBaseline
from churnlens._training import fit_models, snapshot_cutoffs
from churnlens.exceptions import DataValidationError, NotFittedError

SEED = 11
N_CUSTOMERS = 3000
AS_OF = dt.date(2024, 6, 30)
HORIZON = 91
print(f"test_model: generate_transactions({N_CUSTOMERS}, seed={SEED}), as of {AS_OF}")


@dataclasses.dataclass
class Data:
    history: pd.DataFrame  # clean transactions up to AS_OF
    snapshots: pd.DataFrame  # training snapshots, churned observed
    features: pd.DataFrame  # features at AS_OF, sorted by customer_id


@pytest.fixture(scope="module")
def data() -> Data:
    clean = churnlens.load_transactions(
        churnlens.generate_transactions(N_CUSTOMERS, seed=SEED)).transactions
    history = clean.loc[clean["timestamp"] < pd.Timestamp(AS_OF) + pd.Timedelta(days=1)]
    cutoffs = snapshot_cutoffs(AS_OF, HORIZON, every="month", count=12,
                               first_day=history["timestamp"].min().date())
    snapshots = churnlens.build_snapshots(history, cutoffs, horizon_days=HORIZON,
                                          observed_until=AS_OF)
    snapshots = (snapshots.loc[snapshots["churned"].notna()]
                 .sort_values(["cutoff", "customer_id"]).reset_index(drop=True))
    return Data(history=history, snapshots=snapshots, features=_features_at(history, AS_OF))


def _features_at(history: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    return (churnlens.compute_features(history, as_of)
            .sort_values("customer_id").reset_index(drop=True))


def _fit(data: Data, **params: object) -> ChurnModel:
    # The blend itself, whatever the held-out comparison with BG/NBD alone says (that
    # choice has its own tests in test_model_support.py).
    params.setdefault("select_blend", False)
    model = ChurnModel(horizon_days=HORIZON, random_state=3, **params)
    return model.fit(data.snapshots, data.snapshots["churned"].astype(int), as_of=AS_OF,
                     reference=data.features)


@pytest.fixture(scope="module")
def model(data: Data) -> ChurnModel:
    return _fit(data)


def _risk(model: object, frame: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(frame)[:, 1]  # type: ignore[attr-defined]


# --- estimator contract ------------------------------------------------------------


ESTIMATORS = [
    ChurnModel(horizon_days=30, n_estimators=10, logistic_weight=0.25, calibration="isotonic",
               recency_half_life_snapshots=3.0, use_bgnbd=False, n_jobs=1),
    RecencyBaseline(feature="recency_days"),
    LogisticBaseline(feature_names=["frequency", "recency_days"], C=0.5, random_state=4),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_init_only_stores_arguments_and_clone_works(estimator: object) -> None:
    params = estimator.get_params()  # type: ignore[attr-defined]
    rebuilt = type(estimator)(**params)
    assert vars(rebuilt) == params  # nothing but the arguments, unchanged
    assert not [a for a in vars(rebuilt) if a.endswith("_")]
    copy = clone(estimator)
    assert copy.get_params() == params and copy is not estimator


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_predict_before_fit_is_not_fitted_error(estimator: object, data: Data) -> None:
    with pytest.raises(NotFittedError, match=r"not fitted yet.*fit"):
        estimator.predict_proba(data.features)  # type: ignore[attr-defined]
    # NotFittedError is an AttributeError: sklearn-style hasattr checks keep working.
    assert issubclass(NotFittedError, AttributeError)


def test_churn_model_methods_need_fit(data: Data) -> None:
    unfitted = ChurnModel()
    for call in (unfitted.raw_score, unfitted.contributions, unfitted.model_inputs,
                 unfitted.predict):
        with pytest.raises(NotFittedError):
            call(data.features)
    assert not hasattr(unfitted, "feature_importances_")


def test_fit_returns_self_with_learned_state(data: Data, model: ChurnModel) -> None:
    assert isinstance(model, ChurnModel)
    assert model.horizon_days_ == HORIZON and model.as_of_ == AS_OF
    assert model.classes_.tolist() == [0, 1]
    assert model.n_features_in_ == len(model.feature_names_)
    assert model.feature_names_[-2:] == ["bgnbd_p_alive", "bgnbd_p_purchase"]
    assert "customer_id" not in model.feature_names_
    assert model.training_cutoffs_ == sorted(data.snapshots["cutoff"].dt.date.unique())
    # the latest cutoff is held out for early stopping, never mixed into training
    latest = data.snapshots["cutoff"].max()
    assert model.n_validation_rows_ == int((data.snapshots["cutoff"] == latest).sum())
    assert model.n_training_rows_ + model.n_validation_rows_ == len(data.snapshots)
    assert 1 <= model.best_iteration_ <= model.n_estimators
    for baseline in (RecencyBaseline(), LogisticBaseline()):
        assert baseline.fit(data.snapshots, data.snapshots["churned"].astype(int)) is baseline


@pytest.mark.parametrize(("params", "message"), [
    ({"calibration": "platt"},
     r"calibration='platt' \(allowed: one of 'none', 'isotonic', 'sigmoid'\)"),
    ({"logistic_weight": 2}, r"logistic_weight=2 \(allowed: a number in \[0, 1\]\)"),
    ({"n_estimators": 0}, r"n_estimators=0 \(allowed: an integer >= 1\)"),
    ({"learning_rate": -0.1}, r"learning_rate=-0.1 \(allowed: a number in \(0, 1\]\)"),
    ({"num_leaves": 1}, r"num_leaves=1 \(allowed: an integer >= 2\)"),
    ({"subsample": 1.5}, r"subsample=1.5"),
    ({"recency_half_life_snapshots": -1}, r"recency_half_life_snapshots=-1 \(allowed: None"),
    ({"n_jobs": 0}, r"n_jobs=0 \(allowed: None \(automatic\) or an integer >= 1\)"),
    ({"horizon_days": "91"}, r"horizon_days='91'"),
    ({"use_bgnbd": "yes"}, r"use_bgnbd='yes' \(allowed: True or False\)"),
])
def test_bad_parameters_are_refused_with_the_allowed_values(
    data: Data, params: dict, message: str
) -> None:
    with pytest.raises(DataValidationError, match=f"invalid ChurnModel parameter.*{message}"):
        ChurnModel(**params).fit(data.snapshots, data.snapshots["churned"].astype(int))


def test_every_problem_is_listed_at_once(data: Data) -> None:
    with pytest.raises(DataValidationError) as info:
        ChurnModel(n_estimators=-5, calibration="x", subsample=0).fit(
            data.snapshots, data.snapshots["churned"].astype(int))
    for name in ("n_estimators=-5", "calibration='x'", "subsample=0"):
        assert name in str(info.value)


def test_bad_inputs_have_clear_errors(data: Data) -> None:
    frame, labels = data.snapshots, data.snapshots["churned"].astype(int)
    with pytest.raises(DataValidationError, match="missing values"):
        ChurnModel().fit(frame, frame["churned"].astype(float).where(frame.index > 0))
    with pytest.raises(DataValidationError, match="single class"):
        ChurnModel().fit(frame, np.zeros(len(frame), dtype=int))
    one_cutoff = frame.loc[frame["cutoff"] == frame["cutoff"].max()]
    with pytest.raises(DataValidationError, match=r"1 cutoff.*held out"):
        ChurnModel().fit(one_cutoff, one_cutoff["churned"].astype(int))
    with pytest.raises(DataValidationError, match="pandas DataFrame"):
        RecencyBaseline().fit(frame[["recency_days"]].to_numpy(), labels)


# --- behaviour of a trained model ---------------------------------------------------


def test_risk_rises_as_time_passes_without_a_purchase(data: Data, model: ChurnModel) -> None:
    """Score the same histories (nothing after AS_OF) at later and later as-of dates."""
    previous = _risk(model, data.features)
    for days in (30, 90, 180):
        later = _features_at(data.history, AS_OF + dt.timedelta(days=days))
        assert later["customer_id"].tolist() == data.features["customer_id"].tolist()
        risk = _risk(model, later)
        rising = risk >= previous - 1e-3
        assert rising.mean() >= 0.97, f"+{days} d: only {rising.mean():.1%} non-decreasing"
        assert risk.mean() > previous.mean() + 0.02, f"+{days} d: mean risk did not rise"
        previous = risk


def test_just_bought_is_less_at_risk_than_a_year_later(data: Data, model: ChurnModel) -> None:
    recent = data.features.loc[data.features["recency_days"] <= 7]
    later = _features_at(data.history, AS_OF + dt.timedelta(days=365))
    later = later.set_index("customer_id").loc[recent["customer_id"]].reset_index()
    assert len(recent) > 50
    assert (_risk(model, later) > _risk(model, recent)).all()


def test_risk_does_not_depend_on_the_customer_id(data: Data, model: ChurnModel) -> None:
    expected = _risk(model, data.features)
    # The same rows under other ids (integers instead of text), in another order.
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(data.features))
    renamed = data.features.iloc[order].assign(
        customer_id=np.arange(len(data.features))[order] * 7 + 1_000_003)
    np.testing.assert_array_equal(_risk(model, renamed), expected[order])
    # And through the whole feature computation, from renamed transactions.
    mapping = {c: f"Z{i:06d}" for i, c in enumerate(reversed(sorted(data.history[
        "customer_id"].unique())))}
    history = data.history.assign(customer_id=data.history["customer_id"].map(mapping))
    recomputed = churnlens.compute_features(history, AS_OF)
    recomputed["customer_id"] = recomputed["customer_id"].map({v: k for k, v in mapping.items()})
    recomputed = recomputed.sort_values("customer_id").reset_index(drop=True)
    # DuckDB adds floats in a run-dependent order (last-bit differences in spend
    # sums), so this path is equal to rounding, not bitwise.
    np.testing.assert_allclose(_risk(model, recomputed), expected, rtol=0, atol=1e-9)


def test_a_model_trained_on_other_ids_is_the_same_model(data: Data, model: ChurnModel) -> None:
    """Integer ids are numeric columns too: they must never become a feature."""
    codes = {c: i * 13 + 5 for i, c in enumerate(sorted(data.history["customer_id"].unique()))}
    snapshots = data.snapshots.assign(customer_id=data.snapshots["customer_id"].map(codes))
    features = data.features.assign(customer_id=data.features["customer_id"].map(codes))
    other = ChurnModel(horizon_days=HORIZON, random_state=3, select_blend=False).fit(
        snapshots, snapshots["churned"].astype(int), as_of=AS_OF, reference=features)
    assert other.feature_names_ == model.feature_names_
    np.testing.assert_array_equal(_risk(other, features), _risk(model, data.features))


def test_training_twice_with_the_same_seed_gives_identical_predictions(
    data: Data, model: ChurnModel
) -> None:
    again = _fit(data)
    assert again.best_iteration_ == model.best_iteration_
    np.testing.assert_array_equal(_risk(again, data.features), _risk(model, data.features))
    other_seed = ChurnModel(horizon_days=HORIZON, random_state=4, select_blend=False).fit(
        data.snapshots, data.snapshots["churned"].astype(int), reference=data.features)
    assert not np.array_equal(_risk(other_seed, data.features), _risk(model, data.features))


def test_fit_models_twice_gives_the_same_model(data: Data) -> None:
    """The feature engine returns rows in no fixed order; training must not care."""
    from churnlens._config import Settings

    settings = Settings(model={"n_jobs": 1})
    first = fit_models(data.history, AS_OF, settings)
    second = fit_models(data.history, AS_OF, settings)
    assert first.churnlens.best_iteration_ == second.churnlens.best_iteration_
    # DuckDB's float sums differ in the last bit from run to run (see above); through
    # the L-BFGS fit of the logistic part (tolerance 1e-4) that moves risks by up to
    # a few 1e-6 (measured), far below anything that matters. Without a canonical row
    # order the best iteration itself changed from run to run (84 vs 91, 32 vs 87).
    np.testing.assert_allclose(_risk(second.churnlens, second.features),
                               _risk(first.churnlens, first.features), rtol=0, atol=2e-5)


def test_contributions_sum_to_the_blended_log_odds(data: Data, model: ChurnModel) -> None:
    sample = data.features.head(300)
    contributions = model.contributions(sample)
    assert list(contributions.columns) == [*model.feature_names_, "bias"]
    assert contributions.index.equals(sample.index)
    raw = model.raw_score(sample)
    np.testing.assert_allclose(contributions.sum(axis=1), np.log(raw / (1 - raw)),
                               rtol=0, atol=1e-8)
    # and the uncalibrated model's risk is exactly that raw score
    np.testing.assert_array_equal(_risk(model, sample), raw)


def test_contributions_without_logistic_or_bgnbd(data: Data) -> None:
    trees_only = _fit(data, logistic_weight=0.0, use_bgnbd=False, n_estimators=60)
    sample = data.features.head(200)
    raw = trees_only.raw_score(sample)
    np.testing.assert_allclose(trees_only.contributions(sample).sum(axis=1),
                               np.log(raw / (1 - raw)), rtol=0, atol=1e-8)
    assert "bgnbd_p_purchase" not in trees_only.feature_names_


# Read by BG/NBD together (a customer's history): drawn as whole rows.
_HISTORY = ("customer_id", "as_of", "repeat_frequency", "t_x_days", "tenure_days")


def _random_features(data: Data, rows: int, seed: int) -> pd.DataFrame:
    """Random feature rows: the history columns BG/NBD reads from one observed customer,
    every other column from another (new combinations), with 10% of each float column
    missing."""
    rng = np.random.default_rng(seed)
    print(f"random features: {rows} rows, seed {seed}")
    n = len(data.features)
    whole = rng.integers(0, n, size=rows)
    out = {}
    for name in data.features.columns:
        values = data.features[name].to_numpy()
        if name in _HISTORY:
            out[name] = values[whole]
            continue
        column = values[rng.integers(0, n, size=rows)]
        if column.dtype.kind == "f":
            column = np.where(rng.random(rows) < 0.1, np.nan, column)
        out[name] = column
    return pd.DataFrame(out, index=pd.RangeIndex(100, 100 + rows))


@pytest.mark.parametrize("rows", [1, 37, 128, 129, 5000])  # every path of the trees' pass
def test_explain_adds_up_to_the_log_odds_and_gives_predict_probas_risk(
    data: Data, model: ChurnModel, rows: int
) -> None:
    X = _random_features(data, rows, seed=rows)
    explanation = model.explain(X)
    assert explanation.feature_names == model.feature_names_
    assert explanation.contributions.shape == (rows, len(model.feature_names_) + 1)
    np.testing.assert_allclose(explanation.contributions.sum(axis=1),
                               model.decision_function(X), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(explanation.log_odds, model.decision_function(X))
    np.testing.assert_array_equal(explanation.churn_risk, _risk(model, X))  # bit for bit
    frame = explanation.contributions_frame()
    assert list(frame.columns) == [*model.feature_names_, "bias"]
    assert frame.index.equals(X.index)
    # the values read are the model's inputs (BG/NBD's included)
    inputs = model.model_inputs(X)[model.feature_names_].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(explanation.feature_values, inputs)


@pytest.mark.parametrize("rows", [1, 64, 3000])
def test_explain_tree_part_is_lightgbms_pred_contrib(data: Data, rows: int) -> None:
    trees_only = _fit(data, logistic_weight=0.0, use_bgnbd=False, n_estimators=60)
    X = _random_features(data, rows, seed=7)
    matrix = X[trees_only.feature_names_].to_numpy(dtype=np.float64)
    expected = trees_only.booster_.booster_.predict(matrix, pred_contrib=True)
    np.testing.assert_allclose(trees_only.explain(X).contributions, expected, rtol=0,
                               atol=1e-12)


def test_explain_credits_bgnbd_relative_to_the_center(data: Data, model: ChurnModel) -> None:
    X = _random_features(data, 200, seed=3)
    offset = model.bgnbd_offset(X)
    assert np.isfinite(offset).all()
    k = model.feature_names_.index("bgnbd_p_purchase")
    default = model.explain(X)
    centered = model.explain(X, offset_center=1.25)
    w = 1.0 - model.logistic_weight
    moved = default.contributions - centered.contributions
    np.testing.assert_allclose(moved[:, k], w * (1.25 - offset.mean()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(moved[:, -1], -w * (1.25 - offset.mean()), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.delete(moved, [k, moved.shape[1] - 1], axis=1), 0.0)
    np.testing.assert_array_equal(centered.churn_risk, default.churn_risk)
    # a row's explanation does not depend on the rows explained with it, given the center
    alone = model.explain(X.iloc[[17]], offset_center=1.25)
    np.testing.assert_allclose(alone.contributions[0], centered.contributions[17], rtol=0,
                               atol=1e-12)


def test_explain_checks_that_the_model_is_fitted(data: Data) -> None:
    with pytest.raises(NotFittedError):
        ChurnModel().explain(data.features.head(3))


def test_risks_are_probabilities_and_predict_thresholds_them(
    data: Data, model: ChurnModel
) -> None:
    proba = model.predict_proba(data.features)
    assert proba.shape == (len(data.features), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_array_equal(model.predict(data.features), (proba[:, 1] >= 0.5).astype(int))


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_post_hoc_calibration_is_monotone_in_the_raw_score(data: Data, method: str) -> None:
    calibrated = _fit(data, calibration=method, n_estimators=60)
    raw = calibrated.raw_score(data.features)
    risk = _risk(calibrated, data.features)
    order = np.argsort(raw, kind="stable")
    assert (np.diff(risk[order]) >= -1e-12).all()
    assert not np.array_equal(risk, raw)


def test_recency_baseline_is_monotone_in_recency(data: Data) -> None:
    baseline = RecencyBaseline().fit(data.snapshots, data.snapshots["churned"].astype(int))
    grid = pd.DataFrame({"recency_days": np.arange(0, 800, 3)})
    risk = _risk(baseline, grid)
    assert (np.diff(risk) >= 0).all()
    assert risk[-1] - risk[0] > 0.3  # it learned something, not a flat line
    # it uses recency only: the other columns do not matter
    shuffled = data.features.assign(frequency=data.features["frequency"].sample(
        frac=1, random_state=SEED).to_numpy())
    np.testing.assert_array_equal(_risk(baseline, shuffled), _risk(baseline, data.features))


def test_logistic_baseline_handles_missing_features(data: Data) -> None:
    labels = data.snapshots["churned"].astype(int)
    nan_columns = [c for c in ("gap_mean_days", "gap_std_days", "overdue_ratio")
                   if data.snapshots[c].isna().any()]
    assert nan_columns, "the synthetic snapshots should have undefined gap features"
    baseline = LogisticBaseline().fit(data.snapshots, labels)
    assert set(nan_columns) <= set(baseline.feature_names_)
    risk = _risk(baseline, data.features)
    assert np.isfinite(risk).all()
    # an all-NaN row (imputed to the training medians) still gets a valid risk
    empty = data.features.head(3).copy()
    empty[baseline.feature_names_] = np.nan
    assert np.isfinite(_risk(baseline, empty)).all()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, _risk(baseline, data.snapshots)) > 0.75


def test_missing_feature_columns_are_named(data: Data, model: ChurnModel) -> None:
    with pytest.raises(DataValidationError, match=r"lacks 1 feature.*spend_90d"):
        model.predict_proba(data.features.drop(columns=["spend_90d"]))


def test_fitted_model_survives_pickling(data: Data, model: ChurnModel) -> None:
    import pickle

    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(_risk(restored, data.features), _risk(model, data.features))


@pytest.mark.parametrize("rows", [3, 5000])
def test_explain_trees_without_a_split_give_float_contributions(rows: int) -> None:
    # A booster whose trees never split (too few rows per leaf to split anywhere), as
    # LightGBM grows on a tiny or constant training set: every contribution goes to the
    # bias. The across-trees path (few rows) summed nothing with bincount and got an
    # integer array back, which then failed when scaled in place (bench_quality
    # --quick, regime "growing").
    import lightgbm as lgb

    from churnlens._contributions import tree_contributions

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (rng.random(60) < 0.3).astype(float)
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 100,
                         "min_data_in_bin": 1}, lgb.Dataset(X, y), num_boost_round=3)
    matrix = rng.normal(size=(rows, 4))
    values, raw = tree_contributions(booster).explain(matrix)
    assert values.dtype == np.float64
    expected = booster.predict(matrix, pred_contrib=True)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(raw, booster.predict(matrix, raw_score=True))
    values *= 0.5  # the in-place scaling credit_blend does
