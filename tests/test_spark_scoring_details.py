"""``churnlens score --engine spark`` reads the optional detail columns by the loader's rules.

A quantity that is not a number or is empty, a negative discount or one that is not a
number: refused with the pandas loader's own message (exit 2, nothing written), as the
pandas, DuckDB and Spark loaders refuse them (``tests/test_loading_details.py``); a good
file reads the same values as the pandas loader and scores as the embedded engine.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import churnlens
from churnlens._config import load_config
from churnlens.cli import app
from churnlens.exceptions import DataValidationError
from tests.test_loading_sql import outcome_pandas
from tests.test_spark_scoring import FAST, TRAIN_AS_OF, assert_same_scores

pytestmark = pytest.mark.spark

SEED = 29
AS_OF = "2024-04-30"
COLUMNS = dict(quantity_col="qty", discount_col="off", category_col="cat", channel_col="via")
FLAGS = ["--quantity-col", "qty", "--discount-col", "off", "--category-col", "cat",
         "--channel-col", "via"]
ROW = 3  # the row made bad (row 4, line 5 of the file)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> pd.DataFrame:
    """Synthetic transactions with the detail columns as a CSV export holds them: text,
    an empty discount (no discount), names with surrounding spaces."""
    print(f"synthetic transactions seed: {SEED}")
    tx = churnlens.generate_transactions(400, seed=SEED, start="2023-01-01",
                                         end="2024-06-30")
    rng = np.random.default_rng(SEED)
    n = len(tx)
    return tx[["customer_id", "timestamp", "amount"]].assign(
        qty=rng.integers(1, 4, n).astype(str),
        off=rng.choice(["0", "1.5", "", " 2 "], n),
        cat=rng.choice(["shoes", " bags", "toys\t", ""], n),
        via=rng.choice(["web", "store ", "app"], n),
    )


@pytest.fixture(scope="module")
def bundle(good, tmp_path_factory) -> Path:
    from churnlens._artifact import save_bundle
    from churnlens._pipeline import train

    transactions = churnlens.load_transactions(good).transactions
    artifact = train(transactions, as_of=TRAIN_AS_OF,
                     settings=load_config(overrides=FAST)).artifact
    path = tmp_path_factory.mktemp("spark_details") / "bundle"
    save_bundle(artifact, path)
    return path


def score(path: Path, bundle: Path, out: Path, engine: str = "spark"):
    return CliRunner().invoke(app, [
        "score", "-t", str(path), "--as-of", AS_OF, "--model", str(bundle), "--out", str(out),
        "--engine", engine, "--master", "local[1]", *FLAGS])


@pytest.mark.parametrize("bad", [
    {"qty": "y"},                      # a quantity that is not a number
    {"qty": ""},                       # an empty quantity
    {"off": "-2"},                     # a negative discount
    {"off": "ten"},                    # a discount that is not a number
    {"qty": "y", "off": "-2"},         # several: the loader's first (the quantity)
])
def test_bad_details_exit_2_with_the_loaders_message(spark, good, bundle, tmp_path, bad):
    frame = good.copy()
    for column, value in bad.items():
        frame.loc[ROW, column] = value
    path, out = tmp_path / "tx.csv", tmp_path / "scores.csv"
    frame.to_csv(path, index=False)
    kind, message, _ = outcome_pandas(path, **COLUMNS)
    assert kind is DataValidationError, kind
    assert f"row {ROW + 1} (line {ROW + 2})" in message
    result = score(path, bundle, out)
    assert result.exit_code == 2, result.output
    assert " ".join(message.split()) in " ".join(result.stderr.split())
    assert not out.exists() and not list(tmp_path.glob("scores*"))
    # the function behind it: the same error, the same text
    from churnlens._spark_scoring import read_transactions

    settings = load_config(overrides={f"data.{key}": value for key, value in COLUMNS.items()})
    with pytest.raises(DataValidationError) as caught:
        read_transactions(spark, path, dt.date.fromisoformat(AS_OF), settings)
    assert str(caught.value) == message


def test_good_details_read_as_the_loader_reads_them_and_score_as_duckdb(
        spark, good, bundle, tmp_path):
    from churnlens._spark_scoring import read_transactions

    path = tmp_path / "tx.csv"
    good.to_csv(path, index=False)
    settings = load_config(overrides={f"data.{key}": value for key, value in COLUMNS.items()})
    tx, cleaning = read_transactions(spark, path, dt.date.fromisoformat(AS_OF), settings)
    details = ["quantity", "discount", "category", "channel"]
    got = tx.select(*details).toPandas()
    expected, report = churnlens.load_transactions(path, **COLUMNS)  # (no as-of: all rows)
    assert cleaning["rows_read"] == report.rows_read and len(got) == report.rows_kept
    for column in details:  # the same values, row for row (text stripped, empty is 0/NA)
        assert got[column].astype(str).tolist() == expected[column].astype(str).tolist(), column
    # and the scores of the embedded engine, with the flags given
    on_spark, on_duckdb = tmp_path / "spark.parquet", tmp_path / "duckdb.parquet"
    result = score(path, bundle, on_spark)
    assert result.exit_code == 0, result.stderr
    result = score(path, bundle, on_duckdb, engine="duckdb")
    assert result.exit_code == 0, result.stderr
    assert_same_scores(pd.read_parquet(on_spark), pd.read_parquet(on_duckdb))


def test_values_only_the_pandas_rules_read_are_refused_not_dropped(spark, tmp_path):
    """A quantity ending in a no-break space: the pandas rules strip it (the DuckDB path
    hands the file to them), Spark's SQL does not read it. Refused, naming the row, never
    a silent missing quantity."""
    from churnlens._spark_scoring import read_transactions

    path = tmp_path / "tx.csv"
    path.write_text("customer_id,timestamp,amount,qty\n1,2024-04-01,5,2\n2,2024-04-02,5,3\u00a0\n",
                    encoding="utf-8")
    assert churnlens.load_transactions(path, quantity_col="qty").transactions[
        "quantity"].tolist() == [2.0, 3.0]
    settings = load_config(overrides={"data.quantity_col": "qty"})
    shown = re.escape(repr("3\u00a0"))  # '3\xa0', as the messages show values
    with pytest.raises(DataValidationError, match=r"1 values that only the pandas loader "
                       rf"reads: row 2 \(line 3\): {shown}.*--engine duckdb"):
        read_transactions(spark, path, dt.date.fromisoformat(AS_OF), settings)
