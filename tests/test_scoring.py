"""Scoring: the marketing rules (``_rules``), reasons (``_reasons``) and the entry points
(``_scoring``): leakage, chunks, summary, request-shaped scoring, safety.

The rules marketers act on are checked against hand-computed tables and simple
reference implementations written here (oracles), never against the code under test.
"""

from __future__ import annotations

import copy
import datetime as dt
import fcntl
import json
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import churnlens
from churnlens._config import ScoringSettings, load_config
from churnlens._io import read_table_metadata, remove_stale_temporaries, write_table
from churnlens._rules import (
    SEGMENT_RULES,
    at_risk_list,
    expected_value,
    quintile_scores,
    rfm_segment,
    risk_band,
    segment_from_scores,
)
from churnlens._scoring import (
    SCORE_COLUMNS,
    UNSCORED_REASON,
    check_as_of,
    score_batch,
    score_customers,
    score_file,
    score_requests,
)
from churnlens._value import VALUE_COLUMNS, predict_value, value_model_of
from churnlens.exceptions import ModelError

SEED = 11
TRAIN_AS_OF = "2024-03-31"
SCORE_AS_OF = "2024-04-30"
# select_blend off: these tests exercise the blend's scoring and explanation paths,
# which BG/NBD alone (the choice on this small data set) would leave untouched.
FAST_MODEL = {"mlflow.enabled": False, "backtest_steps": 0, "snapshots.count": 6,
              "model.n_estimators": 60, "model.min_child_samples": 40,
              "model.early_stopping_rounds": 20, "model.select_blend": False}


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    print(f"synthetic transactions seed: {SEED}")
    raw = churnlens.generate_transactions(1500, seed=SEED, start="2023-01-01",
                                          end="2024-06-30")
    return churnlens.load_transactions(raw).transactions


@pytest.fixture(scope="module")
def artifact(transactions):
    from churnlens._pipeline import train

    return train(transactions, as_of=TRAIN_AS_OF,
                 settings=load_config(overrides=FAST_MODEL)).artifact


@pytest.fixture(scope="module")
def scored(transactions, artifact):
    return score_customers(transactions, SCORE_AS_OF, artifact)


# --- risk bands and expected value ------------------------------------------------------


def test_risk_band_thresholds_are_inclusive():
    assert risk_band([0.0, 0.399999, 0.4, 0.5, 0.699999, 0.7, 1.0]).tolist() == [
        "low", "low", "medium", "medium", "medium", "high", "high"]
    custom = ScoringSettings(high_risk=0.9, medium_risk=0.2)
    assert risk_band([0.1, 0.2, 0.89, 0.9], custom).tolist() == ["low", "medium", "medium",
                                                                  "high"]


def test_expected_value_by_hand():
    frame = pd.DataFrame({"frequency": [1, 10, 4, 2], "tenure_days": [0, 365, 91, 10],
                          "monetary_mean": [40.0, 20.0, -5.0, 30.0]})
    # max(1, f / (T + H) * H) occasions at the mean basket (negative baskets count 0)
    expected = [40.0, 20.0 * 10 / 456 * 91, 0.0, 30.0 * 2 / 101 * 91]
    np.testing.assert_allclose(expected_value(frame, 91), expected, rtol=1e-15)
    assert expected_value(frame.iloc[[0]], 91)[0] == 40.0  # one occasion at least


# --- RFM scores and segments --------------------------------------------------------------


def test_quintile_scores_hand_computed():
    # n = 10; ranks 1..10 -> ceil(5 * rank / 10); the two 30s share rank 3.5 -> ceil(1.75)
    values = [10, 20, 30, 30, 50, 60, 70, 80, 90, 100]
    assert quintile_scores(values).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # descending: 100 is rank 1 -> ceil(0.5) = 1 ... recency reversed: most recent = 5
    assert quintile_scores(values, descending=True).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    # all tied: average rank (n + 1) / 2 -> ceil(5 (n + 1) / 2n)
    assert quintile_scores([7, 7, 7, 7]).tolist() == [4, 4, 4, 4]
    # missing values score 1 and do not count in n
    assert quintile_scores([np.nan, 1.0, 2.0]).tolist() == [1, 3, 5]
    assert quintile_scores([]).tolist() == []


def test_quintile_scores_match_an_exact_rank_oracle():
    seed = 3
    print(f"seed: {seed}")
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 40, size=997).astype(float)  # many ties
    for descending in (False, True):
        ranks = pd.Series(values).rank(method="average", ascending=not descending)
        n = len(values)
        expected = [math.ceil(Fraction(r).limit_denominator(4) * 5 / n) for r in ranks]
        assert quintile_scores(values, descending=descending).tolist() == expected


SEGMENT_TABLE = [  # the documented rule table, literally (first match wins)
    ("champions", "R >= 4 and F >= 4"),
    ("loyal", "R >= 3 and F >= 4"),
    ("new", "R >= 4 and F = 1"),
    ("promising", "R >= 4"),
    ("big spenders at risk", "R <= 2 and M >= 4"),
    ("at risk", "R <= 2 and F >= 3"),
    ("lost", "R = 1"),
    ("hibernating", "R = 2"),
    ("needs attention", "R = 3"),
]


def _segment_oracle(r: int, f: int, m: int) -> str:
    env = {"R": r, "F": f, "M": m}
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "=": lambda a, b: a == b}
    for name, rule in SEGMENT_TABLE:
        clauses = [clause.split(" ") for clause in rule.split(" and ")]
        if all(ops[op](env[score], int(value)) for score, op, value in clauses):
            return name
    raise AssertionError(f"no rule matches R={r} F={f} M={m}")


def test_segment_rules_are_the_documented_table_and_cover_every_score():
    assert [(rule.segment, rule.rule) for rule in SEGMENT_RULES] == SEGMENT_TABLE
    grid = [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    r, f, m = (np.array(column) for column in zip(*grid, strict=True))
    got = segment_from_scores(r, f, m).tolist()
    assert got == [_segment_oracle(*cell) for cell in grid]
    assert None not in got


@pytest.mark.parametrize(("scores", "segment"), [
    ((5, 5, 1), "champions"), ((4, 4, 5), "champions"), ((3, 5, 1), "loyal"),
    ((4, 1, 5), "new"), ((5, 2, 1), "promising"), ((5, 3, 3), "promising"),
    ((2, 1, 4), "big spenders at risk"), ((1, 5, 5), "big spenders at risk"),
    ((1, 3, 1), "at risk"), ((2, 4, 3), "at risk"), ((1, 2, 3), "lost"),
    ((2, 2, 2), "hibernating"), ((3, 3, 5), "needs attention"), ((3, 1, 1), "needs attention"),
])
def test_segments_hand_cases(scores, segment):
    assert segment_from_scores(*([s] for s in scores)).tolist() == [segment]


def test_rfm_segment_hand_computed_table():
    features = pd.DataFrame({
        "recency_days": [1, 10, 100, 300, 30],
        "frequency": [12, 1, 3, 8, 2],
        "monetary_total": [500.0, 20.0, 90.0, 800.0, 45.0],
    })
    # n = 5: score = ceil(rank); recency ranks descending (1 day ago = rank 5)
    got = rfm_segment(features)
    assert got["r_score"].tolist() == [5, 4, 2, 1, 3]
    assert got["f_score"].tolist() == [5, 1, 3, 4, 2]
    assert got["m_score"].tolist() == [4, 1, 3, 5, 2]
    assert got["segment"].tolist() == ["champions", "new", "at risk", "big spenders at risk",
                                       "needs attention"]


def test_monetary_ranks_on_cents_so_engine_rounding_noise_is_a_tie():
    features = pd.DataFrame({"recency_days": [1, 2, 3], "frequency": [1, 1, 1],
                             "monetary_total": [19.344999999999, 19.345000000001, 5.0]})
    m = rfm_segment(features)["m_score"].tolist()
    assert m == [5, 5, 2]  # tied at 1934 cents (19.345 snapped, floor(1934.4999.. + .5))


# --- model contributions and reasons ---------------------------------------------------


def test_risk_with_reasons_is_the_models_own_bit_for_bit(scored, artifact):
    features = scored.features.head(300)
    explained = score_batch(features, dt.date(2024, 4, 30), artifact)
    plain = score_batch(features, dt.date(2024, 4, 30), artifact, reasons=False)
    np.testing.assert_array_equal(explained["churn_risk"], plain["churn_risk"])
    np.testing.assert_array_equal(explained["churn_risk"], artifact.churn_risk(features))


def test_tree_contributions_follow_lightgbm_missing_value_rules():
    """NaN, zeros and values exactly on a threshold, for every missing-value mode."""
    import lightgbm as lgb

    from churnlens._contributions import TreeContributions

    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 4))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[rng.random(X.shape) < 0.1] = 0.0
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) > 0).astype(int)
    for params in ({}, {"zero_as_missing": True}, {"use_missing": False}):
        booster = lgb.train({"objective": "binary", "num_leaves": 6, "verbose": -1,
                             "min_data_in_leaf": 20, **params},
                            lgb.Dataset(X, y), num_boost_round=25)
        probe = X[:400].copy()
        for info in booster.dump_model()["tree_info"][:5]:  # rows exactly on thresholds
            node = info["tree_structure"]
            if "split_feature" in node:
                probe[len(probe) // 2, node["split_feature"]] = node["threshold"]
        for rows in (probe, probe[:7]):  # tree by tree, and all trees at once
            fast, raw = TreeContributions(booster).explain(rows)
            np.testing.assert_allclose(fast, booster.predict(rows, pred_contrib=True),
                                       rtol=0, atol=1e-12, err_msg=str(params))
            # the raw score from the same pass is LightGBM's, bit for bit
            np.testing.assert_array_equal(raw, booster.predict(rows, raw_score=True))


def test_tabulated_trees_follow_lightgbm_on_missing_or_not_splits():
    """A split "missing or not" (LightGBM's threshold 1e300, NaN to one side): the tables
    ``complete()`` writes for bundles give LightGBM's contributions on rows with NaN.

    Before, ``complete()`` reached the NaN side with a finite value just above 1e300,
    which LightGBM reads as 1e300 (the other side): NaN rows got the other path's
    contributions (off by up to 2.2 here), and a bundle scored with reasons was refused
    ("contributions do not add up") on real data where a trend feature is often NaN.
    """
    import lightgbm as lgb

    from churnlens._contributions import TreeContributions

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 3))
    missing = rng.random(4000) < 0.4
    X[missing, 1] = np.nan
    y = (missing ^ (X[:, 0] + 0.5 * rng.normal(size=4000) > 0)).astype(int)
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1,
                         "min_data_in_leaf": 20}, lgb.Dataset(X, y), num_boost_round=20)
    thresholds, stack = [], [i["tree_structure"] for i in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "threshold" in node:
            thresholds.append(node["threshold"])
            stack += [node["left_child"], node["right_child"]]
    assert 1e300 in thresholds  # the data make LightGBM split on missing or not
    tables = TreeContributions(booster)
    tables.complete()
    saved = TreeContributions.from_arrays(tables.to_arrays())  # as a bundle holds them
    for trees in (tables, saved):
        fast, raw = trees.explain(X)
        np.testing.assert_allclose(fast, booster.predict(X, pred_contrib=True), rtol=0,
                                   atol=1e-12)
        np.testing.assert_array_equal(raw, booster.predict(X, raw_score=True))
    # beyond 1e300 LightGBM reads 1e300: inf and 1e301 take the finite side, as here
    edge = X[:4].copy()
    edge[:, 1] = [np.inf, 1e301, -np.inf, np.nan]
    np.testing.assert_allclose(saved.explain(edge)[0], booster.predict(edge, pred_contrib=True),
                               rtol=0, atol=1e-12)


def test_reasons_are_true_of_each_customer(scored, artifact):
    # The reasons cite what in the customer's own history raises their risk (issue 16;
    # before, the top features by name with their values, "BG/NBD: 4% chance ...",
    # "25 repeat purchases"): every text is checked against the customer's features by
    # the oracle of tests/demo_support.py; tests/test_reasons.py checks the rules.
    from demo_support import check_all_reasons

    counts = check_all_reasons(scored.scores, scored.features, artifact.horizon_days)
    scores = scored.scores
    high = scores["risk_band"] == "high"
    print(counts, "high risk with a reason:", (scores.loc[high, "reason_1"] != "").mean())
    assert (scores.loc[high, "reason_1"] != "").mean() > 0.5, counts


def test_reasons_do_not_depend_on_chunks(transactions, artifact, deterministic_duckdb):
    whole = score_customers(transactions, SCORE_AS_OF, artifact)
    again = score_customers(transactions, SCORE_AS_OF, artifact, chunk_rows=97)
    # The model's matrix products (BLAS) may round a row differently by its position in
    # the batch (last bit); everything a marketer reads is the same.
    floats = ["churn_risk", "expected_value", "value_at_risk", "monetary_total"]
    pd.testing.assert_frame_equal(again.scores[floats], whole.scores[floats], rtol=0,
                                  atol=1e-12)
    others = [c for c in SCORE_COLUMNS if c not in floats]
    pd.testing.assert_frame_equal(again.scores[others], whole.scores[others],
                                  check_exact=True)


def test_contributions_that_do_not_add_up_to_the_risk_are_refused(artifact, scored,
                                                                   monkeypatch):
    from churnlens._contributions import TreeContributions

    original = TreeContributions.explain

    def off_by_a_bit(self, matrix):
        values, raw = original(self, matrix)
        values[:, -1] += 1e-6  # the bias
        return values, raw

    monkeypatch.setattr(TreeContributions, "explain", off_by_a_bit)
    with pytest.raises(ModelError, match="do not add up"):
        score_batch(scored.features.head(50), dt.date(2024, 4, 30), artifact)


def test_reasons_refuse_a_model_that_cannot_explain(artifact, scored):
    features = scored.features.head(20)
    baseline = churnlens.RecencyBaseline().fit(features, features["recency_days"] > 30)
    baseline.base_feature_names_ = ["recency_days"]  # what a loaded model lists
    broken = copy.copy(artifact)
    broken.model = baseline
    with pytest.raises(ModelError, match="cannot explain"):
        score_batch(features, dt.date(2024, 4, 30), broken)
    plain = score_batch(features, dt.date(2024, 4, 30), broken, reasons=False)
    np.testing.assert_array_equal(plain["churn_risk"], baseline.predict_proba(features)[:, 1])


# --- scoring ----------------------------------------------------------------------------


def test_scores_columns_rules_and_products(transactions, artifact, scored):
    scores = scored.scores
    assert list(scores.columns) == SCORE_COLUMNS
    features = churnlens.compute_features(transactions, SCORE_AS_OF,
                                          windows_days=artifact.windows_days)
    assert sorted(scores["customer_id"]) == scores["customer_id"].tolist()
    assert sorted(scores["customer_id"]) == sorted(features["customer_id"])
    assert set(scores["as_of"]) == {dt.date(2024, 4, 30)}
    by_id = scored.features  # the features scored, in the scores' order
    assert by_id["customer_id"].tolist() == scores["customer_id"].tolist()
    # with reasons the risk comes from the contributions' pass: predict_proba's own
    np.testing.assert_array_equal(scores["churn_risk"], artifact.churn_risk(by_id))
    plain = score_batch(by_id, dt.date(2024, 4, 30), artifact, reasons=False)
    np.testing.assert_array_equal(plain["churn_risk"], artifact.churn_risk(by_id))
    assert plain["risk_band"].tolist() == scores["risk_band"].tolist()
    assert (scores["value_at_risk"] == scores["churn_risk"] * scores["expected_value"]).all()
    # the value columns: the model's value model on the same features (issue 20)
    value_model = value_model_of(artifact.model)
    assert value_model is not None
    values = predict_value(value_model, by_id, horizon_days=artifact.horizon_days)
    for column in ("expected_value", *VALUE_COLUMNS):
        np.testing.assert_array_equal(scores[column], values[column])
    assert not np.array_equal(scores["expected_value"],
                              expected_value(by_id, artifact.horizon_days))
    for column in ("recency_days", "frequency", "monetary_total"):
        np.testing.assert_array_equal(scores[column], by_id[column])
    risk = scores["churn_risk"]
    bands = np.select([risk >= 0.7, risk >= 0.4], ["high", "medium"], "low")
    assert scores["risk_band"].tolist() == bands.tolist()
    # segments: the oracle rule table on ranks computed here with pandas
    n = len(scores)
    r = np.ceil(5 * scores["recency_days"].rank(method="average", ascending=False) / n)
    f = np.ceil(5 * scores["frequency"].rank(method="average") / n)
    m = np.ceil(5 * (scores["monetary_total"] * 100).round().rank(method="average") / n)
    expected = [_segment_oracle(*cell) for cell in zip(r, f, m, strict=True)]
    assert scores["segment"].tolist() == expected


@pytest.fixture
def deterministic_duckdb(monkeypatch):
    """compute_features on one DuckDB thread.

    With several threads DuckDB adds up a customer's amounts in an order that changes
    from run to run, so money features (and the scores) of the *same* input differ in
    the last bits between runs (reported to the feature engine's owner). One thread
    takes that noise out, so what is compared below is what scoring itself does.
    """
    import functools

    import churnlens._features as features_module
    from churnlens._engine import connect

    monkeypatch.setattr(features_module, "connect", functools.partial(connect, threads=1))


def test_scoring_ignores_transactions_after_the_as_of_date(transactions, artifact, tmp_path,
                                                           deterministic_duckdb):
    history = transactions.loc[transactions["timestamp"] < "2024-05-01"]
    assert len(history) < len(transactions)
    full = score_customers(transactions, SCORE_AS_OF, artifact)
    alone = score_customers(history, SCORE_AS_OF, artifact)
    pd.testing.assert_frame_equal(alone.scores, full.scores, check_exact=True)
    assert alone.summary == full.summary
    write_table(alone.scores, tmp_path / "a.parquet", metadata={"k": "v"})
    write_table(full.scores, tmp_path / "b.parquet", metadata={"k": "v"})
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_summary_pairs_predicted_with_last_actual_rates(transactions, artifact, scored):
    summary = json.loads(json.dumps(scored.summary, allow_nan=False))  # strict JSON
    scores = scored.scores
    horizon = artifact.horizon_days
    p = scores["churn_risk"].to_numpy()
    active = scores["recency_days"].to_numpy() < horizon
    s = active.sum()
    z = 1.959963984540054
    # the sampling half-width, widened in quadrature by the model's measured level error
    level = getattr(artifact.model, "level_error_", None) or {}
    widen = {k: v if v is not None and math.isfinite(v) and v > 0 else 0.0 for k, v in (
        (k, level.get(f"half_width_{k}")) for k in ("cohort_retention", "crr"))}
    assert summary["predicted"]["level_error_cohort_retention"] == pytest.approx(
        widen["cohort_retention"])
    cohort = (1 - p[active]).sum() / s * 100
    half = math.hypot(z * math.sqrt((p[active] * (1 - p[active])).sum()) / s * 100,
                      widen["cohort_retention"])
    crr = (1 - p).sum() / s * 100
    crr_half = math.hypot(z * math.sqrt((p * (1 - p)).sum()) / s * 100, widen["crr"])
    pairing = {row["rate"]: row for row in summary["pairing"]}
    assert pairing["cohort_retention"]["predicted"] == pytest.approx(cohort, rel=1e-12)
    assert pairing["cohort_retention"]["predicted_low"] == pytest.approx(cohort - half, rel=1e-12)
    assert pairing["cohort_retention"]["predicted_high"] == pytest.approx(
        min(cohort + half, 100), rel=1e-12)
    assert pairing["crr"]["predicted"] == pytest.approx(crr, rel=1e-12)
    assert pairing["crr"]["predicted_high"] == pytest.approx(crr + crr_half, rel=1e-12)
    actual = churnlens.retention_rates(transactions, "2024-01-30", SCORE_AS_OF,
                                       window_days=horizon)  # the last 91 days
    assert summary["last_actual"]["start"] == "2024-01-30"
    assert summary["last_actual"]["window_days"] == horizon
    assert pairing["cohort_retention"]["last_actual"] == pytest.approx(actual.cohort_retention)
    assert pairing["crr"]["last_actual"] == pytest.approx(actual.crr)
    assert summary["customers_scored"] == len(scores)
    assert sum(summary["risk_bands"].values()) == len(scores)
    assert sum(summary["segments"].values()) == len(scores)
    assert summary["predicted_retention_all"] == pytest.approx((1 - p.mean()) * 100)
    # customers lost and value at risk on one base, the active customers (issue 16: the
    # value at risk used to sum everyone, customers silent for over a year included)
    assert summary["base"] == "active" and summary["active_customers"] == s
    assert summary["expected_customers_lost"] == pytest.approx(p[active].sum())
    assert summary["value_at_risk_total"] == pytest.approx(
        scores.loc[active, "value_at_risk"].sum())
    assert summary["value_at_risk_all"] == pytest.approx(scores["value_at_risk"].sum())


def test_score_requests_keeps_request_order_and_names_the_unscored(transactions, artifact,
                                                                    scored):
    some = scored.scores.iloc[[5, 1, 3]]
    ids = some["customer_id"].tolist()
    base = float(np.mean(artifact.model.bgnbd_offset(scored.features)))
    parts, key = [], 0
    # request 1: three customers (one twice: ids need only be unique within a request),
    # a customer whose purchases all come after the as-of date, one marked unscorable
    requests = [[ids[0], "later", ids[1]], [ids[2], "NA", ids[0]]]
    for request in requests:
        for customer in request:
            if customer == "later":
                mine = pd.DataFrame({"timestamp": [pd.Timestamp("2024-06-01")],
                                     "amount": [10.0]})
            else:
                mine = transactions.loc[transactions["customer_id"] == (
                    ids[0] if customer == "NA" else customer), ["timestamp", "amount"]]
            parts.append(mine.assign(customer_key=key))
            key += 1
    purchases = pd.concat(parts, ignore_index=True)
    got = score_requests(purchases, requests, dt.date(2024, 4, 30), artifact,
                         offset_center=base, unscored={4: "no customer id"})
    assert [[r.customer_id for r in g.results] for g in got] == [[ids[0], ids[1]],
                                                                  [ids[2], ids[0]]]
    assert [[(u.customer_id, u.reason) for u in g.unscored] for g in got] == [
        [("later", UNSCORED_REASON.format(as_of=dt.date(2024, 4, 30)))],
        [("NA", "no customer id")]]
    expected = {row["customer_id"]: row for row in some.to_dict("records")}
    for result in (r for g in got for r in g.results):
        row = expected[result.customer_id]
        assert result.churn_risk == pytest.approx(row["churn_risk"], rel=0, abs=1e-12)
        assert (result.risk_band, result.recency_days, result.frequency) == (
            row["risk_band"], row["recency_days"], row["frequency"])
        assert result.value_at_risk == pytest.approx(row["value_at_risk"], rel=0, abs=1e-9)
        assert result.reasons == [row[f"reason_{j}"] for j in (1, 2, 3) if row[f"reason_{j}"]]
    plain = score_requests(purchases, requests, dt.date(2024, 4, 30), artifact, reasons=False)
    # without ``unscored`` the "NA" customer's purchases are scored like any other
    assert [[r.customer_id for r in g.results] for g in plain] == [[ids[0], ids[1]],
                                                                    [ids[2], "NA", ids[0]]]
    assert all(r.reasons == [] for g in plain for r in g.results)
    nobody = score_requests(purchases.iloc[:0], [["x"]], dt.date(2024, 4, 30), artifact)
    assert [u.customer_id for u in nobody[0].unscored] == ["x"] and not nobody[0].results


def test_score_file_scores_as_score_customers(transactions, artifact, tmp_path,
                                              deterministic_duckdb):
    path = tmp_path / "tx.parquet"
    transactions.to_parquet(path, index=False)
    from_file = score_file(path, dt.date(2024, 4, 30), artifact)
    from_frame = score_customers(transactions, SCORE_AS_OF, artifact)
    pd.testing.assert_frame_equal(from_file.scores, from_frame.scores, check_exact=True)
    cleaning = from_file.summary.pop("cleaning")
    assert cleaning["dropped_after_as_of"] > 0  # the loader kept history <= as_of
    assert from_file.summary == from_frame.summary


# --- at-risk lists ----------------------------------------------------------------------


def test_at_risk_list_sorts_filters_and_cuts():
    scores = pd.DataFrame({
        "customer_id": ["b", "a", "c", "d"], "churn_risk": [0.9, 0.9, 0.5, 0.1],
        "value_at_risk": [1.0, 5.0, 9.0, 0.0], "segment": ["lost", "lost", "new", "new"],
        "risk_band": ["high", "high", "medium", "low"]})
    # kind="all": every customer, as before issue 16 (the default is now the campaign list)
    assert at_risk_list(scores, kind="all")["customer_id"].tolist() == [
        "a", "b", "c", "d"]  # ties by id
    assert at_risk_list(scores, kind="all", sort="value_at_risk")["customer_id"].tolist() == [
        "c", "a", "b", "d"]
    assert at_risk_list(scores, kind="all", top=2)["customer_id"].tolist() == ["a", "b"]
    assert at_risk_list(scores, kind="all", min_risk=0.5)["customer_id"].tolist() == [
        "a", "b", "c"]
    assert at_risk_list(scores, kind="all", segment="new")["customer_id"].tolist() == ["c", "d"]
    assert at_risk_list(scores, kind="all", band="medium")["customer_id"].tolist() == ["c"]
    with pytest.raises(ModelError, match="segments in the scores"):
        at_risk_list(scores, kind="all", segment="vip")
    with pytest.raises(ModelError, match="top"):
        at_risk_list(scores, kind="all", top=0)


# --- the model: refusals -----------------------------------------------------------------


def test_as_of_before_training_is_refused_unless_allowed(artifact):
    with pytest.raises(ModelError, match="--allow-past"):
        check_as_of(artifact, "2024-03-30", allow_past=False)
    assert check_as_of(artifact, "2024-03-30", allow_past=True) == dt.date(2024, 3, 30)
    assert check_as_of(artifact, TRAIN_AS_OF, allow_past=False) == dt.date(2024, 3, 31)
    assert check_as_of(artifact, dt.date(2024, 4, 1), allow_past=False) == dt.date(2024, 4, 1)


# --- writing (the table writer the scores go through) ---------------------------------


def test_write_table_records_metadata_and_neutralizes_formulas(tmp_path):
    frame = pd.DataFrame({"customer_id": ['=HYPERLINK("x")', "+1", "-2", "@SUM(A1)",
                                          "\tTAB", "\rCR", "plain"],
                          "churn_risk": [0.9, -0.5, 0.1, 0.2, 0.3, 0.4, 0.5]})
    target = write_table(frame, tmp_path / "list.csv", spreadsheet_safe=True)
    lines = pd.read_csv(target, dtype=str, keep_default_na=False)
    assert lines["customer_id"].tolist() == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)",
                                             "'\tTAB", "'\rCR", "plain"]
    assert lines["churn_risk"].tolist()[1] == "-0.5"  # numbers stay numbers
    parquet = write_table(frame, tmp_path / "s.parquet", metadata={"model": "m"})
    assert read_table_metadata(parquet) == {"model": "m"}
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), frame)


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "scores.parquet"
    stale = tmp_path / ".scores.parquet.tmp-dead1"
    stale.write_bytes(b"partial")
    live = tmp_path / ".scores.parquet.tmp-live1"
    live.write_bytes(b"being written")
    other = tmp_path / ".other.parquet.tmp-x"
    other.write_bytes(b"not ours")
    fd = os.open(live, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a writer still at work holds this lock
        write_table(pd.DataFrame({"a": [1]}), target)
        assert not stale.exists()
        assert live.exists() and other.exists()
    finally:
        os.close(fd)
    assert remove_stale_temporaries(target) == [live]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.parquet.tmp-x",
                                                          "scores.parquet"]


def test_write_table_keeps_the_previous_file_on_error(tmp_path):
    target = tmp_path / "scores.parquet"
    write_table(pd.DataFrame({"a": [1]}), target)
    before = target.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error type
        write_table(pd.DataFrame({"a": [object()]}), target)  # not encodable
    assert target.read_bytes() == before
    assert [p.name for p in Path(tmp_path).iterdir()] == ["scores.parquet"]
