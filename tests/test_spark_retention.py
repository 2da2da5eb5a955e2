"""Retention and cohorts on Spark equal DuckDB's exactly (issue 19, item 3).

``_retention``'s queries in Spark SQL, run on the clean rows that
``_spark_loading.load_transactions_spark`` leaves, against the same queries in DuckDB on
the out-of-core view of the same file: rates, series, cohort tables, with and without
segments, after an as-of date, and from a PySpark DataFrame handed over directly. One
local Spark session for the module (the shared ``spark`` fixture).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnlens._loading_sql import load_transactions_sql
from churnlens._retention import cohort_table, retention_rates, retention_series
from churnlens._spark_loading import load_transactions_spark
from tests.test_retention_sql import assert_frames_identical, random_log

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_rates_series_and_cohorts_equal_duckdb(spark, tmp_path: Path) -> None:
    for seed, name in ((1, "tx.parquet"), (2, "tx.csv")):
        frame = random_log(seed)
        path = tmp_path / name
        frame.to_parquet(path) if name.endswith("parquet") else frame.to_csv(path, index=False)
        on_spark = load_transactions_spark(path, spark=spark, extra_cols=["country"])
        assert on_spark.distributed
        with load_transactions_sql(path, extra_cols=["country"]) as view:
            assert on_spark.report == view.report
            last = pd.Timestamp(view.report.last_day)
            start, end = last - pd.Timedelta(days=120), last - pd.Timedelta(days=30)
            assert (retention_rates(on_spark, start, end).to_dict()
                    == retention_rates(view, start, end).to_dict())
            assert (retention_rates(on_spark, start, end, window_days=45).to_dict()
                    == retention_rates(view, start, end, window_days=45).to_dict())
            for every in ("month", "quarter"):
                assert_frames_identical(retention_series(on_spark, every),
                                        retention_series(view, every))
            assert_frames_identical(cohort_table(on_spark), cohort_table(view))
            assert_frames_identical(cohort_table(on_spark, end=end), cohort_table(view, end=end))
            # by segment: one period, a series, cohorts
            assert_frames_identical(
                retention_rates(on_spark, start, end, segment_col="country"),
                retention_rates(view, start, end, segment_col="country"))
            if seed == 1:
                assert_frames_identical(
                    retention_series(on_spark, "quarter", segment_col="country"),
                    retention_series(view, "quarter", segment_col="country"))
                assert_frames_identical(cohort_table(on_spark, segment_col="country"),
                                        cohort_table(view, segment_col="country"))


def test_a_pyspark_dataframe_and_an_as_of_date(spark, tmp_path: Path) -> None:
    frame = random_log(5)
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    as_of = frame["timestamp"].max().normalize() - pd.Timedelta(days=40)
    on_spark = load_transactions_spark(path, spark=spark, as_of=as_of)
    with load_transactions_sql(path, as_of=as_of) as view:
        assert on_spark.report == view.report
        assert on_spark.report.dropped_after_as_of > 0
        assert_frames_identical(retention_series(on_spark, "month"),
                                retention_series(view, "month"))
    # a PySpark DataFrame goes through the contract on Spark first
    raw = spark.read.parquet(str(path))
    with load_transactions_sql(path) as view:
        assert_frames_identical(cohort_table(raw), cohort_table(view))
