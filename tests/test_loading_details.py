"""The transactions' optional detail columns: category, channel and discount.

The pandas loader's rules (text stripped, empty is missing; a discount is a number >= 0,
empty is 0), then the same rules out of core (DuckDB, ``_loading_sql``) and on Spark
(``_spark_loading``): the same clean rows and report, or the same error and message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnlens._loading import load_transactions
from churnlens._loading_sql import load_transactions_sql
from churnlens.exceptions import DataValidationError
from tests.test_loading_sql import ODD, assert_same, outcome_pandas

COLUMNS = dict(order_col="order", quantity_col="qty", category_col="cat", channel_col="via",
               discount_col="off")

DETAILS = ODD.assign(
    order=["o1", "o2", None, "o4", "o5", "o6", "o7", "o8", "o8", "o9"],
    qty=["1", "2", "1", "1", "3", "1", "1", "2", "2", "1"],
    cat=[" shoes", "bags ", "", None, "shoes", "toys", "toys", "bags", "bags", "  "],
    via=["web", "store", "web", "web", None, " app ", "web", "web", "web", "store"],
    off=["0", "1.5", None, "0", "", " 2 ", "0", "1", "1", "0.25"],
)


def test_pandas_rules_for_text_and_discounts():
    tx, report = load_transactions(DETAILS, **COLUMNS)
    assert list(tx.columns) == ["customer_id", "timestamp", "amount", "order_id", "quantity",
                                "category", "channel", "discount"]
    by_order = tx.set_index("order_id")
    assert by_order.loc["o1", "category"] == "shoes"        # spaces stripped
    assert by_order.loc["o2", "category"] == "bags"
    assert pd.isna(by_order.loc["o5", "channel"])
    assert by_order.loc["o6", "channel"] == "app"
    assert pd.isna(by_order.loc["o9", "category"])          # blank is missing
    assert by_order.loc["o2", "discount"] == 1.5
    assert by_order.loc["o5", "discount"] == 0.0            # empty is no discount
    assert by_order.loc["o9", "discount"] == 0.25
    assert by_order.loc["o6", "discount"] == 2.0
    assert tx["discount"].dtype == "float64" and tx["quantity"].dtype == "float64"
    assert report.rows_kept == len(tx)


@pytest.mark.parametrize(("values", "message"), [
    (["-1", *["0"] * 9], r"1 negative discounts: row 1 \(line 2\): '-1'"),
    (["0", "ten", *["0"] * 8], r"discounts that are not numbers: row 2 \(line 3\): 'ten'"),
])
def test_bad_discounts_name_the_rows(tmp_path: Path, values, message):
    path = tmp_path / "tx.csv"
    DETAILS.assign(off=values).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=message) as caught:
        load_transactions(path, **COLUMNS)
    assert "column 'off'" in str(caught.value)


def test_a_missing_optional_column_is_named(tmp_path: Path):
    path = tmp_path / "tx.csv"
    DETAILS.drop(columns="via").to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="via"):
        load_transactions(path, **COLUMNS)


def test_categories_that_are_not_names_are_refused():
    with pytest.raises(DataValidationError, match="not names"):
        load_transactions(DETAILS.assign(cat=[1.5] * 10), **COLUMNS)
    codes, _ = load_transactions(DETAILS.assign(cat=list(range(10))), **COLUMNS)
    assert codes["category"].tolist()[:3] == ["0", "1", "4"]   # integer codes: their digits


@pytest.mark.parametrize("as_of", [None, "2024-02-01"])
@pytest.mark.parametrize("deduplicate", [False, True])
@pytest.mark.parametrize("form", ["csv", "parquet-text"])
def test_sql_loader_agrees(tmp_path: Path, form: str, as_of, deduplicate: bool):
    path = tmp_path / ("tx.csv" if form == "csv" else "tx.parquet")
    DETAILS.to_csv(path, index=False) if form == "csv" else DETAILS.to_parquet(path)
    assert assert_same(path, **COLUMNS, as_of=as_of, deduplicate=deduplicate)


def test_sql_loader_agrees_on_typed_parquet(tmp_path: Path):
    table = pa.table({
        "customer_id": pa.array([1, 1, 2, 3]),
        "timestamp": pa.array(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03",
                                              "2024-01-04"]).to_pydatetime()),
        "amount": pa.array([10.0, 20.0, -5.0, 7.0]),
        "cat": pa.array([3, None, 4, 3], type=pa.int32()),     # integer category codes
        "via": pa.array(["web", " store", None, ""]),
        "off": pa.array([0.0, None, 1.5, 0.0]),
    })
    path = tmp_path / "tx.parquet"
    pq.write_table(table, path)
    assert assert_same(path, category_col="cat", channel_col="via", discount_col="off")


@pytest.mark.parametrize(("column", "value"), [("off", "-2"), ("off", "x"), ("off", "1e13"),
                                               ("qty", "y")])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_sql_loader_same_error(tmp_path: Path, column: str, value: str, suffix: str):
    frame = DETAILS.copy()
    frame.loc[4, column] = value
    path = tmp_path / f"tx{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    assert outcome_pandas(path, **COLUMNS)[0] is DataValidationError
    assert_same(path, **COLUMNS)


def test_sql_loader_reads_them_out_of_core(tmp_path: Path):
    path = tmp_path / "tx.csv"
    DETAILS.to_csv(path, index=False)
    with load_transactions_sql(path, **COLUMNS) as clean:
        assert clean.out_of_core
        types = {row[0]: row[1] for row in
                 clean.connection.execute(f"DESCRIBE {clean.view}").fetchall()}
    assert types["discount"] == "DOUBLE" and types["category"] == "VARCHAR"


@pytest.mark.spark
@pytest.mark.slow
def test_spark_loader_agrees(spark, tmp_path: Path):
    from tests.test_spark_loading import differences

    csv = tmp_path / "tx.csv"
    DETAILS.to_csv(csv, index=False)
    assert differences(spark, csv, **COLUMNS) == []
    assert differences(spark, csv, **COLUMNS, as_of="2024-02-01", deduplicate=True) == []
    bad = tmp_path / "bad.csv"
    DETAILS.assign(off=["0", "-3", *["0"] * 8]).to_csv(bad, index=False)
    assert differences(spark, bad, **COLUMNS) == []
    assert outcome_pandas(bad, **COLUMNS)[0] is DataValidationError
    # a PySpark DataFrame
    from churnlens._spark_loading import load_transactions_spark
    from tests.test_loading_sql import canonical

    frame = spark.createDataFrame(DETAILS.astype(object).where(DETAILS.notna(), None))
    loaded = load_transactions_spark(frame, **COLUMNS)
    expected = outcome_pandas(DETAILS, **COLUMNS)
    assert loaded.report == expected[1] and loaded.distributed
    pd.testing.assert_frame_equal(canonical(loaded.transactions.toPandas()),
                                  canonical(expected[2]))


# --- the CLI flags ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "features"])
def test_cli_flags_read_the_columns_and_bad_ones_exit_2(tmp_path: Path, command: str):
    from typer.testing import CliRunner

    from churnlens.cli import app

    good, bad, out = tmp_path / "good.csv", tmp_path / "bad.csv", tmp_path / "out.csv"
    DETAILS.to_csv(good, index=False)
    DETAILS.assign(off=["0", "-3", *["0"] * 8]).to_csv(bad, index=False)
    flags = ["--order-col", "order", "--quantity-col", "qty", "--category-col", "cat",
             "--channel-col", "via", "--discount-col", "off"]
    tail = ["--as-of", "2024-03-02", "--out", str(out)] if command == "features" else []
    runner = CliRunner()
    result = runner.invoke(app, [command, "--transactions", str(good), *flags, *tail])
    assert result.exit_code == 0, result.output
    if command == "features":
        out.unlink()
    result = runner.invoke(app, [command, "--transactions", str(bad), *flags, *tail])
    assert result.exit_code == 2, result.output
    assert "negative discounts" in result.output and "--discount-col" in result.output
    assert not out.exists()
    # a column that is not there is named
    result = runner.invoke(app, [command, "--transactions", str(good), "--channel-col",
                                 "channel", *tail])
    assert result.exit_code == 2 and "channel" in result.output


def test_config_keys_reach_the_loader(tmp_path: Path):
    from churnlens._config import load_config

    config = tmp_path / "settings.yaml"
    config.write_text("data:\n  category_col: cat\n  discount_col: 'off'\n")  # YAML: off is false
    settings = load_config(config)
    options = settings.data.loader_options()
    assert options["category_col"] == "cat" and options["order_col"] is None
    tx, _ = load_transactions(DETAILS, **options)
    assert {"category", "discount"} <= set(tx.columns) and "order_id" not in tx.columns


# --- frames already in memory ------------------------------------------------------------


def test_ensure_clean_reads_the_optional_columns_by_their_rules():
    from churnlens._loading import ensure_clean, is_clean

    raw = DETAILS.rename(columns={"order": "order_id", "qty": "quantity", "cat": "category",
                                  "via": "channel", "off": "discount"})
    optional = ["order_id", "quantity", "category", "channel", "discount"]
    clean = ensure_clean(raw, optional=optional)
    expected, _ = load_transactions(DETAILS, **COLUMNS)
    pd.testing.assert_frame_equal(clean, expected)
    assert is_clean(clean, optional=optional)
    assert ensure_clean(clean, optional=optional) is clean
    # each optional column asked for breaks "clean" alone when it does not meet its rule
    for column, values in (("quantity", clean["quantity"].astype("int64")),
                           ("discount", -clean["discount"] - 1),
                           ("category", clean["category"].fillna("").astype("string")),
                           ("channel", (" " + clean["channel"]).astype("string")),
                           ("category", clean["category"].astype(object))):
        changed = clean.assign(**{column: values})
        assert not is_clean(changed, optional=optional), column
        # ... and only when asked for: by default it is an extra column, not looked at
        assert is_clean(changed) and ensure_clean(changed) is changed, column
    with pytest.raises(DataValidationError, match="negative discounts"):
        ensure_clean(clean.assign(discount=-clean["discount"] - 1), optional=["discount"])


def test_optional_columns_are_not_checked_unless_asked():
    """Frames the loader passed through before details existed still pass: a NaN
    quantity, a negative discount or a float category are extra columns by default."""
    from churnlens import compute_features
    from churnlens._loading import ensure_clean, is_clean

    raw = pd.DataFrame({"customer_id": ["a", "a", "b"],
                        "timestamp": ["2024-01-02", "2024-02-03", "2024-01-20"],
                        "amount": [10.0, 5.0, 7.0]})
    clean, _ = load_transactions(raw)
    odd = clean.assign(quantity=[np.nan, 1.0, 2.0], discount=[-1.0, 0.0, 3.0],
                       category=[1.5, 2.5, np.nan])
    assert is_clean(odd) and ensure_clean(odd) is odd
    features = compute_features(odd, "2024-03-01")
    pd.testing.assert_frame_equal(features, compute_features(clean, "2024-03-01"))
    # a raw frame is loaded without reading them (as before: they are not kept)
    loaded = ensure_clean(raw.assign(quantity=["x", "1", "2"], discount=[-1, 0, 3]))
    pd.testing.assert_frame_equal(loaded, clean)
