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
from churnlens._evaluation import classification_metrics, predict_retention, value_metrics
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
BACKTEST_MODELS = MODELS | {"paretonbd"}  # Pareto/NBD: a baseline of the backtest only
VALUE_PREDICTORS = {"value_model", "paretonbd_gammagamma", "bgnbd_gammagamma", "heuristic",
                    "heuristic_x_retention"}
VALUE_KEYS = {"mae", "rmse", "spearman", "aggregate_error_pct", "predicted_total",
              "actual_total", "predicted_mean", "actual_mean", "customers"}
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
    assert set(result.scores.columns) == {
        "customer_id", "recency_days", "churned", "risk_churnlens", "risk_coin",
        "risk_paretonbd", "spend_actual",
        # no BG/NBD among these models: its value predictor is left out, with a note
        *(f"spend_{name}" for name in VALUE_PREDICTORS - {"bgnbd_gammagamma"})}
    assert [n for n in result.value["notes"] if "no bgnbd_gammagamma" in n]


# --- fitting and the backtest document -------------------------------------------------


@pytest.fixture(scope="module")
def result(transactions: pd.DataFrame) -> BacktestResult:
    return backtest(transactions, ["2024-09-30", "2024-06-30"], SMALL)


def test_backtest_json_document_has_the_documented_shape(result: BacktestResult) -> None:
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(document) == {"runs", "interval_coverage"}
    coverage = document["interval_coverage"]
    assert set(coverage) == BACKTEST_MODELS
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
        assert set(run) == {"as_of", "horizon_days", "models", "warnings", "model",
                            "baseline_fits", "value"}
        fit = run["baseline_fits"]["paretonbd"]
        assert fit["used"] is True and fit["reason"] is None and fit["converged"] is True
        assert set(fit["params"]) == {"r", "alpha", "s", "beta"}
        value = run["value"]
        assert set(value["models"]) == set(value["predictors"]) == VALUE_PREDICTORS
        for metrics in value["models"].values():
            assert set(metrics) == VALUE_KEYS
        assert len({m["actual_total"] for m in value["models"].values()}) == 1
        assert run["horizon_days"] == HORIZON
        assert all(isinstance(note, str) and note for note in run["warnings"])
        assert {"selection", "dropped_inputs", "level_error", "history_days",
                "short_history", "bgnbd_flags", "warnings", "season_level"} == set(run["model"])
        assert run["model"]["selection"]["chosen"] in ("blend", "bgnbd")
        assert set(run["models"]) == BACKTEST_MODELS
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
    assert len(table) == 2 * len(BACKTEST_MODELS)
    assert len(result.value_table()) == 2 * len(VALUE_PREDICTORS)
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


# --- the Pareto/NBD baseline and the value backtest (issue 20, items 1 and 4) ---------


def _oracle_fitted(transactions: pd.DataFrame, as_of: dt.date) -> FittedModels:
    from churnlens._bgnbd import BGNBDModel

    features = churnlens.compute_features(transactions, as_of)
    truth = churnlens.compute_labels(transactions, as_of, HORIZON).set_index(
        "customer_id")["churned"].astype(int)
    return FittedModels(
        as_of=as_of, horizon_days=HORIZON, churnlens=_Oracle(truth),  # type: ignore[arg-type]
        baselines={"bgnbd": BGNBDModel(horizon_days=HORIZON).fit(features)}, cutoffs=[],
        snapshot_rows=0, validation={}, features=features, validation_frame=features)


def test_paretonbd_baseline_is_scored_like_every_baseline(transactions: pd.DataFrame) -> None:
    from churnlens._paretonbd import ParetoNBDModel

    as_of = dt.date(2024, 6, 30)
    fitted = _oracle_fitted(transactions, as_of)
    result = evaluate_models(fitted, transactions)
    pnbd = ParetoNBDModel(horizon_days=HORIZON).fit(fitted.features)
    expected = pnbd.predict_churn_risk(fitted.features)
    np.testing.assert_allclose(result.scores["risk_paretonbd"], expected)
    metrics = result.metrics["paretonbd"]
    assert metrics == pytest.approx(
        {**classification_metrics(result.scores["churned"], expected), **{
            k: v for k, v in metrics.items() if k not in classification_metrics([0, 1], [0, 1])}},
        nan_ok=True)
    # sane: better than a coin, a level near the truth, every retention figure there
    assert 0.6 < metrics["auc"] < 1 and metrics["brier"] < 0.25
    assert abs(metrics["predicted_retention"] - metrics["actual_retention"]) < 15
    assert METRIC_KEYS <= set(metrics)
    fit = result.baseline_fits["paretonbd"]
    assert fit["used"] and fit["reason"] is None and fit["params"] == pnbd.params_
    assert not [n for n in result.notes if "Pareto/NBD" in n]


@pytest.mark.parametrize("failure", ["boundary", "not converged", "raises"])
def test_paretonbd_baseline_that_cannot_be_used_is_empty_with_its_reason(
    transactions: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    from churnlens._paretonbd import ParetoNBDModel
    from churnlens.exceptions import ModelError

    real_fit = ParetoNBDModel.fit

    def broken_fit(self: ParetoNBDModel, features: pd.DataFrame, y: object = None
                   ) -> ParetoNBDModel:
        if failure == "raises":
            raise ModelError("forced failure in a test")
        real_fit(self, features)
        if failure == "boundary":
            self.boundary_ = "no dropout (forced in a test)"
        else:
            self.converged_, self.fit_message_ = False, "ABNORMAL (forced in a test)"
        return self

    monkeypatch.setattr(ParetoNBDModel, "fit", broken_fit)
    as_of = dt.date(2024, 6, 30)
    result = evaluate_models(_oracle_fitted(transactions, as_of), transactions)
    metrics = result.metrics["paretonbd"]
    assert set(metrics) == set(result.metrics["churnlens"])
    assert all(math.isnan(v) for k, v in metrics.items() if k != "customers")
    assert metrics["customers"] == result.metrics["churnlens"]["customers"]
    assert "risk_paretonbd" not in result.scores
    fit = result.baseline_fits["paretonbd"]
    reason = {"boundary": "boundary of the parameter space (no dropout (forced in a test))",
              "not converged": "did not converge (ABNORMAL (forced in a test))",
              "raises": "fit failed (ModelError: forced failure in a test)"}[failure]
    assert fit["used"] is False and reason in fit["reason"]
    assert [n for n in result.notes if n.startswith("Pareto/NBD baseline at 2024-06-30: no "
                                                    "metrics") and reason in n]
    # the value backtest's Pareto/NBD predictor is left out too, with a note; the rest run
    value = result.value["models"]
    assert math.isnan(value["paretonbd_gammagamma"]["mae"])
    assert not math.isnan(value["bgnbd_gammagamma"]["mae"])
    assert any("paretonbd_gammagamma" in n for n in result.value["notes"])
    # and the JSON document says it plainly, with nulls, not NaN
    doc = BacktestResult(HORIZON, [{"as_of": as_of, "models": result.metrics,
                                    "baseline_fits": result.baseline_fits,
                                    "value": result.value, "warnings": result.notes}]).to_dict()
    run = json.loads(json.dumps(doc, allow_nan=False))["runs"][0]
    assert run["models"]["paretonbd"]["auc"] is None
    assert reason in run["baseline_fits"]["paretonbd"]["reason"]
    assert any(reason in w for w in run["warnings"])


def test_value_backtest_pairs_each_predictor_with_the_actual_spend(
    transactions: pd.DataFrame
) -> None:
    from churnlens._rules import heuristic_expected_value

    as_of = dt.date(2024, 6, 30)
    end = as_of + dt.timedelta(days=HORIZON)
    fitted = _oracle_fitted(transactions, as_of)
    result = evaluate_models(fitted, transactions)
    scores = result.scores
    # the truth, by hand: per customer and day the net amount, occasions only (net > 0)
    window = transactions.loc[(transactions["timestamp"].dt.date > as_of)
                              & (transactions["timestamp"].dt.date <= end)]
    daily = window.groupby(["customer_id", window["timestamp"].dt.date])["amount"].sum()
    by_hand = daily[daily > 1e-9].groupby(level=0).sum()
    expected = scores["customer_id"].map(by_hand).fillna(0.0)
    np.testing.assert_allclose(scores["spend_actual"], expected, rtol=1e-12, atol=1e-9)
    assert (scores["spend_actual"] > 0).sum() == (scores["churned"] == 0).sum()
    heuristic = heuristic_expected_value(fitted.features, HORIZON)
    np.testing.assert_allclose(scores["spend_heuristic"], heuristic)
    np.testing.assert_allclose(scores["spend_heuristic_x_retention"],
                               heuristic * (1 - scores["risk_churnlens"]))
    for name in VALUE_PREDICTORS:
        metrics = result.value["models"][name]
        assert metrics == pytest.approx(
            value_metrics(scores["spend_actual"], scores[f"spend_{name}"])), name
        # customers acquired by A only: the new ones of (A, A + H] are not scored
        assert metrics["actual_total"] == pytest.approx(expected.sum())
        assert metrics["actual_total"] < by_hand.sum()
    # the model-based predictions are the models' own: purchases x spend per purchase
    pnbd = result.value["models"]["paretonbd_gammagamma"]
    assert 0 < pnbd["spearman"] < 1 and abs(pnbd["aggregate_error_pct"]) < 50
    assert result.value["notes"] == []


def test_paretonbd_baseline_reuses_the_value_models_fit(result: BacktestResult) -> None:
    from churnlens._paretonbd import ParetoNBDModel

    run = result.runs[-1]
    fitted: FittedModels = run["fitted"]
    fit = run["baseline_fits"]["paretonbd"]
    assert fit["fitted_by"].startswith("the churnlens model's value model")
    fresh = ParetoNBDModel(horizon_days=HORIZON).fit(fitted.features)
    assert fit["params"] == pytest.approx(fresh.params_)
    np.testing.assert_allclose(run["scores"]["risk_paretonbd"],
                               fresh.predict_churn_risk(fitted.features), rtol=1e-9)


def test_paretonbd_baseline_says_why_when_the_value_model_fell_back(
    transactions: pd.DataFrame
) -> None:
    from churnlens._training import fit_paretonbd_baseline
    from churnlens._value import ValueModel

    features = churnlens.compute_features(transactions, dt.date(2024, 6, 30))
    fallback = ValueModel(
        purchase_model="bg/nbd", purchase_params={"r": 1.0, "alpha": 9.0, "a": 1.0, "b": 2.0},
        spend_params=None, customers=len(features),
        notes=("the Pareto/NBD fit is on a boundary (no dropout): purchases from BG/NBD "
               "instead",))
    model, fit = fit_paretonbd_baseline(features, HORIZON, value_model=fallback)
    assert model is None and fit["used"] is False
    assert fit["reason"] == fallback.notes[0]
    # a value model fitted on other customers is not reused: a fit of its own
    other = dataclasses.replace(fallback, customers=len(features) - 1)
    model, fit = fit_paretonbd_baseline(features, HORIZON, value_model=other)
    assert model is not None and fit["used"] and fit["fitted_by"] == "this backtest"
