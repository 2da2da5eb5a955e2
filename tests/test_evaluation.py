"""Metrics and the predicted-retention pairing: golden values and a reference oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from churnlens._evaluation import (
    calibration_table,
    classification_metrics,
    lift_table,
    predict_retention,
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
