"""Feature drift (``churnlens._drift``): golden values by hand, a randomized check against
a plain-Python reference, and the profile the fitted model carries for monitoring."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churnlens._drift import (
    PSI_ALERT,
    bin_index,
    profile_against,
    profile_from_counts,
    psi,
    reference_profile,
)


def test_psi_golden() -> None:
    # (0.6 - 0.5) ln(0.6/0.5) + (0.4 - 0.5) ln(0.4/0.5) = 0.1 * 0.182322 + 0.1 * 0.223144
    assert psi([0.5, 0.5], [0.6, 0.4]) == pytest.approx(0.0405465, abs=1e-7)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty bin is floored at 1e-4: (0 - 0.5)... -> (1e-4 - 0.5) ln(1e-4 / 0.5) + ...
    floored = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5)
    assert psi([0.5, 0.5], [0.0, 1.0]) == pytest.approx(floored)
    assert psi([0.5, 0.5], [0.0, 1.0]) > PSI_ALERT
    with pytest.raises(ValueError, match="2 expected shares against 3"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_reference_profile_golden() -> None:
    # 1..10 in five bins: cut points at the 20/40/60/80% quantiles, the data value at or
    # below each (positions 1.8, 3.6, 5.4, 7.2 of 0..9 -> values 2, 4, 6, 8)
    frame = pd.DataFrame({"x": np.arange(1.0, 11.0)})
    ref = reference_profile(frame, ["x"], bins=5)["x"]
    assert ref["edges"] == [2.0, 4.0, 6.0, 8.0]
    assert ref["shares"] == pytest.approx([0.2, 0.2, 0.2, 0.2, 0.2, 0.0])
    assert ref["missing_share"] == 0.0 and ref["rows"] == 10
    assert ref["quantiles"]["p50"] == pytest.approx(5.5)
    # the same population scores PSI 0; everything in the top bin scores high
    assert profile_against(frame, {"x": ref})["x"]["psi"] == 0.0
    moved = profile_against(pd.DataFrame({"x": [9.0, 10.0, 11.0, np.nan]}), {"x": ref})["x"]
    assert moved["shares"] == pytest.approx([0, 0, 0, 0, 0.75, 0.25])
    assert moved["missing_share"] == 0.25 and moved["psi"] > PSI_ALERT


def test_ties_merge_bins_and_constant_features() -> None:
    frame = pd.DataFrame({"few": [0.0] * 80 + [1.0] * 20, "same": [3.0] * 100})
    profile = reference_profile(frame, ["few", "same"])
    assert profile["few"]["edges"] == [0.0]  # one cut: {0} and {1}
    assert profile["few"]["shares"] == pytest.approx([0.8, 0.2, 0.0])
    assert profile["same"]["edges"] == []
    assert profile["same"]["shares"] == pytest.approx([1.0, 0.0])


def test_bin_index_boundaries() -> None:
    assert bin_index(np.array([0.0, 1.0, 1.5, 2.0, 3.0, np.nan]), [1.0, 2.0]).tolist() == [
        0, 0, 1, 1, 2, 3]


def _reference_psi(train: list[float], now: list[float], bins: int) -> float:
    """Plain Python: decile cut points (the value at or below), bins (lo, hi], PSI."""
    ordered = sorted(train)

    def quantile(q: float) -> float:
        return ordered[math.floor(q * (len(ordered) - 1) + 1e-12)]

    cuts = sorted({quantile(k / bins) for k in range(1, bins)})
    cuts = [c for c in cuts if c < ordered[-1]]

    def shares(values: list[float]) -> list[float]:
        counts = [0] * (len(cuts) + 2)
        for v in values:
            counts[sum(1 for c in cuts if v > c)] += 1
        return [c / len(values) for c in counts]

    total = 0.0
    for e, a in zip(shares(train), shares(now), strict=True):
        e, a = max(e, 1e-4), max(a, 1e-4)
        total += (a - e) * math.log(a / e)
    return total


@pytest.mark.parametrize("seed", range(20))
def test_psi_against_a_plain_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    train = rng.gamma(rng.uniform(0.5, 3), size=int(rng.integers(50, 400)))
    now = rng.gamma(rng.uniform(0.5, 3), size=int(rng.integers(20, 300))) * rng.uniform(0.5, 2)
    if seed % 3 == 0:  # discrete values: ties merge bins
        train, now = np.round(train), np.round(now)
    ref = reference_profile(pd.DataFrame({"x": train}), ["x"])
    got = profile_against(pd.DataFrame({"x": now}), ref)["x"]["psi"]
    assert got == pytest.approx(_reference_psi(train.tolist(), now.tolist(), 10), rel=1e-9,
                                abs=1e-12)


def test_profile_from_counts_equals_profile_against() -> None:
    rng = np.random.default_rng(7)
    ref = reference_profile(pd.DataFrame({"x": rng.normal(size=500)}), ["x"])
    now = pd.DataFrame({"x": np.append(rng.normal(0.3, 1.2, size=300), [np.nan] * 5)})
    direct = profile_against(now, ref)
    counts = np.bincount(bin_index(now["x"].to_numpy(), ref["x"]["edges"]),
                         minlength=len(ref["x"]["edges"]) + 2)
    from_counts = profile_from_counts(ref, {"x": counts.tolist()},
                                      {"x": direct["x"]["quantiles"]})
    assert from_counts == direct
    with pytest.raises(ValueError, match="bin counts"):
        profile_from_counts(ref, {"x": [1, 2]}, {})


def test_fitted_model_carries_its_training_profile(tmp_path) -> None:
    """The fitted model and its pickle-free scoring form carry the same reference profile,
    importances (summing to 1) and training risk level."""
    from churnlens import ChurnModel, build_snapshots, generate_transactions
    from churnlens._scorer import ChurnScorer

    tx = generate_transactions(n_customers=600, start="2022-01-01", end="2023-12-31", seed=3)
    snaps = build_snapshots(tx, cutoffs=pd.date_range("2022-06-30", "2023-09-30", freq="QE"),
                            horizon_days=91)
    model = ChurnModel(horizon_days=91, n_estimators=40, min_child_samples=20)
    features = snaps.drop(columns=["churned"])
    model.fit(features, snaps["churned"])
    profile = model.reference_profile_
    assert set(profile) == set(model.base_feature_names_)
    assert profile["recency_days"]["rows"] == len(snaps)
    assert sum(model.importance_.values()) == pytest.approx(1.0)
    assert set(model.importance_) == set(model.base_feature_names_)
    assert model.training_risk_["churn_rate"] == pytest.approx(snaps["churned"].mean())
    assert 0 < model.training_risk_["mean_risk"] < 1
    scorer = model.to_scorer()
    assert isinstance(scorer, ChurnScorer)
    assert scorer.reference_profile_ == profile
    assert scorer.importance_ == model.importance_
    assert scorer.training_risk_ == model.training_risk_
    # the training rows against their own profile: no drift
    again = profile_against(features, profile)
    assert max(p["psi"] for p in again.values()) == pytest.approx(0.0, abs=1e-12)
