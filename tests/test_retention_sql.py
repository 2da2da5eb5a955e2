"""Retention and cohorts on the out-of-core view equal the pandas path exactly.

The same queries of ``_retention`` run on a frame registered in DuckDB and on the view
``_loading_sql`` leaves over the file: rates, series and cohort tables must be equal to
the last bit, on many random logs (seeds printed), with and without segments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnlens._loading import load_transactions
from churnlens._loading_sql import load_transactions_sql
from churnlens._retention import cohort_table, retention_rates, retention_series


def random_log(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(200, 3_000))
    customers = rng.integers(0, max(rows // int(rng.integers(2, 8)), 1), rows)
    days = rng.integers(0, int(rng.integers(60, 800)), rows)
    stamps = pd.Timestamp("2023-01-01") + pd.to_timedelta(days, "D") + pd.to_timedelta(
        rng.integers(0, 86_400, rows), "s")
    amounts = rng.integers(-2_000, 9_000, rows) / 100
    # a refund that cancels the day exactly: no occasion (exact money)
    amounts[:6] = [10.10, 5.20, -15.30, 3.0, -1.0, 0.0]
    stamps = stamps.to_numpy().copy()
    stamps[:3] = stamps[0]
    customers[:3] = customers[0]
    return pd.DataFrame({"customer_id": customers.astype(str), "timestamp": stamps,
                         "amount": amounts,
                         "country": rng.choice(["DE", "FR", "NL"], rows)})


def assert_frames_identical(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert list(left.columns) == list(right.columns)
    assert len(left) == len(right)
    for column in left.columns:
        a, b = left[column].tolist(), right[column].tolist()
        assert [("nan" if isinstance(v, float) and np.isnan(v) else v) for v in a] == \
               [("nan" if isinstance(v, float) and np.isnan(v) else v) for v in b], column


@pytest.mark.parametrize("seed", range(12))
def test_rates_series_and_cohorts_equal_exactly(tmp_path: Path, seed: int) -> None:
    print(f"seed {seed}")
    frame = random_log(seed)
    path = tmp_path / ("tx.parquet" if seed % 2 else "tx.csv")
    frame.to_parquet(path) if seed % 2 else frame.to_csv(path, index=False)
    tx = load_transactions(path).transactions
    last = tx["timestamp"].max().normalize()
    start, end = last - pd.Timedelta(days=120), last - pd.Timedelta(days=30)
    with load_transactions_sql(path) as view:
        assert view.out_of_core
        # to_dict: NaN rates become None, which compare equal
        assert (retention_rates(view, start, end).to_dict()
                == retention_rates(tx, start, end).to_dict())
        assert (retention_rates(view, start, end, window_days=45).to_dict()
                == retention_rates(tx, start, end, window_days=45).to_dict())
        for every in ("month", "quarter", "28d"):
            assert_frames_identical(retention_series(view, every), retention_series(tx, every))
        assert_frames_identical(cohort_table(view), cohort_table(tx))
        assert_frames_identical(cohort_table(view, end=end), cohort_table(tx, end=end))


@pytest.mark.parametrize("seed", range(3))
def test_segments_equal(tmp_path: Path, seed: int) -> None:
    frame = random_log(100 + seed)
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    tx = load_transactions(path, extra_cols=["country"]).transactions
    last = tx["timestamp"].max().normalize()
    start, end = last - pd.Timedelta(days=90), last
    with load_transactions_sql(path, extra_cols=["country"]) as view:
        assert_frames_identical(retention_rates(view, start, end, segment_col="country"),
                                retention_rates(tx, start, end, segment_col="country"))
        assert_frames_identical(retention_series(view, "quarter", segment_col="country"),
                                retention_series(tx, "quarter", segment_col="country"))
        assert_frames_identical(cohort_table(view, segment_col="country"),
                                cohort_table(tx, segment_col="country"))


def test_as_of_applies_to_the_view(tmp_path: Path) -> None:
    frame = random_log(5)
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    as_of = frame["timestamp"].max().normalize() - pd.Timedelta(days=40)
    tx = load_transactions(path, as_of=as_of).transactions
    with load_transactions_sql(path, as_of=as_of) as view:
        assert_frames_identical(cohort_table(view), cohort_table(tx))
        assert_frames_identical(retention_series(view, "month"), retention_series(tx, "month"))
