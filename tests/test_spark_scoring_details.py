"""``churnlens score --engine spark`` reads the optional detail columns by the loader's rules.

A quantity that is not a number or is empty, a negative discount or one that is not a
number: refused with the pandas loader's own message (exit 2, nothing written), as the
pandas, DuckDB and Spark loaders refuse them (``tests/test_loading_details.py``); a good
file reads the same values as the pandas loader and scores as the embedded engine.
Spark scoring reads through the Spark loader (``load_transactions_spark``), so ids, order
ids, missing-id words, the counts of the report and globs of files are the loader's too.
"""

from __future__ import annotations

import datetime as dt
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


def score(path: Path | str, bundle: Path, out: Path, engine: str = "spark",
          flags: tuple[str, ...] | list[str] = tuple(FLAGS)):
    return CliRunner().invoke(app, [
        "score", "-t", str(path), "--as-of", AS_OF, "--model", str(bundle), "--out", str(out),
        "--engine", engine, "--master", "local[1]", *flags])


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
    expected, report = churnlens.load_transactions(path, **COLUMNS, as_of=AS_OF)
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


def test_values_only_the_pandas_rules_read_are_read_by_them_not_dropped(spark, tmp_path):
    """A quantity ending in a no-break space: the pandas rules strip it, Spark's SQL does
    not read it. As ``train --engine spark`` (the loader): a single file is read by the
    pandas loader, the same values; several files are refused naming the reason, never
    a silent missing quantity."""
    from churnlens._spark_scoring import read_transactions

    folder = tmp_path / "tx"
    folder.mkdir()
    path = folder / "a.csv"
    path.write_text("customer_id,timestamp,amount,qty\n1,2024-04-01,5,2\n2,2024-04-02,5,3\u00a0\n",
                    encoding="utf-8")
    assert churnlens.load_transactions(path, quantity_col="qty").transactions[
        "quantity"].tolist() == [2.0, 3.0]
    settings = load_config(overrides={"data.quantity_col": "qty",
                                      "data.max_staleness_days": 365})
    tx, cleaning = read_transactions(spark, path, dt.date.fromisoformat(AS_OF), settings)
    assert sorted(r["quantity"] for r in tx.collect()) == [2.0, 3.0]
    assert cleaning["rows_read"] == cleaning["rows_kept"] == 2
    (folder / "b.csv").write_text("customer_id,timestamp,amount,qty\n3,2024-04-03,5,1\n",
                                  encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"only the pandas rules read, which read "
                       r"one file at a time \(2 files match\)"):
        read_transactions(spark, str(folder / "*.csv"), dt.date.fromisoformat(AS_OF), settings)


# --- the loader's contract (load_transactions_spark), where the scoring reader had its own


def _ids_as_text(frame: pd.DataFrame) -> list[str]:
    return frame["customer_id"].astype(str).tolist()


def test_float_customer_ids_score_under_the_loaders_ids(spark, good, bundle, tmp_path):
    """A Parquet id column of floats (pandas widens integer ids with gaps): ``12.0`` is
    customer ``12``, in training, in DuckDB scoring and now in Spark scoring."""
    frame = good[["customer_id", "timestamp", "amount"]].assign(
        customer_id=good["customer_id"].str.lstrip("C").astype(float))
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path, index=False)
    on_spark, on_duckdb = tmp_path / "spark.parquet", tmp_path / "duckdb.parquet"
    for engine, out in (("spark", on_spark), ("duckdb", on_duckdb)):
        result = score(path, bundle, out, engine=engine, flags=())
        assert result.exit_code == 0, result.stderr
    spark_scores, duck_scores = pd.read_parquet(on_spark), pd.read_parquet(on_duckdb)
    loaded = churnlens.load_transactions(path, as_of=AS_OF).transactions
    ids = {str(i) for i in loaded["customer_id"].unique()}
    assert "12" in ids and "12.0" not in ids
    assert set(_ids_as_text(spark_scores)) == set(_ids_as_text(duck_scores)) == ids
    assert_same_scores(spark_scores, duck_scores)


def test_a_glob_of_parquet_files_scores_as_duckdb(spark, good, bundle, tmp_path):
    """A glob of Parquet files (the loader reads globs and directories; the scoring
    reader took a glob for a missing file)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    frame = good[["customer_id", "timestamp", "amount"]]
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(folder / "part-1.parquet", index=False)
    frame.iloc[half:].to_parquet(folder / "part-2.parquet", index=False)
    pattern = str(folder / "*.parquet")
    on_spark, on_duckdb = tmp_path / "spark.parquet", tmp_path / "duckdb.parquet"
    for engine, out in (("spark", on_spark), ("duckdb", on_duckdb)):
        result = score(pattern, bundle, out, engine=engine, flags=())
        assert result.exit_code == 0, result.stderr
    assert_same_scores(pd.read_parquet(on_spark), pd.read_parquet(on_duckdb))


_HEADER = "customer_id,timestamp,amount,ord\n"
_BASE = "1,2024-04-01,5,O1\n1,2024-04-01,6,O2\n3,2024-04-20,4,O3\n"


@pytest.mark.parametrize("rows", [
    "4,2024-04-02,5, A1\n4,2024-04-02,6,A1\n5,2024-04-03,5,B2 \n",  # order ids as given
    "2.0,2024-04-02,5,O4\n",                    # a text id with a zero fraction is 2
    "nan\t,2024-04-03,4,O5\n\tN/A,2024-04-03,4,O6\n",  # missing-id words, tab-padded
    ",yesterday,4,O7\n",                         # a row without id is dropped, not read
    ",2024-05-03,4,O8\n3,2024-05-03,4,O9\n",   # after as-of: only rows with an id count
], ids=["order-ids", "zero-fraction-id", "missing-id-words", "no-id-bad-time", "after-as-of"])
def test_scoring_reads_rows_as_the_loader(spark, tmp_path, rows):
    """The rows and the cleaning report Spark scoring reads are the pandas loader's."""
    from churnlens._spark_scoring import read_transactions

    path = tmp_path / "tx.csv"
    path.write_text(_HEADER + _BASE + rows, encoding="utf-8")
    expected, report = churnlens.load_transactions(path, order_col="ord", as_of=AS_OF)
    settings = load_config(overrides={"data.order_col": "ord", "data.max_staleness_days": 365})
    tx, cleaning = read_transactions(spark, path, dt.date.fromisoformat(AS_OF), settings)

    def key(customer_id: object, amount: float, order_id: object) -> tuple[str, float, str]:
        return (str(customer_id), float(amount),
                "<missing>" if order_id is None or order_id != order_id else str(order_id))

    wanted = report.to_dict()
    for name in ("source", "rows_read", "dropped_missing_customer_id", "dropped_after_as_of",
                 "as_of"):
        assert cleaning[name] == wanted[name], name
    got = sorted(key(r["customer_id"], r["amount"], r["order_id"]) for r in tx.collect())
    assert got == sorted(key(*values) for values in expected[
        ["customer_id", "amount", "order_id"]].itertuples(index=False, name=None))
    assert cleaning == wanted  # the whole report, as the DuckDB engine's summary has it
