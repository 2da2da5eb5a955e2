"""Training and backtesting: cutoffs, refusals, the predicted/actual retention pairing
and the backtest's JSON document.

Data: ``generate_transactions(1500, seed=SEED)`` over 2023-01-01 .. 2024-12-31.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest

import churnlens
from churnlens._config import Settings
from churnlens._evaluation import predict_retention
from churnlens._training import (
    BacktestResult,
    FittedModels,
    backtest,
    evaluate_models,
    fit_models,
    snapshot_cutoffs,
)
from churnlens.exceptions import DataValidationError

SEED = 5
HORIZON = 91
print(f"test_training: generate_transactions(1500, seed={SEED})")
# Small and quick: the protocol is what these tests check, not model quality.
SMALL = Settings(model={"n_estimators": 60, "n_jobs": 1}, snapshots={"count": 5},
                 mlflow={"enabled": False})
MODELS = {"churnlens", "bgnbd", "recency", "logistic"}
METRIC_KEYS = {
    "auc", "pr_auc", "brier", "log_loss", "lift_top_decile", "predicted_retention",
    "actual_retention", "predicted_cohort_retention", "actual_cohort_retention",
    "predicted_crr", "actual_crr",
}


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    return churnlens.load_transactions(
        churnlens.generate_transactions(1500, seed=SEED)).transactions


def _dates(values: list[dt.date]) -> list[str]:
    return [str(v) for v in values]


# --- snapshot cutoffs ----------------------------------------------------------------


@pytest.mark.parametrize(("as_of", "horizon", "every", "count", "expected"), [
    # month steps from as-of - horizon; month ends clip (leap February)
    ("2024-06-30", 91, "month", 4, ["2023-12-31", "2024-01-31", "2024-02-29", "2024-03-31"]),
    ("1997-12-31", 91, "month", 3, ["1997-08-01", "1997-09-01", "1997-10-01"]),
    ("2024-06-30", 91, "quarter", 3, ["2023-09-30", "2023-12-31", "2024-03-31"]),
    ("2024-01-31", 28, "week", 3, ["2023-12-20", "2023-12-27", "2024-01-03"]),
    ("2024-01-31", 1, "10d", 3, ["2024-01-10", "2024-01-20", "2024-01-30"]),
    ("2024-03-01", 1, "1d", 2, ["2024-02-28", "2024-02-29"]),
])
def test_snapshot_cutoffs_golden(as_of: str, horizon: int, every: str, count: int,
                                 expected: list[str]) -> None:
    cutoffs = snapshot_cutoffs(as_of, horizon, every=every, count=count)
    assert _dates(cutoffs) == expected
    # the latest cutoff's horizon ends exactly at the as-of date: labels complete there
    assert cutoffs[-1] + dt.timedelta(days=horizon) == dt.date.fromisoformat(as_of)


def test_snapshot_cutoffs_are_clipped_at_the_first_day() -> None:
    full = snapshot_cutoffs("2024-06-30", 91, every="month", count=6)
    assert _dates(full) == ["2023-10-31", "2023-11-30", "2023-12-31", "2024-01-31",
                            "2024-02-29", "2024-03-31"]
    # A cutoff on the first day itself has no history before it: left out too.
    clipped = snapshot_cutoffs("2024-06-30", 91, every="month", count=6,
                               first_day=dt.date(2023, 12, 31))
    assert _dates(clipped) == ["2024-01-31", "2024-02-29", "2024-03-31"]
    assert snapshot_cutoffs("2024-06-30", 91, count=6, first_day=dt.date(2024, 4, 1)) == []


@pytest.mark.parametrize("every", ["fortnight", "0d", "d", "-3d", "7"])
def test_snapshot_cutoffs_refuse_unknown_frequencies(every: str) -> None:
    with pytest.raises(DataValidationError, match=r"week, month, quarter or '<N>d'"):
        snapshot_cutoffs("2024-06-30", 91, every=every)


# --- refusals ---------------------------------------------------------------------------


def test_fit_models_refuses_too_little_history(transactions: pd.DataFrame) -> None:
    # Data start 2023-01-01; 2023-04-15 - 91 days = 2023-01-14, and the cutoff a month
    # before is before the data: one cutoff, none left to train on once it is held out.
    with pytest.raises(DataValidationError) as info:
        fit_models(transactions, "2023-04-15", SMALL)
    message = str(info.value)
    assert "only 1 training cutoff(s)" in message
    assert "first day of the data (2023-01-01)" in message
    assert "as-of - horizon (2023-01-14)" in message
    assert "Suggestion: use a later --as-of" in message
    with pytest.raises(DataValidationError, match="no transactions on or before 2022-12-31"):
        fit_models(transactions, "2022-12-31", SMALL)


def test_backtest_refuses_an_as_of_whose_horizon_passes_the_data(
    transactions: pd.DataFrame
) -> None:
    # The data end 2024-12-31: 2024-10-31 + 91 days = 2025-01-30 is not observed.
    with pytest.raises(DataValidationError) as info:
        backtest(transactions, ["2024-06-30", "2024-10-31"], SMALL)
    message = str(info.value)
    assert "cannot backtest at 2024-10-31: its horizon ends 2025-01-30" in message
    assert "after the end of the data (2024-12-31)" in message
    assert "on or before 2024-10-01" in message
    with pytest.raises(DataValidationError, match="at least one as-of date"):
        backtest(transactions, [], SMALL)


def test_evaluate_refuses_an_unobserved_horizon(transactions: pd.DataFrame) -> None:
    history = transactions.loc[transactions["timestamp"] < "2024-08-01"]
    fitted = fit_models(history, "2024-06-30", SMALL)
    with pytest.raises(DataValidationError, match="horizon ends 2024-09-29 but the data ends"):
        evaluate_models(fitted, history)


# --- the predicted / actual pairing (retention.md, "W = L = H") ------------------------


@pytest.mark.parametrize("as_of", ["2024-03-31", "2024-06-30", "2024-07-15"])
def test_truth_as_risk_reproduces_the_actual_rates(
    transactions: pd.DataFrame, as_of: str
) -> None:
    """With p = churned, predicted cohort retention and CRR are the actual ones."""
    start = dt.date.fromisoformat(as_of)
    end = start + dt.timedelta(days=HORIZON)
    features = churnlens.compute_features(transactions, start)
    truth = churnlens.compute_labels(transactions, start, HORIZON)
    frame = features.merge(truth, on="customer_id", validate="one_to_one")
    predicted = predict_retention(frame["recency_days"], frame["churned"].astype(float),
                                  window_days=HORIZON)
    actual = churnlens.retention_rates(transactions, start, end, window_days=HORIZON)
    assert predicted.S == actual.S and predicted.S > 100
    assert predicted.cohort_retention == pytest.approx(actual.cohort_retention, abs=1e-9)
    assert predicted.crr == pytest.approx(actual.crr, abs=1e-9)
    # reactivated customers are what separates the two (crr = cohort + reactivated / S)
    assert actual.reactivated > 0 and predicted.crr > predicted.cohort_retention


@dataclasses.dataclass
class _Oracle:
    """A 'model' that knows the future: its risk is the true label."""

    truth: pd.Series  # churned by customer_id

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        risk = frame["customer_id"].map(self.truth).to_numpy(dtype=float)
        return np.column_stack([1 - risk, risk])


def test_evaluate_models_pairs_risks_with_the_actual_rates(transactions: pd.DataFrame) -> None:
    as_of = dt.date(2024, 6, 30)
    features = churnlens.compute_features(transactions, as_of)
    truth = churnlens.compute_labels(transactions, as_of, HORIZON).set_index(
        "customer_id")["churned"].astype(int)
    oracle = _Oracle(truth)
    always = _Oracle(pd.Series(0.5, index=truth.index))
    fitted = FittedModels(
        as_of=as_of, horizon_days=HORIZON, churnlens=oracle,  # type: ignore[arg-type]
        baselines={"coin": always}, cutoffs=[], snapshot_rows=0, validation={},
        features=features, validation_frame=features)
    result = evaluate_models(fitted, transactions)
    exact, coin = result.metrics["churnlens"], result.metrics["coin"]
    actual = churnlens.retention_rates(transactions, as_of, as_of + dt.timedelta(days=HORIZON))
    assert exact["auc"] == 1.0 and exact["brier"] == 0.0
    assert exact["predicted_retention"] == exact["actual_retention"]
    assert exact["actual_retention"] == pytest.approx(100 * (1 - truth.mean()))
    assert exact["predicted_cohort_retention"] == pytest.approx(actual.cohort_retention)
    assert exact["actual_cohort_retention"] == pytest.approx(actual.cohort_retention)
    assert exact["predicted_crr"] == pytest.approx(actual.crr)
    assert exact["actual_crr"] == pytest.approx(actual.crr)
    # the interval around an exact prediction has zero width; a coin's is wide
    assert exact["predicted_crr_low"] == exact["predicted_crr_high"] == exact["predicted_crr"]
    assert coin["auc"] == 0.5 and coin["predicted_cohort_retention"] == pytest.approx(50.0)
    assert coin["predicted_crr_high"] - coin["predicted_crr_low"] > 1
    # the scores frame: one row per customer acquired by the as-of date
    assert len(result.scores) == len(features)
    assert set(result.scores.columns) == {"customer_id", "recency_days", "churned",
                                          "risk_churnlens", "risk_coin"}


# --- fitting and the backtest document -------------------------------------------------


@pytest.fixture(scope="module")
def result(transactions: pd.DataFrame) -> BacktestResult:
    return backtest(transactions, ["2024-09-30", "2024-06-30"], SMALL)


def test_backtest_json_document_has_the_documented_shape(result: BacktestResult) -> None:
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(document) == {"runs", "interval_coverage"}
    coverage = document["interval_coverage"]
    assert set(coverage) == MODELS
    for name, entry in coverage.items():
        # recomputed by hand from the runs' own numbers
        for rate in ("cohort_retention", "crr"):
            models = [run["models"][name] for run in document["runs"]]
            inside = sum(m[f"predicted_{rate}_low"] <= m[f"actual_{rate}"]
                         <= m[f"predicted_{rate}_high"] for m in models)
            assert entry[f"{rate}_inside"] == inside, (name, rate)
            assert entry[f"{rate}_coverage"] == pytest.approx(100 * inside / 2)
        assert entry["stated"] == 95.0 and entry["dates"] == 2
    assert [run["as_of"] for run in document["runs"]] == ["2024-06-30", "2024-09-30"]
    for run in document["runs"]:
        assert set(run) == {"as_of", "horizon_days", "models", "warnings", "model"}
        assert run["horizon_days"] == HORIZON
        assert all(isinstance(note, str) and note for note in run["warnings"])
        assert {"selection", "dropped_inputs", "level_error", "history_days",
                "short_history", "bgnbd_flags", "warnings"} == set(run["model"])
        assert run["model"]["selection"]["chosen"] in ("blend", "bgnbd")
        assert set(run["models"]) == MODELS
        for name, metrics in run["models"].items():
            assert METRIC_KEYS <= set(metrics), name
            assert all(v is None or isinstance(v, int | float) for v in metrics.values())
        actual = {m["actual_retention"] for m in run["models"].values()}
        assert len(actual) == 1  # one truth for every model


def test_backtest_numbers_are_the_measured_ones(
    result: BacktestResult, transactions: pd.DataFrame
) -> None:
    for run in result.runs:
        as_of = run["as_of"]
        end = as_of + dt.timedelta(days=HORIZON)
        labels = churnlens.compute_labels(transactions, as_of, HORIZON)
        rates = churnlens.retention_rates(transactions, as_of, end, window_days=HORIZON)
        for name, metrics in run["models"].items():
            assert metrics["actual_retention"] == pytest.approx(
                100 * (1 - labels["churned"].astype(int).mean())), name
            assert metrics["actual_cohort_retention"] == pytest.approx(rates.cohort_retention)
            assert metrics["actual_crr"] == pytest.approx(rates.crr)
            assert 0.5 < metrics["auc"] <= 1 and 0 <= metrics["brier"] < 0.25, name
            assert abs(metrics["predicted_retention"] - metrics["actual_retention"]) < 15, name
        # the models were trained at A from history <= A only
        fitted: FittedModels = run["fitted"]
        assert fitted.as_of == as_of
        assert max(fitted.cutoffs) + dt.timedelta(days=HORIZON) <= as_of
        assert fitted.features["as_of"].dt.date.eq(as_of).all()
    table = result.table()
    assert len(table) == 2 * len(MODELS)
    assert list(table.columns[:2]) == ["as_of", "model"]


def test_transactions_after_the_as_of_date_are_never_seen(transactions: pd.DataFrame) -> None:
    as_of = "2024-06-30"
    history = transactions.loc[transactions["timestamp"] < "2024-07-01"]
    with_future = fit_models(transactions, as_of, SMALL)
    without = fit_models(history, as_of, SMALL)
    assert with_future.cutoffs == without.cutoffs
    assert with_future.snapshot_rows == without.snapshot_rows
    assert with_future.churnlens.best_iteration_ == without.churnlens.best_iteration_
    # equal up to DuckDB's last-bit float sums (see test_model)
    np.testing.assert_allclose(
        with_future.churnlens.predict_proba(with_future.features)[:, 1],
        without.churnlens.predict_proba(without.features)[:, 1], rtol=0, atol=2e-5)
    assert with_future.validation["churnlens"]["auc"] == pytest.approx(
        without.validation["churnlens"]["auc"], abs=1e-4)


def test_fit_models_validation_is_on_the_held_out_cutoff(result: BacktestResult) -> None:
    fitted: FittedModels = result.runs[-1]["fitted"]
    latest = max(fitted.cutoffs)
    assert fitted.churnlens.validation_cutoffs_ == [pd.Timestamp(latest)]
    assert fitted.validation_frame["cutoff"].dt.date.eq(latest).all()
    assert set(fitted.validation) == MODELS  # every baseline on the same rows
    for metrics in fitted.validation.values():
        assert metrics["customers"] == len(fitted.validation_frame)
        assert not math.isnan(metrics["auc"])
