"""Shared fixtures: the golden example of retention.md, seeded data, a local Spark."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd
import pytest

# The worked example of docs/retention.md (shared/docs/retention.md): every figure in
# it is reproduced exactly by the tests.
GOLDEN_ROWS = [
    ("A", "2024-01-10", 30.00),
    ("A", "2024-03-05", 20.00),
    ("A", "2024-05-20", 25.00),
    ("B", "2024-02-01", 50.00),
    ("C", "2023-11-15", 10.00),
    ("C", "2024-04-02", 15.00),
    ("D", "2024-04-20", 40.00),
    ("E", "2023-06-01", 60.00),
    ("E", "2024-05-01", 35.00),
    ("F", "2024-03-25", 12.00),
    ("F", "2024-03-25", 8.00),
]
GOLDEN_T0 = "2024-03-31"
GOLDEN_T1 = "2024-06-30"


@pytest.fixture(scope="session", autouse=True)
def _no_ledger() -> Iterator[None]:
    """No test records into the prediction ledger unless it asks to: a test of the ledger
    re-enables it with ``monkeypatch.delenv("CHURNLENS_LEDGER")``. Session-wide, so that
    it is set before any module fixture runs a command or starts a server (subprocesses
    inherit the variable)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHURNLENS_LEDGER", "off")
        yield


@pytest.fixture
def golden_raw() -> pd.DataFrame:
    """The golden transactions as a user would hand them over (dates as text)."""
    return pd.DataFrame(GOLDEN_ROWS, columns=["customer_id", "timestamp", "amount"])


@pytest.fixture
def golden_transactions(golden_raw: pd.DataFrame) -> pd.DataFrame:
    """The golden transactions after load_transactions."""
    from churnlens import load_transactions

    return load_transactions(golden_raw).transactions


@pytest.fixture
def golden_csv(tmp_path, golden_raw: pd.DataFrame):
    """The golden transactions written to a CSV file, as the CLI reads them."""
    path = tmp_path / "golden.csv"
    golden_raw.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """A local PySpark session (local[2], UTC), shared by every Spark test."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("churnlens-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
