"""Categorical features in the churn model (issue 21: customer attributes).

A pandas ``Categorical`` column is split on natively by LightGBM (its codes among the
training categories), not read by the logistic part, explained exactly by the tabulated
trees (categorical splits included) and scored bit for bit by the pickle-free scorer.

Data: ``generate_transactions(1500, seed=SEED)``; snapshots at 8 monthly cutoffs ending
``AS_OF - HORIZON``; a ``plan`` attribute drawn from the customer id's hash, made to
matter by turning a share of the ``gold`` customers' churn labels into "retained".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from snapshot_support import labelled_history

import churnlens
from churnlens._contributions import TreeContributions
from churnlens._model import (
    ChurnModel,
    LogisticBaseline,
    default_feature_names,
    numeric_feature_names,
)
from churnlens._scorer import category_codes, load_scorer

SEED = 11
AS_OF = dt.date(2024, 6, 30)
HORIZON = 91
PLANS = ["basic", "gold", "silver"]
print(f"test_model_categorical: generate_transactions(1500, seed={SEED}), as of {AS_OF}")


@dataclasses.dataclass
class Data:
    snapshots: pd.DataFrame
    labels: np.ndarray
    features: pd.DataFrame


def _plan(ids: pd.Series) -> pd.Categorical:
    index = pd.util.hash_pandas_object(ids, index=False).to_numpy() % len(PLANS)
    return pd.Categorical(np.asarray(PLANS)[index], categories=PLANS)


@pytest.fixture(scope="module")
def data() -> Data:
    history, snapshots = labelled_history(
        churnlens.generate_transactions(1500, seed=SEED), AS_OF, HORIZON)
    snapshots["attr_plan"] = _plan(snapshots["customer_id"])
    labels = snapshots["churned"].astype(np.int64).to_numpy()
    gold = (snapshots["attr_plan"] == "gold").to_numpy()
    flip = np.random.default_rng(SEED).random(len(labels)) < 0.35
    labels = np.where(gold & flip, 0, labels)
    features = (churnlens.compute_features(history, AS_OF)
                .sort_values("customer_id").reset_index(drop=True))
    features["attr_plan"] = _plan(features["customer_id"])
    return Data(snapshots=snapshots, labels=labels, features=features)


@pytest.fixture(scope="module")
def model(data: Data) -> ChurnModel:
    return ChurnModel(horizon_days=HORIZON, random_state=3, select_blend=False,
                      min_child_samples=50, n_estimators=200).fit(
        data.snapshots, data.labels, cutoff="cutoff", reference=data.features)


def _categorical_splits(booster: lgb.Booster) -> int:
    count = 0
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            count += node["decision_type"] == "=="
            stack += [node["left_child"], node["right_child"]]
    return count


def test_feature_names_include_categorical_columns_and_numbers_only_drop_them() -> None:
    frame = pd.DataFrame({"customer_id": ["a", "b"], "recency_days": [1.0, 2.0],
                          "attr_plan": pd.Categorical(["x", "y"]), "flag": [True, False],
                          "note": ["u", "v"]})
    assert default_feature_names(frame) == ["recency_days", "attr_plan"]
    assert numeric_feature_names(frame) == ["recency_days"]


def test_category_codes_map_by_value_not_by_the_frames_own_categories() -> None:
    codes = category_codes(pd.Categorical(["silver", "gold", None, "new"],
                                          categories=["silver", "new", "gold"]), PLANS)
    np.testing.assert_array_equal(codes, [2.0, 1.0, np.nan, np.nan])
    np.testing.assert_array_equal(category_codes(pd.Series(["basic", "gold"]), PLANS),
                                  [0.0, 1.0])


def test_fit_keeps_the_training_categories_and_splits_on_them(model: ChurnModel) -> None:
    assert model.categories_ == {"attr_plan": PLANS}
    assert "attr_plan" in model.base_feature_names_
    assert _categorical_splits(model.booster_.booster_) > 0
    assert model.importance_["attr_plan"] > 0
    # the drift reference is numeric only; the logistic part does not read the column
    assert "attr_plan" not in model.reference_profile_
    coef = model.logistic_[-1].coef_[0]
    assert coef[model.feature_names_.index("attr_plan")] == 0.0
    assert all(d["feature"] != "attr_plan" for d in model.dropped_inputs_)


def test_the_attribute_changes_the_risk_as_it_did_in_training(data: Data, model: ChurnModel
                                                              ) -> None:
    gold = data.features.assign(attr_plan=pd.Categorical(["gold"] * len(data.features),
                                                         categories=PLANS))
    basic = data.features.assign(attr_plan=pd.Categorical(["basic"] * len(data.features),
                                                          categories=PLANS))
    # gold customers were made to stay: lower risk, same customers otherwise
    assert model.predict_proba(gold)[:, 1].mean() < model.predict_proba(basic)[:, 1].mean()


def test_scoring_reads_values_by_the_training_categories(data: Data, model: ChurnModel
                                                         ) -> None:
    risk = model.predict_proba(data.features)[:, 1]
    reordered = data.features.assign(attr_plan=pd.Categorical(
        data.features["attr_plan"].astype(str), categories=["silver", "new", "gold", "basic"]))
    as_text = data.features.assign(attr_plan=data.features["attr_plan"].astype(str))
    np.testing.assert_array_equal(model.predict_proba(reordered)[:, 1], risk)
    np.testing.assert_array_equal(model.predict_proba(as_text)[:, 1], risk)
    unseen = data.features.assign(attr_plan="platinum")
    missing = data.features.assign(attr_plan=pd.Categorical([None] * len(data.features),
                                                            categories=PLANS))
    np.testing.assert_array_equal(model.predict_proba(unseen)[:, 1],
                                  model.predict_proba(missing)[:, 1])


@pytest.mark.parametrize("rows", [7, 500])  # the few-rows pass and the tree-by-tree one
def test_explain_adds_up_and_its_trees_are_lightgbms_pred_contrib(
        data: Data, model: ChurnModel, rows: int) -> None:
    frame = data.features.head(rows).copy()
    frame.loc[frame.index[:3], "attr_plan"] = None
    explanation = model.explain(frame)
    np.testing.assert_array_equal(explanation.churn_risk, model.predict_proba(frame)[:, 1])
    np.testing.assert_allclose(explanation.contributions.sum(axis=1), explanation.log_odds,
                               rtol=0, atol=1e-9)
    booster = model.booster_.booster_
    trees = TreeContributions(booster)
    assert trees.fast and trees.categorical
    matrix, _ = model._inputs_matrix(frame)
    expected = booster.predict(matrix, pred_contrib=True, num_iteration=trees.n_trees)
    np.testing.assert_allclose(trees.compute(matrix), expected, rtol=0, atol=1e-12)


def test_tabulated_categorical_splits_follow_lightgbms_rule() -> None:
    # NaN and negative codes go right, a code is cast towards zero, unseen codes go right
    rng = np.random.default_rng(5)
    n = 4000
    X = np.column_stack([rng.integers(0, 9, n).astype(float), rng.normal(size=n)])
    X[rng.random(n) < 0.1, 0] = np.nan
    y = np.isin(X[:, 0], [1, 3, 5]) ^ (rng.random(n) < 0.1)
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1,
                         "min_data_per_group": 10, "cat_smooth": 1, "max_cat_to_onehot": 2},
                        lgb.Dataset(X, y, categorical_feature=[0]), num_boost_round=15)
    probe = np.column_stack([
        np.asarray([np.nan, -3.0, -1.0, -0.5, 0.0, 0.7, 1.0, 3.9, 5.0, 8.0, 9.0, 57.0, 2e10]),
        np.linspace(-2, 2, 13)])
    expected = booster.predict(probe, pred_contrib=True)
    trees = TreeContributions(booster)
    assert trees.fast and trees.categorical
    np.testing.assert_allclose(trees.compute(probe), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(trees.raw_score(probe), booster.predict(probe, raw_score=True))
    trees.complete()
    saved = TreeContributions.from_arrays(trees.to_arrays())
    assert saved.booster is None
    np.testing.assert_allclose(saved.compute(probe), expected, rtol=0, atol=1e-12)


def test_the_scorer_gives_the_models_numbers_with_categorical_splits(
        data: Data, model: ChurnModel, tmp_path: object) -> None:
    scorer = model.to_scorer()
    assert scorer.categories_ == {"attr_plan": PLANS}
    frame = data.features.assign(attr_plan=data.features["attr_plan"].astype(str))
    frame.loc[frame.index[:5], "attr_plan"] = "platinum"  # unseen
    reread = load_scorer(scorer.save(tmp_path / "scorer.npz").read_bytes())  # type: ignore[operator]
    for form in (scorer, reread):
        np.testing.assert_array_equal(form.predict_proba(frame), model.predict_proba(frame))
        np.testing.assert_array_equal(form.explain(frame).contributions,
                                      model.explain(frame).contributions)


def test_the_logistic_baseline_reads_numbers_only(data: Data, model: ChurnModel) -> None:
    baseline = LogisticBaseline(feature_names=model.base_feature_names_).fit(
        data.snapshots, data.labels)
    assert "attr_plan" not in baseline.feature_names_
    assert baseline.predict_proba(data.features).shape == (len(data.features), 2)


def test_a_model_pickled_before_categorical_features_still_scores(data: Data) -> None:
    numeric = data.snapshots.drop(columns="attr_plan")
    model = ChurnModel(horizon_days=HORIZON, random_state=3, select_blend=False,
                       n_estimators=60).fit(numeric, data.labels, cutoff="cutoff")
    risk = model.predict_proba(data.features)[:, 1]
    for attribute in ("categories_", "input_spec_"):  # what older models lack
        if hasattr(model, attribute):
            delattr(model, attribute)
    old = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(old.predict_proba(data.features)[:, 1], risk)
    np.testing.assert_array_equal(old.explain(data.features).churn_risk, risk)
    scorer = old.to_scorer()
    assert scorer.categories_ == {} and scorer.input_spec_ is None
    np.testing.assert_array_equal(scorer.predict_proba(data.features)[:, 1], risk)
    # a scorer saved before categorical splits were tabulated has no category arrays
    arrays = {k: v for k, v in scorer._arrays.items() if "category" not in k}
    meta = {k: v for k, v in scorer._meta.items() if k not in ("categories", "input_spec")}
    from churnlens._scorer import ChurnScorer

    np.testing.assert_array_equal(ChurnScorer(meta, arrays).predict_proba(data.features)[:, 1],
                                  risk)
