"""The transactions contract on Spark (``_spark_loading``) against the pandas loader.

The odd-input corpus of ``tests/test_loading.py`` through ``load_transactions_spark``
and through ``load_transactions``: the same exception class and message, or the same
cleaning report (exact refund total included) and the same clean rows. Then the CLI
with ``--engine spark --master local[1]``: ``validate``, ``retention`` and ``cohorts``
print what the DuckDB engine prints, and a bad file exits 2 with the same message.
One local Spark session for everything (the shared ``spark`` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlens._spark_loading import is_spark_frame, load_transactions_spark
from tests.test_loading import CORPUS
from tests.test_loading_sql import ODD, canonical, outcome_pandas
from tests.test_retention_sql import random_log

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def outcome_spark(spark: Any, path: Any, **kwargs: Any) -> tuple[Any, ...]:
    try:
        loaded = load_transactions_spark(path, spark=spark, **kwargs)
    except ValueError as exc:
        return type(exc), str(exc), None, None
    return "ok", loaded.report, loaded.transactions.toPandas(), loaded.distributed


def differences(spark: Any, path: Any, **kwargs: Any) -> list[str]:
    """What differs between the two loaders on one input (empty: nothing)."""
    expected, got = outcome_pandas(path, **kwargs), outcome_spark(spark, path, **kwargs)
    if got[0] != expected[0] or got[1] != expected[1]:
        return [f"{got[0]}: {got[1]}  !=  {expected[0]}: {expected[1]}"]
    if expected[0] != "ok":
        return []
    left, right = canonical(expected[2]), canonical(got[2])
    if list(left.columns) != list(right.columns) or len(left) != len(right):
        return [f"columns/rows {list(right.columns)} {len(right)} != "
                f"{list(left.columns)} {len(left)}"]
    return [f"column {c}" for c in left.columns
            if left[c].tolist() != right[c].tolist()]


# A directory differs by design (Spark, like DuckDB, reads a directory of Parquet files;
# the pandas loader refuses it).
def test_corpus_parity(spark, tmp_path: Path) -> None:
    failures: dict[str, list[str]] = {}
    for number, case in enumerate(c for c in CORPUS if c.id != "directory"):
        folder = tmp_path / str(number)
        folder.mkdir()
        path = case.make(folder)
        found = differences(spark, path, **case.kwargs)
        if found:
            failures[case.id] = found
    print(f"{len(CORPUS) - 1 - len(failures)} of {len(CORPUS) - 1} corpus cases agree")
    assert failures == {}


@pytest.mark.parametrize("form", ["csv", "parquet-typed"])
def test_odd_rows_as_of_and_deduplicate(spark, tmp_path: Path, form: str) -> None:
    frame = ODD.copy()
    if form == "csv":
        path = tmp_path / "tx.csv"
        frame.to_csv(path, index=False)
    else:
        path = tmp_path / "tx.parquet"
        frame = frame.assign(timestamp=pd.to_datetime(frame["timestamp"].str.strip(),
                                                      format="ISO8601", utc=True),
                             amount=frame["amount"].str.strip().astype(float))
        frame.to_parquet(path)
    for as_of, deduplicate in ((None, False), ("2024-02-01", True), ("2024-01-04", False)):
        assert differences(spark, path, as_of=as_of, deduplicate=deduplicate) == []
    assert outcome_spark(spark, path)[3]  # answered on Spark, not by the pandas loader


def test_a_pyspark_dataframe(spark) -> None:
    raw = spark.createDataFrame(ODD)
    loaded = load_transactions_spark(raw, as_of="2024-02-01")
    expected = outcome_pandas(ODD, as_of="2024-02-01")
    assert loaded.report == expected[1]
    assert is_spark_frame(loaded.transactions)
    bad = spark.createDataFrame(ODD.assign(amount=["1", "x", *ODD["amount"][2:]]))
    with pytest.raises(ValueError) as caught:
        load_transactions_spark(bad)
    assert (type(caught.value), str(caught.value)) == outcome_pandas(
        ODD.assign(amount=["1", "x", *ODD["amount"][2:]]))[:2]


# --- the CLI ----------------------------------------------------------------------


def run(args: list[str]) -> Any:
    from churnlens.cli import app

    return CliRunner().invoke(app, args)


def test_cli_engines_print_the_same(spark, tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    random_log(7).to_csv(path, index=False)
    spark_flags = ["--engine", "spark", "--master", "local[1]"]
    commands = [
        ["validate", "--transactions", str(path), "--as-of", "2024-06-30", "--json"],
        ["retention", "--transactions", str(path), "--every", "quarter", "--json"],
        ["retention", "--transactions", str(path), "--start", "2023-03-31",
         "--end", "2023-06-30", "--segment-col", "country", "--json"],
        ["cohorts", "--transactions", str(path), "--json"],
    ]
    for command in commands:
        duckdb, on_spark = run(command), run(command + spark_flags)
        assert duckdb.exit_code == 0, duckdb.output
        assert on_spark.exit_code == 0, on_spark.output
        assert json.loads(on_spark.stdout) == json.loads(duckdb.stdout), command
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,timestamp,amount\na,2024-01-01,1\nb,2024-01-02,ten\n")
    for command in ("validate", "cohorts"):
        duckdb = run([command, "--transactions", str(bad)])
        on_spark = run([command, "--transactions", str(bad), *spark_flags])
        assert duckdb.exit_code == on_spark.exit_code == 2
        assert "'ten'" in on_spark.output
        assert on_spark.output == duckdb.output


def test_console_script_starts_and_stops_its_own_session(tmp_path: Path) -> None:
    """A process of its own: --master local[1] starts a session (no sparkContext used),
    prints the DuckDB engine's report, and stops it (the process ends, exit 0)."""
    import subprocess

    from tests.test_loading import console_script

    path = tmp_path / "tx.parquet"
    random_log(3).to_parquet(path)
    args = [*console_script(), "validate", "--transactions", str(path), "--json"]
    duckdb = subprocess.run(args, capture_output=True, text=True, timeout=300)
    on_spark = subprocess.run([*args, "--engine", "spark", "--master", "local[1]"],
                              capture_output=True, text=True, timeout=600)
    assert duckdb.returncode == 0, duckdb.stderr
    assert on_spark.returncode == 0, on_spark.stderr[-2000:]
    assert json.loads(on_spark.stdout) == json.loads(duckdb.stdout)
