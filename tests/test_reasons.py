"""Reasons a person can act on (issue 16): only what pushes risk up, in the customer's own
terms, never a model quantity by name, never a loyalty signal as a cause.

Hand-built cases check each rule; then every reason of every scored customer of the
demo base and of CDNOW is checked against the customer's own features by an oracle
written from docs/scoring.md (``demo_support.check_reason``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from demo_support import check_all_reasons, check_reason, scored_base

import churnlens._reasons as reasons_module

H = 91
NAMES = ["frequency", "repeat_frequency", "recency_days", "tenure_days", "monetary_total",
         "gap_mean_days", "gap_last_days", "overdue_ratio", "refund_total", "occasions_90d",
         "occasions_180d", "spend_90d", "spend_180d", "spend_365d", "basket_trend_365d",
         "rate_trend_90d", "bgnbd_p_alive", "bgnbd_p_purchase"]


def customer(**values: float) -> dict[str, float]:
    """A loyal, steady customer's features; ``values`` override."""
    row = {"frequency": 25, "repeat_frequency": 24, "recency_days": 5, "tenure_days": 400,
           "monetary_total": 4080.0, "gap_mean_days": 15.8, "gap_last_days": 12,
           "overdue_ratio": 5 / 15.8, "refund_total": 0.0, "occasions_90d": 6,
           "occasions_180d": 12, "spend_90d": 900.0, "spend_180d": 1800.0,
           "spend_365d": 3700.0, "basket_trend_365d": 1.0, "rate_trend_90d": 1.0,
           "bgnbd_p_alive": 0.9, "bgnbd_p_purchase": 0.05}
    row.update(values)
    row["repeat_frequency"] = row["frequency"] - 1
    return row


def reasons(rows: list[dict[str, float]], pushes: list[dict[str, float]],
            horizon: int | None = H) -> list[list[str]]:
    """Reasons of ``rows`` with the contributions ``pushes`` (feature -> log-odds)."""
    frame = pd.DataFrame(rows)
    contributions = np.array([[p.get(n, 0.0) for n in NAMES] for p in pushes])
    texts = reasons_module.reasons_from_contributions(contributions, NAMES, frame,
                                                      horizon_days=horizon)
    return [[t for t in row if t] for row in texts.tolist()]


def test_every_feature_has_a_kind_and_model_quantities_are_credited_to_silence():
    from churnlens._features_sql import feature_names

    kind = reasons_module.reason_kind
    for name in feature_names((30, 90, 180, 365)):
        assert kind(name) is not None, name
    assert {kind(q) for q in reasons_module.MODEL_QUANTITIES} == {"silence"}


def test_a_silent_repeat_buyer_reads_in_their_own_terms():
    row = customer(frequency=9, recency_days=38, gap_mean_days=12.0, gap_last_days=11,
                   occasions_90d=3)
    # BG/NBD pushes hardest: shown as the silence it is computed from, never by name
    [texts] = reasons([row], [{"bgnbd_p_purchase": 2.0, "recency_days": 0.5}])
    assert texts == ["usually buys every 12 days, silent for 38"]


def test_a_one_time_buyer():
    row = customer(frequency=1, recency_days=70, tenure_days=70, gap_mean_days=np.nan,
                   gap_last_days=np.nan, overdue_ratio=np.nan, occasions_90d=1,
                   occasions_180d=1, spend_90d=40.0, spend_180d=40.0, spend_365d=40.0)
    [texts] = reasons([row], [{"frequency": 0.4, "tenure_days": 0.2, "gap_mean_days": 0.3}])
    assert texts == ["only one purchase, 70 days ago"]


def test_spend_down_against_the_window_before():
    # 40 in the last 180 days against 100 in the 185 days before: per day 0.222 vs 0.541
    row = customer(spend_180d=40.0, spend_365d=140.0)
    [texts] = reasons([row], [{"spend_180d": 0.3}])
    assert texts == ["spend down 59% in the last 180 days vs the 185 days before"]
    expected = 100 * (1 - (40 / 180) / (100 / 185))
    assert round(expected) == 59


def test_loyalty_never_reads_as_a_cause_of_risk():
    # the model may push risk up through many purchases or a high spend (a tree's split
    # against the base's average): no text says "25 repeat purchases" or "spent 4,080"
    row = customer()
    [texts] = reasons([row], [{"frequency": 1.0, "repeat_frequency": 0.8,
                               "monetary_total": 0.9, "tenure_days": 0.5,
                               "bgnbd_p_alive": 0.7}])
    assert texts == []
    for text in texts:
        check_reason(text, pd.Series(row), H)


def test_only_what_pushes_risk_up():
    late = customer(recency_days=60, gap_mean_days=15.0, refund_total=35.5)
    pulls = {"recency_days": -0.8, "bgnbd_p_purchase": 0.3, "refund_total": 0.2}
    pushes = {"recency_days": 0.8, "refund_total": 0.2}
    assert reasons([late, late], [pulls, pushes]) == [
        ["refunds of 35.50 so far"],  # silence adds up to -0.5: not a reason
        ["usually buys every 15 days, silent for 60", "refunds of 35.50 so far"]]


def test_a_short_rhythm_break_and_a_rare_buyer():
    slower = customer(frequency=6, recency_days=10, gap_mean_days=20.0, gap_last_days=60)
    rare = customer(frequency=3, recency_days=30, tenure_days=300, gap_mean_days=135.0,
                    gap_last_days=130)
    young = customer(frequency=3, recency_days=2, tenure_days=20, gap_mean_days=9.0,
                     gap_last_days=8)
    assert reasons([slower, rare, young], [{"gap_last_days": 0.5}, {"gap_mean_days": 0.5},
                                           {"tenure_days": 0.5}]) == [
        ["last gap between purchases 60 days, usually 20"],
        ["usually buys only every 135 days, longer than the 91-day horizon"],
        ["first purchase only 20 days ago"]]


def test_fewer_purchases_in_a_window_than_usual():
    # 25 purchases in 401 days of life; 2 in the last 90: 23 in the 311 days before, 6.7
    row = customer(occasions_90d=2, recency_days=10, gap_mean_days=16.0)
    [texts] = reasons([row], [{"occasions_90d": 0.4, "rate_trend_90d": 0.1}])
    assert texts == ["2 purchases in the last 90 days, usually 7"]


def test_three_reasons_at_most_heaviest_first_each_kind_once():
    row = customer(recency_days=60, gap_mean_days=15.0, refund_total=12.0,
                   spend_180d=40.0, spend_365d=140.0)
    [texts] = reasons([row], [{"refund_total": 0.9, "spend_90d": 0.1, "spend_180d": 0.4,
                               "recency_days": 0.5, "bgnbd_p_purchase": 0.3}])
    # refunds 0.9, silence 0.5 + 0.3, spend 0.1 + 0.4
    assert texts == ["refunds of 12.00 so far", "usually buys every 15 days, silent for 60",
                     "spend down 59% in the last 180 days vs the 185 days before"]


@pytest.fixture(scope="module")
def demo():
    return scored_base("demo")


def test_every_reason_on_the_demo_base_is_true_and_pushes_risk_up(demo):
    artifact, result, _ = demo
    counts = check_all_reasons(result.scores, result.features, artifact.horizon_days)
    print("reasons by kind on the demo base:", counts)
    assert counts.get("silence", 0) > 5000  # most reasons are a lapse, in days
    high = result.scores["risk_band"] == "high"
    print("high risk with a reason:", (result.scores.loc[high, "reason_1"] != "").mean())
    assert (result.scores.loc[high, "reason_1"] != "").mean() > 0.7


def test_the_top_of_the_demo_base_by_value_at_risk_has_no_model_or_loyalty_reason(demo):
    # the count: 428 of the top 500 led with "BG/NBD: 0% chance ...", 402 cited
    # "25 repeat purchases" or "spent 4,080 in total"
    _, result, _ = demo
    top = result.scores.sort_values("value_at_risk", ascending=False).head(500)
    texts = pd.concat([top[c] for c in ("reason_1", "reason_2", "reason_3")])
    assert not texts.str.contains("BG/NBD|repeat purchase|in total", regex=True).any()
    # most have a reason (the others: nothing in their history raises the risk above
    # the base's usual one; 0.89-0.91 with the models of this wave)
    print("top 500 with a reason:", (top["reason_1"] != "").mean())
    assert (top["reason_1"] != "").mean() > 0.75


@pytest.mark.slow
def test_every_reason_on_cdnow_is_true_and_pushes_risk_up():
    artifact, result, _ = scored_base("cdnow")
    counts = check_all_reasons(result.scores, result.features, artifact.horizon_days)
    print("reasons by kind on CDNOW:", counts)
    assert sum(counts.values()) > len(result.scores) / 2
