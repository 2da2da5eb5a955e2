"""Spark parity: the same feature SQL on Spark gives the DuckDB results (CDNOW, synthetic)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import churnlens
from churnlens import build_snapshots, compute_features, compute_labels

pytestmark = pytest.mark.spark

WINDOWS = (30, 90, 180, 365)


def to_spark(spark, frame: pd.DataFrame, tmp_path):
    """A Spark DataFrame of clean transactions, through Parquet (fast, no Python rows).

    pandas' naive timestamps arrive as Spark TIMESTAMP_NTZ (or TIMESTAMP in UTC).
    """
    path = tmp_path / f"transactions_{len(list(tmp_path.iterdir()))}.parquet"
    frame[["customer_id", "timestamp", "amount"]].to_parquet(path, index=False)
    return spark.read.parquet(str(path))


def spark_to_pandas(result, tmp_path) -> pd.DataFrame:
    """Collect a Spark result through Parquet (PySpark's pandas path predates pandas 3)."""
    path = tmp_path / f"result_{len(list(tmp_path.iterdir()))}"
    result.write.parquet(str(path))
    frame = pd.read_parquet(path)[list(result.columns)]
    for column in ("as_of", "cutoff"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    return frame


def assert_parity(duck: pd.DataFrame, spark: pd.DataFrame, keys=("customer_id",)):
    assert list(duck.columns) == list(spark.columns)
    assert len(duck) == len(spark) > 0
    duck = duck.sort_values(list(keys)).reset_index(drop=True)
    spark = spark.sort_values(list(keys)).reset_index(drop=True)
    for column in duck.columns:
        d, s = duck[column], spark[column]
        if column in ("customer_id", "as_of", "cutoff"):
            assert d.astype(str).tolist() == s.astype(str).tolist(), column
        elif d.dtype == "int64":
            assert d.tolist() == s.astype("int64").tolist(), column
        else:  # floats (NULL on Spark, NaN in pandas) and the nullable label
            d_values = d.astype("float64").to_numpy()
            s_values = pd.to_numeric(s, errors="raise").astype("float64").to_numpy()
            np.testing.assert_array_equal(np.isnan(d_values), np.isnan(s_values),
                                          err_msg=f"missing values differ in {column}")
            np.testing.assert_allclose(s_values, d_values, rtol=1e-9, atol=1e-9,
                                       equal_nan=True, err_msg=column)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    pytest.importorskip("lifetimes", reason="CDNOW ships inside the lifetimes wheel")
    from churnlens.datasets import load_cdnow

    return churnlens.load_transactions(load_cdnow()).transactions


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    seed = 7
    print(f"synthetic transactions seed: {seed}")
    return churnlens.load_transactions(churnlens.generate_transactions(3_000, seed=seed)
                                       ).transactions


@pytest.mark.slow
def test_cdnow_features_labels_and_snapshots(spark, cdnow, tmp_path):
    sdf = to_spark(spark, cdnow, tmp_path)
    as_of = "1997-09-30"
    assert_parity(compute_features(cdnow, as_of),
                  spark_to_pandas(compute_features(sdf, as_of), tmp_path))
    assert_parity(compute_labels(cdnow, as_of, 90),
                  spark_to_pandas(compute_labels(sdf, as_of, 90), tmp_path))
    cutoffs = ["1997-06-30", "1998-04-30"]  # the last one is censored (data end 1998-06-30)
    duck = build_snapshots(cdnow, cutoffs, horizon_days=91)
    assert duck.loc[duck["cutoff"] == pd.Timestamp("1998-04-30"), "churned"].isna().all()
    assert duck.loc[duck["cutoff"] == pd.Timestamp("1997-06-30"), "churned"].notna().all()
    assert_parity(duck, spark_to_pandas(build_snapshots(sdf, cutoffs, horizon_days=91),
                                        tmp_path), keys=("cutoff", "customer_id"))


def test_synthetic_with_refunds_and_integer_ids(spark, synthetic, tmp_path):
    numbered = synthetic.assign(customer_id=synthetic["customer_id"].str[1:].astype("int64"))
    sdf = to_spark(spark, numbered, tmp_path)
    cutoffs = ["2023-06-30", "2023-12-31", "2024-06-30"]
    duck = build_snapshots(numbered, cutoffs, horizon_days=60, windows_days=(14, 60),
                           observed_until="2024-08-15")
    assert duck["refund_total"].gt(0).any() and duck["gap_std_days"].notna().any()
    assert duck["customer_id"].dtype == "int64"
    spark_result = spark_to_pandas(
        build_snapshots(sdf, cutoffs, horizon_days=60, windows_days=(14, 60),
                        observed_until="2024-08-15"), tmp_path)
    assert_parity(duck, spark_result, keys=("cutoff", "customer_id"))


def test_spark_runs_natively_and_returns_spark(spark, golden_transactions, tmp_path):
    sdf = to_spark(spark, golden_transactions, tmp_path)
    result = build_snapshots(sdf, ["2024-03-31"], horizon_days=91, observed_until="2024-06-30")
    assert type(result).__module__.startswith("pyspark.sql")
    plan = result._jdf.queryExecution().executedPlan().toString()
    # no per-row or per-group Python: the plan is Spark SQL operators only
    for python_operator in ("Python", "ArrowEval", "FlatMapGroupsInPandas", "MapInPandas"):
        assert python_operator not in plan, python_operator
    golden = spark_to_pandas(result, tmp_path).sort_values("customer_id")
    assert golden["frequency"].tolist() == [2, 1, 1, 1, 1]
    assert golden["recency_days"].tolist() == [26, 59, 137, 304, 6]
    assert golden["churned"].tolist() == [0, 1, 0, 0, 1]
    # the temporary view is gone, the result still computes
    assert not [t for t in spark.catalog.listTables() if t.name.startswith("churnlens_")]
    assert result.count() == 5
