"""Scoring on Spark (local mode): the same scores, segments, reasons and summary as DuckDB."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import churnlens
from churnlens._config import load_config
from churnlens._evaluation import predict_retention
from churnlens._scoring import SCORE_COLUMNS, score_customers
from churnlens._value import VALUE_COLUMNS

pytestmark = pytest.mark.spark

SEED = 13
TRAIN_AS_OF = "2024-03-31"
AS_OF = "2024-04-30"
FAST = {"mlflow.enabled": False, "backtest_steps": 0, "snapshots.count": 6,
        "model.n_estimators": 60, "model.min_child_samples": 40,
        "model.early_stopping_rounds": 20}


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    print(f"synthetic transactions seed: {SEED}")
    raw = churnlens.generate_transactions(2000, seed=SEED, start="2023-01-01",
                                          end="2024-06-30")
    return churnlens.load_transactions(raw).transactions


@pytest.fixture(scope="module")
def artifact(transactions):
    from churnlens._pipeline import train

    return train(transactions, as_of=TRAIN_AS_OF, settings=load_config(overrides=FAST)).artifact


@pytest.fixture(scope="module")
def parquet(transactions, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spark_scoring") / "tx.parquet"
    transactions[["customer_id", "timestamp", "amount"]].to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def duck(transactions, artifact):
    return score_customers(transactions, AS_OF, artifact)


@pytest.fixture(scope="module")
def on_spark(spark, parquet, artifact):
    from churnlens._spark_scoring import _collect, score_spark, summarise_spark

    sdf = spark.read.parquet(str(parquet))
    scores = score_spark(sdf, AS_OF, artifact).persist()
    frame = _collect(scores)
    summary = summarise_spark(scores, sdf, pd.Timestamp(AS_OF).date(), artifact)
    return scores, frame, summary


def assert_same_scores(spark_frame: pd.DataFrame, duck_frame: pd.DataFrame) -> None:
    assert list(spark_frame.columns) == list(duck_frame.columns)
    assert spark_frame["customer_id"].tolist() == duck_frame["customer_id"].tolist()
    # floats summed in another order by the engines may differ in the last bits; the value
    # columns (issue 20) are empty (NaN) on both or close
    floats = ("churn_risk", "expected_value", "value_at_risk", "monetary_total", *VALUE_COLUMNS)
    for column in floats:
        np.testing.assert_allclose(spark_frame[column], duck_frame[column], rtol=1e-9,
                                   atol=1e-9, err_msg=column)
    assert duck_frame["clv"].notna().all()
    for column in spark_frame.columns:
        if column not in floats:
            assert spark_frame[column].astype(str).tolist() == duck_frame[column].astype(
                str).tolist(), column


def test_spark_returns_a_spark_dataframe_with_the_same_columns(on_spark):
    scores, _, _ = on_spark
    assert type(scores).__module__.startswith("pyspark.")
    assert scores.columns == SCORE_COLUMNS
    assert dict(scores.dtypes)["as_of"] == "date"


def test_spark_and_duckdb_give_the_same_scores(on_spark, duck):
    _, frame, _ = on_spark
    assert_same_scores(frame, duck.scores)  # risk within 1e-9; bands, segments, reasons equal
    # reasons only where the history shows what raises the risk (issue 16): most of the
    # high-risk customers have one
    high = duck.scores["risk_band"] == "high"
    assert (duck.scores.loc[high, "reason_1"] != "").mean() > 0.8


def test_spark_summary_matches(on_spark, duck):
    _, _, summary = on_spark
    expected = duck.summary

    def close(a, b, path=""):
        if isinstance(a, dict):
            assert set(a) == set(b), path
            for key in a:
                close(a[key], b[key], f"{path}.{key}")
        elif isinstance(a, list):
            assert len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                close(x, y, f"{path}[{i}]")
        elif isinstance(a, float):
            assert b == pytest.approx(a, rel=1e-9, abs=1e-9), path
        else:
            assert a == b, path

    close({k: v for k, v in expected.items() if k != "engine"},
          {k: v for k, v in summary.items() if k != "engine"})


def assert_same_prediction(got: dict, expected: dict) -> None:
    """Numbers to 1e-12 (relative), text (what the interval covers) exactly."""
    assert set(got) == set(expected)
    text = {k for k, v in expected.items() if isinstance(v, str)}
    assert {k: got[k] for k in text} == {k: expected[k] for k in text}
    assert {k: v for k, v in got.items() if k not in text} == pytest.approx(
        {k: v for k, v in expected.items() if k not in text}, rel=1e-12)


def test_predicted_retention_from_sums_equals_the_arrays_version():
    from churnlens._spark_scoring import _predicted_retention

    rng = np.random.default_rng(4)
    risk = rng.random(500)
    recency = rng.integers(0, 300, 500)
    expected = predict_retention(recency, risk, window_days=91).to_dict()
    active = recency < 91
    got = _predicted_retention(
        window_days=91, S=int(active.sum()), acquired=500,
        stay_active=float((1 - risk[active]).sum()),
        var_active=float((risk[active] * (1 - risk[active])).sum()),
        stay_all=float((1 - risk).sum()), var_all=float((risk * (1 - risk)).sum()),
        lost_active=float(risk[active].sum()))
    assert_same_prediction(got, expected)
    # widened by the model's level error the same way
    level = {"half_width_cohort_retention": 3.5, "half_width_crr": 6.0}
    widened = predict_retention(recency, risk, window_days=91, level_error=level).to_dict()
    got = _predicted_retention(
        window_days=91, S=int(active.sum()), acquired=500,
        stay_active=float((1 - risk[active]).sum()),
        var_active=float((risk[active] * (1 - risk[active])).sum()),
        stay_all=float((1 - risk).sum()), var_all=float((risk * (1 - risk)).sum()),
        lost_active=float(risk[active].sum()), level_error=level)
    assert_same_prediction(got, widened)
    assert got["crr_high"] > expected["crr_high"] and got["level_error_crr"] == 6.0
    empty = _predicted_retention(window_days=91, S=0, acquired=0, stay_active=0.0,
                                 var_active=0.0, stay_all=0.0, var_all=0.0, lost_active=0.0)
    assert empty["crr"] is None or math.isnan(empty["crr"])


def test_last_actual_rates_on_spark_follow_retention_md(spark, golden_transactions, tmp_path):
    import datetime as dt

    from churnlens._spark_scoring import last_actual_rates

    path = tmp_path / "golden.parquet"
    golden_transactions.to_parquet(path, index=False)
    rates = last_actual_rates(spark.read.parquet(str(path)), dt.date(2024, 6, 30), 91)
    expected = churnlens.retention_rates(golden_transactions, "2024-03-31", "2024-06-30")
    assert rates.to_dict() == expected.to_dict()
    assert (rates.S, rates.E, rates.N, rates.crr) == (3, 4, 1, 100.0)


def test_spark_udf_on_the_pyfunc_gives_the_same_risk(spark, artifact, duck, tmp_path):
    """The registered pyfunc under mlflow.pyfunc.spark_udf agrees with the native path."""
    import mlflow
    import mlflow.pyfunc

    import churnlens._tracking
    from churnlens._artifact import save_bundle

    save_bundle(artifact, tmp_path / "bundle")
    features = duck.features[["customer_id", *artifact.feature_names]].astype(
        {n: "float64" for n in artifact.feature_names})
    example = features[artifact.feature_names].head(5)
    signature = mlflow.models.infer_signature(
        example, pd.DataFrame({"churn_risk": artifact.churn_risk(example)}))
    # the model-from-code file log_training_run logs
    code = Path(churnlens._tracking.__file__).with_name("_mlflow_model.py")
    mlflow.pyfunc.save_model(str(tmp_path / "pyfunc"), python_model=str(code),
                             artifacts={"bundle": str(tmp_path / "bundle")},
                             signature=signature)
    path = tmp_path / "features.parquet"
    features.to_parquet(path, index=False)
    sdf = spark.read.parquet(str(path))
    udf = mlflow.pyfunc.spark_udf(spark, str(tmp_path / "pyfunc"), result_type="double",
                                  env_manager="local")
    scored = sdf.select("customer_id", udf(*artifact.feature_names).alias("churn_risk"))
    out = tmp_path / "udf"
    scored.write.parquet(str(out))
    got = pd.read_parquet(out).sort_values("customer_id", ignore_index=True)
    np.testing.assert_allclose(got["churn_risk"], duck.scores["churn_risk"], rtol=0,
                               atol=1e-9)


def test_cli_engine_spark(spark, parquet, artifact, duck, tmp_path):
    from churnlens._artifact import save_bundle
    from churnlens.cli import app

    save_bundle(artifact, tmp_path / "bundle")
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(app, ["score", "-t", str(parquet), "--as-of", AS_OF, "--model",
                                      str(tmp_path / "bundle"), "--out", str(out),
                                      "--engine", "spark", "--master", "local[2]",
                                      "--json-summary"])
    assert result.exit_code == 0, result.stderr
    assert_same_scores(pd.read_parquet(out), duck.scores)


def test_spark_read_refuses_bad_timestamps(spark, tmp_path, artifact):
    from churnlens._spark_scoring import read_transactions
    from churnlens.exceptions import DataValidationError

    path = tmp_path / "bad.csv"
    path.write_text("customer_id,timestamp,amount\n007,2024-01-02,10\n008,yesterday,5\n"
                    ",2024-01-03,4\n")
    with pytest.raises(DataValidationError, match=r"'timestamp'.*yesterday"):
        read_transactions(spark, path, pd.Timestamp(AS_OF).date(), load_config())
    path.write_text("customer_id,timestamp,amount\n007,2024-01-02,10\n,2024-01-03,4\n")
    with pytest.raises(DataValidationError, match="end 2024-01-02, 119 days before"):
        read_transactions(spark, path, pd.Timestamp(AS_OF).date(), load_config())
    tx, cleaning = read_transactions(spark, path, pd.Timestamp(AS_OF).date(), load_config(
        overrides={"data.max_staleness_days": 119}))
    assert cleaning["dropped_missing_customer_id"] == 1
    assert [r["customer_id"] for r in tx.collect()] == ["007"]  # ids stay text


def test_spark_read_follows_the_delimiter_setting(spark, tmp_path):
    from churnlens._spark_scoring import read_transactions

    path = tmp_path / "semicolons.csv"
    path.write_text("customer_id;timestamp;amount\n007;2024-01-02;10\n008;2024-01-03;5\n")
    settings = load_config(overrides={"data.delimiter": ";", "data.max_staleness_days": 365})
    tx, _ = read_transactions(spark, path, pd.Timestamp(AS_OF).date(), settings)
    assert sorted(r["customer_id"] for r in tx.select("customer_id").collect()) == ["007", "008"]
