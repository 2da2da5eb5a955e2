"""Training at scale (issue 19): snapshots kept by the engine and sampled to the driver.

The out-of-core path (a file read by DuckDB into a view) and Spark build the same labelled
snapshots as the pandas path, draw the same stratified sample, and with sampling off fit the
same model to the bit. Data: ``generate_transactions(1500, seed=SEED)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import churnlens
from churnlens._config import Settings
from churnlens._features import build_snapshots, sample_quotas, training_snapshots
from churnlens._loading_sql import load_transactions_sql
from churnlens._training import backtest, day_range, fit_models, period_rows

SEED = 11
HORIZON = 91
AS_OF = dt.date(2024, 9, 30)
CUTOFFS = ["2023-12-31", "2024-03-31", "2024-06-30"]
print(f"test_training_scale: generate_transactions(1500, seed={SEED})")
SMALL = Settings(model={"n_estimators": 60, "n_jobs": 1}, snapshots={"count": 5},
                 mlflow={"enabled": False}, training={"max_snapshot_rows": 0})


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    return churnlens.load_transactions(
        churnlens.generate_transactions(1500, seed=SEED)).transactions


@pytest.fixture(scope="module")
def parquet(transactions: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("train-scale") / "tx.parquet"
    transactions.to_parquet(path, index=False)
    return path


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame["churned"].notna()].reset_index(drop=True)


# --- the sampling rule ---------------------------------------------------------------


def test_quotas_are_proportional_floors_and_all_rows_when_they_fit() -> None:
    counts = {("a", 0): 101, ("a", 1): 899, ("b", 0): 7, ("b", 1): 3}
    assert sample_quotas(counts, None) == counts
    assert sample_quotas(counts, 0) == counts
    assert sample_quotas(counts, 1010) == counts
    quotas = sample_quotas(counts, 100)
    assert quotas == {("a", 0): 10, ("a", 1): 89, ("b", 0): 0, ("b", 1): 0}
    assert sum(quotas.values()) <= 100


def test_sample_keeps_the_smallest_hashes_of_each_stratum(parquet: Path,
                                                          transactions: pd.DataFrame) -> None:
    full = _labelled(build_snapshots(transactions, CUTOFFS, horizon_days=HORIZON,
                                     observed_until=AS_OF))
    sample, report = training_snapshots(transactions, CUTOFFS, horizon_days=HORIZON,
                                        observed_until=AS_OF, max_rows=1000, seed=3)
    assert report.sampled and report.rows_before == len(full)
    assert report.rows_after == len(sample) <= 1000
    # the documented rule, computed here with hashlib on the full table
    keyed = full.assign(key=[
        hashlib.md5(f"{c}|{pd.Timestamp(d).date()}|3".encode()).hexdigest()
        for c, d in zip(full["customer_id"], full["cutoff"], strict=True)])
    expected = []
    for (cutoff, label), rows in keyed.groupby(["cutoff", "churned"]):
        quota = len(rows) * 1000 // len(full)
        expected += [(cutoff, c) for c in rows.sort_values(["key"])["customer_id"][:quota]]
        kept = sample.loc[(sample["cutoff"] == cutoff) & (sample["churned"] == label)]
        assert len(kept) == quota
    assert sorted(expected) == sorted(zip(sample["cutoff"], sample["customer_id"], strict=True))
    # the kept rows are the full table's rows, in (cutoff, customer_id) order
    merged = sample.merge(full, on=["cutoff", "customer_id"], suffixes=("", "_full"))
    assert len(merged) == len(sample)
    np.testing.assert_array_equal(merged["recency_days"], merged["recency_days_full"])
    assert sample[["cutoff", "customer_id"]].equals(
        sample.sort_values(["cutoff", "customer_id"])[["cutoff", "customer_id"]]
        .reset_index(drop=True))
    assert [c["rows"] for c in report.to_dict()["by_cutoff"]] == (
        full.groupby("cutoff").size().tolist())
    # another seed, another sample; the same seed, the same sample (out of core too)
    other, _ = training_snapshots(transactions, CUTOFFS, horizon_days=HORIZON,
                                  observed_until=AS_OF, max_rows=1000, seed=4)
    assert not other["customer_id"].equals(sample["customer_id"])
    with load_transactions_sql(parquet) as view:
        again, report_view = training_snapshots(view, CUTOFFS, horizon_days=HORIZON,
                                                observed_until=AS_OF, max_rows=1000, seed=3)
    pd.testing.assert_frame_equal(again, sample)
    assert report_view == report


def test_out_of_core_snapshots_equal_the_pandas_ones(parquet: Path,
                                                     transactions: pd.DataFrame) -> None:
    expected = _labelled(build_snapshots(transactions, CUTOFFS, horizon_days=HORIZON,
                                         observed_until=AS_OF))
    with load_transactions_sql(parquet) as view:
        got, report = training_snapshots(view, CUTOFFS, horizon_days=HORIZON,
                                         observed_until=AS_OF, max_rows=None)
        assert day_range(view) == day_range(transactions)
        assert day_range(view, AS_OF)[1] == day_range(transactions, AS_OF)[1] <= AS_OF
        window = period_rows(view, AS_OF, AS_OF + dt.timedelta(days=30))
        # the temporary objects made in the view's connection are gone
        assert view.connection.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'churnlens_%'"
        ).fetchone() == (0,)
    assert not report.sampled and report.rows_after == len(expected)
    pd.testing.assert_frame_equal(got, expected)
    days = window["timestamp"].dt.date
    assert len(window) and days.min() > AS_OF
    assert days.max() <= AS_OF + dt.timedelta(days=30)


# --- the models -------------------------------------------------------------------


@pytest.mark.slow
def test_out_of_core_fit_equals_the_pandas_fit_to_the_bit(parquet: Path,
                                                         transactions: pd.DataFrame) -> None:
    expected = fit_models(transactions, AS_OF, SMALL)
    with load_transactions_sql(parquet) as view:
        got = fit_models(view, AS_OF, SMALL)
    assert got.cutoffs == expected.cutoffs and got.snapshot_rows == expected.snapshot_rows
    assert not got.sample.sampled
    pd.testing.assert_frame_equal(got.features, expected.features)
    for name, model in expected.models().items():
        np.testing.assert_array_equal(got.models()[name].predict_proba(got.features),
                                      model.predict_proba(expected.features), err_msg=name)
    assert json.dumps(got.validation) == json.dumps(expected.validation)


@pytest.mark.slow
def test_out_of_core_backtest_equals_pandas_and_says_when_it_sampled(
        parquet: Path, transactions: pd.DataFrame) -> None:
    expected = backtest(transactions, ["2024-06-30"], SMALL)
    sampled = SMALL.with_overrides({"training.max_snapshot_rows": 2000})
    with load_transactions_sql(parquet) as view:
        got = backtest(view, ["2024-06-30"], SMALL)
        small = backtest(view, ["2024-06-30"], sampled)
    assert json.dumps(got.to_dict()) == json.dumps(expected.to_dict())
    fitted = small.runs[0]["fitted"]
    assert fitted.sample.sampled and fitted.snapshot_rows <= 2000
    assert fitted.sample.rows_before == expected.runs[0]["fitted"].snapshot_rows
    [note] = [w for w in small.to_dict()["runs"][0]["warnings"] if "sampled" in w]
    assert f"{fitted.snapshot_rows:,} of {fitted.sample.rows_before:,}" in note


@pytest.mark.slow
def test_train_on_a_file_runs_out_of_core_and_records_the_sampling(
        parquet: Path, transactions: pd.DataFrame, tmp_path: Path) -> None:
    from churnlens._pipeline import train

    settings = SMALL.with_overrides({"training.max_snapshot_rows": 3000,
                                     "backtest_steps": 0})
    by_file = train(parquet, as_of=AS_OF, settings=settings, report_path=tmp_path / "r.html")
    in_memory = train(transactions, as_of=AS_OF, settings=settings)
    summary = by_file.summary()
    assert summary["sampling"]["sampled"] and summary["snapshot_rows"] <= 3000
    assert summary["sampling"] == in_memory.summary()["sampling"]
    assert summary["validation"] == in_memory.summary()["validation"]
    assert any("sampled" in note for note in summary["notes"])
    assert "sampled from" in (tmp_path / "r.html").read_text()


# --- Spark ------------------------------------------------------------------------


def _spark_transactions(spark, transactions: pd.DataFrame, tmp_path: Path):
    path = tmp_path / "spark_tx.parquet"
    transactions[["customer_id", "timestamp", "amount"]].to_parquet(path, index=False)
    return spark.read.parquet(str(path))


@pytest.mark.spark
@pytest.mark.slow
def test_spark_draws_the_same_snapshots_and_fits_the_same_model(
        spark, transactions: pd.DataFrame, tmp_path: Path) -> None:
    sdf = _spark_transactions(spark, transactions, tmp_path)
    for max_rows in (None, 1000):
        duck, duck_report = training_snapshots(transactions, CUTOFFS, horizon_days=HORIZON,
                                               observed_until=AS_OF, max_rows=max_rows)
        on_spark, spark_report = training_snapshots(sdf, CUTOFFS, horizon_days=HORIZON,
                                                    observed_until=AS_OF, max_rows=max_rows)
        assert spark_report == duck_report
        pd.testing.assert_frame_equal(on_spark, duck, check_dtype=False)
    expected = fit_models(transactions, AS_OF, SMALL)
    got = fit_models(sdf, AS_OF, SMALL)
    assert got.snapshot_rows == expected.snapshot_rows
    pd.testing.assert_frame_equal(got.features, expected.features, check_dtype=False)
    np.testing.assert_array_equal(got.churnlens.predict_proba(expected.features),
                                  expected.churnlens.predict_proba(expected.features))
    assert dataclasses.asdict(got.sample) == dataclasses.asdict(expected.sample)


@pytest.mark.spark
@pytest.mark.slow
def test_cli_train_on_spark_registers_a_model_that_duckdb_scoring_uses(
        spark, parquet: Path, tmp_path: Path) -> None:
    """End to end: ``train --engine spark --master local[2]`` registers into a sqlite
    MLflow store; ``score --engine duckdb`` then loads that version and scores."""
    from typer.testing import CliRunner

    from churnlens.cli import app

    config = tmp_path / "small.yaml"
    config.write_text("model:\n  n_estimators: 60\n  n_jobs: 1\nsnapshots:\n  count: 5\n"
                      "training:\n  max_snapshot_rows: 3000\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runner = CliRunner()
    trained = runner.invoke(app, [
        "train", "--transactions", str(parquet), "--as-of", str(AS_OF),
        "--engine", "spark", "--master", "local[2]", "--config", str(config),
        "--tracking-uri", uri, "--json"])
    assert trained.exit_code == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["model_version"] == "1" and summary["alias"] == "champion"
    assert summary["sampling"]["sampled"] and summary["snapshot_rows"] <= 3000
    assert summary["backtest"] and summary["cleaning"]["rows_kept"] > 0
    out = tmp_path / "scores.csv"
    scored = runner.invoke(app, [
        "score", "--transactions", str(parquet), "--as-of", str(AS_OF), "--out", str(out),
        "--model", "models:/churnlens/1", "--engine", "duckdb", "--tracking-uri", uri,
        "--no-ledger", "--json-summary"])
    assert scored.exit_code == 0, scored.stderr
    scores = pd.read_csv(out)
    assert len(scores) == summary["customers_at_as_of"]
    assert scores["churn_risk"].between(0, 1).all()
    assert json.loads(scored.stdout)["model"]["version"] == "1"
