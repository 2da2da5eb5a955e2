"""Metrics and the predicted-retention pairing: golden values and a reference oracle."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churnlens._evaluation import (
    actual_spend,
    calibration_table,
    classification_metrics,
    lift_table,
    predict_retention,
    value_decile_table,
    value_metrics,
)
from churnlens.exceptions import DataValidationError

SEEDS = [0, 1, 2, 3, 4, 5, 6, 7]


def test_metrics_golden_hand_computed() -> None:
    m = classification_metrics([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.4])
    assert m["auc"] == 1.0
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.16 + 0.16) / 4)
    assert m["log_loss"] == pytest.approx(
        -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.6)) / 4)
    # top decile of 4 customers = 1 customer (risk 0.9, churned): 1 / 0.5
    assert m["lift_top_decile"] == 2.0
    assert m["predicted_retention"] == pytest.approx(47.5)
    assert m["actual_retention"] == 50.0
    assert m["pr_auc"] == 1.0


def _reference_auc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", SEEDS)
def test_metrics_match_plain_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 200))
    p = np.round(rng.random(n), 2)  # rounding creates ties on purpose
    y = (rng.random(n) < p).astype(int)
    if len(np.unique(y)) < 2:
        y[0], y[1] = 0, 1
    m = classification_metrics(y, p)
    print(f"seed={seed} n={n}")
    assert m["auc"] == pytest.approx(_reference_auc(y, p))
    assert m["brier"] == pytest.approx(sum((pi - yi) ** 2 for pi, yi in zip(p, y, strict=True))
                                       / n)
    k = max(1, round(0.1 * n))
    top = sorted(range(n), key=lambda i: (-p[i], i))[:k]
    assert m["lift_top_decile"] == pytest.approx(np.mean(y[top]) / np.mean(y))
    assert m["predicted_retention"] == pytest.approx(100 * (1 - np.mean(p)))


def test_auc_is_nan_with_one_class_not_an_error() -> None:
    m = classification_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(m["auc"]) and math.isnan(m["pr_auc"])
    assert math.isnan(m["lift_top_decile"])


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(DataValidationError, match="labels but"):
        classification_metrics([0, 1], [0.5])
    with pytest.raises(DataValidationError, match="no customers"):
        classification_metrics([], [])
    with pytest.raises(DataValidationError, match="missing"):
        classification_metrics([0, np.nan], [0.1, 0.2])


def test_lift_and_calibration_tables() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(int)
    lift = lift_table(y, p)
    assert list(lift["decile"]) == list(range(1, 11))
    assert lift["customers"].sum() == 1000
    assert lift["cumulative_gain"].iloc[-1] == pytest.approx(1.0)
    assert lift["lift"].iloc[0] > 1.5 > lift["lift"].iloc[-1]
    cal = calibration_table(y, p)
    assert cal["mean_risk"].is_monotonic_increasing
    assert np.allclose(cal["mean_risk"], cal["churn_rate"], atol=0.12)


def test_predicted_retention_golden() -> None:
    r = predict_retention([10, 100, 5], [0.2, 0.9, 0.5], window_days=91)
    assert (r.S, r.acquired) == (2, 3)
    assert r.cohort_retention == pytest.approx(65.0)
    assert r.crr == pytest.approx(70.0)
    half = 1.959963984540054 * math.sqrt(0.2 * 0.8 + 0.5 * 0.5)
    assert r.cohort_retention_low == pytest.approx((1.3 - half) / 2 * 100)
    assert r.cohort_retention_high == 100.0  # a share of the base cannot exceed 100
    half_all = 1.959963984540054 * math.sqrt(0.16 + 0.09 + 0.25)
    assert r.crr_high == pytest.approx((1.4 + half_all) / 2 * 100)
    assert r.expected_lost == pytest.approx(0.7)


@pytest.mark.parametrize("seed", SEEDS)
def test_predicted_retention_matches_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    recency = rng.integers(0, 400, n)
    risk = rng.random(n)
    window = int(rng.integers(1, 200))
    r = predict_retention(recency, risk, window_days=window)
    active = [i for i in range(n) if recency[i] < window]
    if not active:
        assert math.isnan(r.cohort_retention) and math.isnan(r.crr)
        return
    assert r.S == len(active)
    assert r.cohort_retention == pytest.approx(
        sum(1 - risk[i] for i in active) / len(active) * 100)
    assert r.crr == pytest.approx(sum(1 - risk[i] for i in range(n)) / len(active) * 100)
    assert r.cohort_retention_low <= r.cohort_retention <= r.cohort_retention_high
    assert r.crr_low <= r.crr <= r.crr_high


def test_empty_active_base_gives_nan_not_error() -> None:
    r = predict_retention([500, 600], [0.5, 0.5], window_days=91)
    assert r.S == 0 and math.isnan(r.crr)
    assert r.to_dict()["crr"] is None


# --- value: predicted vs actual spend (issue 20, item 4) ---------------------------


def test_value_metrics_golden_hand_computed() -> None:
    # actual 0, 10, 30, 0; predicted 5, 10, 20, 5: errors +5, 0, -10, +5
    m = value_metrics([0.0, 10.0, 30.0, 0.0], [5.0, 10.0, 20.0, 5.0])
    assert m["mae"] == pytest.approx(20 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((25 + 0 + 100 + 25) / 4))
    # ranks: actual (1.5, 3, 4, 1.5), predicted (1.5, 3, 4, 1.5): the same order
    assert m["spearman"] == pytest.approx(1.0)
    assert m["aggregate_error_pct"] == pytest.approx((40 - 40) / 40 * 100)
    assert m["predicted_total"] == 40.0 and m["actual_total"] == 40.0
    assert m["customers"] == 4.0
    # a reversed order with one tie: actual ranks (1, 2, 3.5, 3.5), predicted (4, 3, 1.5, 1.5)
    # centred: (-1.5, -0.5, 1, 1) and (1.5, 0.5, -1, -1): r = -4.5 / sqrt(4.5 * 4.5) = -1
    r = value_metrics([1.0, 2.0, 3.0, 3.0], [9.0, 8.0, 1.0, 1.0])
    assert r["spearman"] == pytest.approx(-1.0)
    assert r["aggregate_error_pct"] == pytest.approx((19 - 9) / 9 * 100)


def test_value_metrics_undefined_parts_are_nan() -> None:
    m = value_metrics([0.0, 0.0], [1.0, 2.0])
    assert math.isnan(m["spearman"]) and math.isnan(m["aggregate_error_pct"])
    assert m["mae"] == 1.5


def _reference_spearman(a: np.ndarray, p: np.ndarray) -> float:
    def ranks(v: np.ndarray) -> np.ndarray:
        # each value's rank: 1 + how many are smaller + (how many equal - 1) / 2
        return np.array([1 + (v < x).sum() + ((v == x).sum() - 1) / 2 for x in v])

    return float(np.corrcoef(ranks(a), ranks(p))[0, 1])


@pytest.mark.parametrize("seed", SEEDS)
def test_value_metrics_match_plain_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    # spend as in a horizon: many zeros (ties) and a long tail
    actual = np.where(rng.random(n) < 0.6, 0.0, np.round(rng.gamma(2.0, 20.0, n), 1))
    predicted = np.round(actual * rng.uniform(0, 2, n) + rng.gamma(1.0, 5.0, n), 0)
    m = value_metrics(actual, predicted)
    print(f"seed={seed} n={n}")
    assert m["mae"] == pytest.approx(np.mean(np.abs(predicted - actual)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((predicted - actual) ** 2)))
    assert m["spearman"] == pytest.approx(_reference_spearman(actual, predicted))
    assert m["aggregate_error_pct"] == pytest.approx(
        100 * (predicted.sum() - actual.sum()) / actual.sum())
    table = value_decile_table(actual, predicted)
    assert table["customers"].sum() == n
    assert (table["mean_actual"] * table["customers"]).sum() == pytest.approx(actual.sum())
    assert table["mean_predicted"].is_monotonic_increasing


def test_value_metrics_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(DataValidationError, match="3 actual spends but 2"):
        value_metrics([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(DataValidationError, match="no customers"):
        value_metrics([], [])
    with pytest.raises(DataValidationError, match="finite"):
        value_metrics([1.0, math.nan], [1.0, 2.0])


def test_actual_spend_counts_occasions_as_the_retention_rules_do() -> None:
    tx = pd.DataFrame({
        "customer_id": ["A", "A", "A", "B", "B", "C", "C", "D"],
        "timestamp": pd.to_datetime([
            "2024-01-02 09:00", "2024-01-02 18:00",  # A: one occasion, 30 - 10 = 20
            "2024-01-05 00:00",                      # A: refund-only day, no occasion
            "2024-01-31 23:59",                      # B: last day of (start, end]: in
            "2024-01-01 12:00",                      # B: the start day itself: out
            "2024-01-10 08:00", "2024-01-10 09:00",  # C: 10.10 + 5.20 - 15.30 = 0: none
            "2024-02-01 00:00"]),                    # D: after the end: out
        "amount": [30.0, -10.0, -5.0, 20.0, 99.0, 10.10, 5.20, 7.0],
    })
    tx = pd.concat([tx, pd.DataFrame({"customer_id": ["C"], "timestamp": pd.to_datetime(
        ["2024-01-10"]), "amount": [-15.30]})], ignore_index=True)
    spend = actual_spend(tx, "2024-01-01", "2024-01-31")
    assert spend.to_dict() == {"A": 20.0, "B": 20.0}
