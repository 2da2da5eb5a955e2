"""Training and backtesting with richer inputs (issue 21): the input spec learned at the
as-of date, the input features in the model, the ablation table, and the spec carried to
the scorer, the bundle's card and the training job.

Data: ``generate_inputs(800, seed=SEED)`` (transactions 2023-01-01 .. 2024-12-31, a
customer table whose ``channel`` drives churn, email opens that fade before a dropout).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import churnlens
from churnlens._artifact import BUNDLE_CARD
from churnlens._config import Settings
from churnlens._input_features import NO_INPUTS, InputSpec, InputTables, spec_of
from churnlens._inputs import load_customers, load_events
from churnlens._synthetic import generate_inputs
from churnlens._training import FittedModels, ablation_variants, backtest, fit_models

SEED = 7
HORIZON = 91
AS_OF = dt.date(2024, 6, 30)
print(f"test_training_inputs: generate_inputs(800, seed={SEED})")
SMALL = Settings(model={"n_estimators": 60, "n_jobs": 1}, snapshots={"count": 5},
                 mlflow={"enabled": False})
WHOLE = SMALL.with_overrides({"training.max_snapshot_rows": 0})  # every snapshot row


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, InputTables]:
    generated = generate_inputs(800, seed=SEED)
    transactions = churnlens.load_transactions(generated.transactions).transactions
    tables = InputTables(customers=load_customers(generated.customers,
                                                  valid_from_col="valid_from"),
                         events=load_events(generated.events))
    return transactions, tables


@pytest.fixture(scope="module")
def fitted(data: tuple[pd.DataFrame, InputTables]) -> FittedModels:
    transactions, tables = data
    return fit_models(transactions, AS_OF, SMALL, inputs=tables, calendar=False)


def test_the_model_reads_the_input_features(fitted: FittedModels) -> None:
    model = fitted.churnlens
    spec = model.input_spec_
    assert fitted.input_spec is spec
    assert spec.groups == ("events", "attributes")  # calendar=False
    assert spec.feature_names() and set(spec.feature_names()) <= set(model.base_feature_names_)
    assert "attr_channel" in model.categories_
    assert isinstance(fitted.features["attr_channel"].dtype, pd.CategoricalDtype)
    # the baselines stay the transactions-only reference
    logistic = fitted.baselines["logistic"]
    assert not set(spec.feature_names()) & set(logistic.feature_names_)
    risk = model.predict_proba(fitted.features)[:, 1]
    assert np.isfinite(risk).all() and len(risk) == len(fitted.features)


def test_the_spec_reaches_the_scorer_and_the_card(fitted: FittedModels) -> None:
    model = fitted.churnlens
    scorer = model.to_scorer()
    assert scorer.input_spec_ == model.input_spec_.to_dict()
    assert spec_of(scorer) == model.input_spec_
    np.testing.assert_array_equal(scorer.predict_proba(fitted.features),
                                  model.predict_proba(fitted.features))
    card = churnlens.ModelArtifact(model=model, horizon_days=HORIZON, as_of=AS_OF,
                                   windows_days=(30, 90, 180, 365)).card()
    assert card["inputs"]["groups"] == ["events", "attributes"]
    assert card["inputs"]["features"]["attributes"] == model.input_spec_.features_of(
        "attributes")
    assert "attr_channel" in card["inputs"]["categorical"]
    assert InputSpec.from_dict(card["inputs"]["spec"]) == model.input_spec_


def test_without_inputs_nothing_changes(data: tuple[pd.DataFrame, InputTables]) -> None:
    transactions, _ = data
    plain = fit_models(transactions, AS_OF, SMALL)
    assert plain.input_spec is None and not hasattr(plain.churnlens, "input_spec_")
    assert spec_of(plain.churnlens) == NO_INPUTS
    assert not plain.churnlens.categories_
    assert churnlens.ModelArtifact(model=plain.churnlens, horizon_days=HORIZON, as_of=AS_OF,
                                   windows_days=(30,)).card()["inputs"]["groups"] == []


def test_ablation_variants() -> None:
    assert ablation_variants(("events",)) == [("all", ("events",)), ("none", ())]
    assert [name for name, _ in ablation_variants(("details", "events", "calendar"))] == [
        "all", "without details", "without events", "without calendar", "none"]


@pytest.mark.slow
def test_backtest_ablation_has_one_row_per_variant_and_date(
        data: tuple[pd.DataFrame, InputTables]) -> None:
    transactions, tables = data
    dates = [dt.date(2024, 3, 31), dt.date(2024, 6, 30)]
    result = backtest(transactions, dates, SMALL, inputs=tables, calendar=False)
    table = result.ablation_table()
    variants = ["all", "without events", "without attributes", "none"]
    assert list(zip(table["as_of"], table["variant"], strict=True)) == [
        (d, v) for d in dates for v in variants]
    for run in result.runs:
        rows = {r["variant"]: r for r in run["ablation"]}
        # 'all' is the backtest's own churnlens model, not fitted twice
        assert rows["all"]["auc"] == run["models"]["churnlens"]["auc"]
        assert rows["none"]["input_features"] == 0 and rows["none"]["groups"] == ""
        spec = run["fitted"].input_spec
        assert rows["without events"]["input_features"] == len(spec.features_of("attributes"))
        for row in rows.values():
            assert 0.5 < row["auc"] <= 1 and 0 <= row["brier"] <= 1
            assert row["actual_cohort_retention"] == run["models"]["churnlens"][
                "actual_cohort_retention"]
            assert math.isfinite(row["predicted_cohort_retention"])
        # the variants are fitted models of their own: the transactions-only one differs
        assert rows["none"]["brier"] != rows["all"]["brier"]
    document = json.loads(json.dumps(result.to_dict()))
    assert [r["variant"] for r in document["runs"][0]["ablation"]] == variants
    assert document["runs"][0]["input_spec"]["groups"] == ["events", "attributes"]
    without = backtest(transactions, dates[:1], SMALL, inputs=tables, calendar=False,
                       ablation=False)
    assert without.ablation_table().empty
    assert without.runs[0]["models"]["churnlens"] == result.runs[0]["models"]["churnlens"]


@pytest.mark.slow
def test_cli_train_and_backtest_with_input_files(
        tmp_path: Path, data: tuple[pd.DataFrame, InputTables]) -> None:
    from typer.testing import CliRunner

    from churnlens.cli import app

    generated = generate_inputs(800, seed=SEED)
    generated.transactions.to_csv(tmp_path / "tx.csv", index=False)
    generated.customers.to_csv(tmp_path / "customers.csv", index=False)
    generated.events.to_csv(tmp_path / "events.csv", index=False)
    (tmp_path / "small.yaml").write_text(
        "model:\n  n_estimators: 60\n  n_jobs: 1\nsnapshots:\n  count: 5\n")
    files = ["--customers-file", tmp_path / "customers.csv", "--valid-from-col",
             "valid_from", "--events-file", tmp_path / "events.csv"]

    def run(*args: object) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, [str(a) for a in args])
        return result.exit_code, result.stdout, result.stderr

    code, out, err = run("backtest", "--transactions", tmp_path / "tx.csv", "--as-of",
                         "2024-06-30", "--config", tmp_path / "small.yaml", *files,
                         "--no-calendar", "--json")
    assert code == 0, err
    [run_] = json.loads(out)["runs"]
    assert [r["variant"] for r in run_["ablation"]] == [
        "all", "without events", "without attributes", "none"]
    code, out, err = run("backtest", "--transactions", tmp_path / "tx.csv", "--as-of",
                         "2024-06-30", "--config", tmp_path / "small.yaml", *files,
                         "--no-calendar", "--no-ablation")
    assert code == 0, err
    assert "ablation" not in out and "backtest at 2024-06-30" in out
    code, out, err = run("train", "--transactions", tmp_path / "tx.csv", "--as-of",
                         "2024-06-30", "--config", tmp_path / "small.yaml", *files,
                         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                         "--bundle", tmp_path / "bundle", "--json")
    assert code == 0, err
    summary = json.loads(out)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = mlflow.MlflowClient().get_run(summary["run_id"]).data
    assert logged.params["inputs.groups"].startswith("events,attributes")
    assert logged.params["inputs.event_types"] == "email_open,site_visit"
    assert "backtest.ablation.none.auc" in logged.metrics
    assert summary["inputs"]["groups"][:2] == ["events", "attributes"]
    assert summary["backtest"][0]["ablation"][0]["variant"] == "all"
    card = json.loads((tmp_path / "bundle" / BUNDLE_CARD).read_text())
    assert card["inputs"]["groups"] == summary["inputs"]["groups"]
    assert "attr_channel" in card["features"]
    # without input files, the job is as before: transactions only
    code, out, err = run("backtest", "--transactions", tmp_path / "tx.csv", "--as-of",
                         "2024-06-30", "--config", tmp_path / "small.yaml", "--json")
    assert code == 0, err
    assert "ablation" not in json.loads(out)["runs"][0]


def test_the_seasonal_level_recovers_a_known_shift() -> None:
    from churnlens._model import _fit_season_level

    rng = np.random.default_rng(SEED)
    n = 40_000
    cutoffs = pd.date_range("2023-01-01", periods=12, freq="MS").to_numpy()
    day = pd.DatetimeIndex(rng.choice(cutoffs, n)).dayofyear.to_numpy()
    season = np.column_stack([np.sin(2 * np.pi * day / 365.25),
                              np.cos(2 * np.pi * day / 365.25)])
    raw = rng.normal(-0.5, 1.0, n)
    truth = raw + 0.3 - 0.6 * season[:, 0] + 0.25 * season[:, 1]
    labels = (rng.random(n) < 1 / (1 + np.exp(-truth))).astype(np.int64)
    names = ["recency_days", "season_sin", "season_cos"]
    matrix = np.column_stack([np.zeros(n), season])
    level = _fit_season_level(names, matrix, raw, labels, np.ones(n), cutoffs)
    assert level["used"] is True
    assert level["intercept"] == pytest.approx(0.3, abs=0.05)
    assert level["season_sin"] == pytest.approx(-0.6, abs=0.05)
    assert level["season_cos"] == pytest.approx(0.25, abs=0.05)
    # not asked for, no calendar features, or part of a year only: not used, and why
    assert "not asked" in _fit_season_level(names, matrix, raw, labels, np.ones(n), cutoffs,
                                            enabled=False)["reason"]
    assert not _fit_season_level(names[:1], matrix[:, :1], raw, labels, np.ones(n),
                                 cutoffs)["used"]
    assert "2 of the 4 quarters" in _fit_season_level(names, matrix, raw, labels, np.ones(n),
                                                      cutoffs[:6])["reason"]


@pytest.mark.slow
def test_a_model_with_the_seasonal_level_explains_and_scores_as_its_scorer(
        data: tuple[pd.DataFrame, InputTables]) -> None:
    transactions, _ = data
    settings = SMALL.with_overrides({"snapshots.count": 12, "model.season_level": True})
    fitted = fit_models(transactions, AS_OF, settings, inputs=InputTables(), calendar=True)
    model = fitted.churnlens
    assert model.input_spec_.groups == ("calendar",)
    assert model.season_level_["used"] is True and model.selection_["season_level"] is True
    explanation = model.explain(fitted.features)
    np.testing.assert_allclose(explanation.contributions.sum(axis=1), explanation.log_odds,
                               rtol=0, atol=1e-9)
    scorer = model.to_scorer()
    assert scorer.season_level_ == model.season_level_
    np.testing.assert_array_equal(scorer.predict_proba(fitted.features),
                                  model.predict_proba(fitted.features))
    np.testing.assert_array_equal(scorer.explain(fitted.features).contributions,
                                  explanation.contributions)
    # the shift is one number per date: the ranking at the as-of date is unchanged
    level = model.season_level_
    model.season_level_ = {"used": False}
    unshifted = model.decision_function(fitted.features)
    model.season_level_ = level
    gap = model.decision_function(fitted.features) - unshifted
    np.testing.assert_allclose(gap, gap[0], rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def whole_fit(data: tuple[pd.DataFrame, InputTables], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[FittedModels, Path]:
    transactions, tables = data
    path = tmp_path_factory.mktemp("inputs-scale") / "tx.parquet"
    transactions[["customer_id", "timestamp", "amount"]].to_parquet(path, index=False)
    return fit_models(transactions, AS_OF, WHOLE, inputs=tables, calendar=False), path


@pytest.mark.slow
def test_out_of_core_fits_the_same_model_with_inputs(
        data: tuple[pd.DataFrame, InputTables], whole_fit: tuple[FittedModels, Path]) -> None:
    from churnlens._loading_sql import load_transactions_sql

    _, tables = data
    expected, path = whole_fit
    with load_transactions_sql(path) as view:
        got = fit_models(view, AS_OF, WHOLE, inputs=tables, calendar=False)
    assert got.input_spec == expected.input_spec
    pd.testing.assert_frame_equal(got.features, expected.features)
    np.testing.assert_array_equal(got.churnlens.predict_proba(got.features),
                                  expected.churnlens.predict_proba(expected.features))


@pytest.mark.spark
@pytest.mark.slow
def test_spark_fits_the_same_model_with_inputs(
        spark: object, data: tuple[pd.DataFrame, InputTables],
        whole_fit: tuple[FittedModels, Path]) -> None:
    _, tables = data
    expected, path = whole_fit
    got = fit_models(spark.read.parquet(str(path)), AS_OF, WHOLE,  # type: ignore[attr-defined]
                     inputs=tables, calendar=False)
    assert got.input_spec == expected.input_spec
    np.testing.assert_array_equal(got.churnlens.predict_proba(expected.features),
                                  expected.churnlens.predict_proba(expected.features))
