"""Parity of the out-of-core contract (``_loading_sql``) with the pandas loader.

Every case of ``tests/test_loading.py``'s odd-input ``CORPUS`` goes through both
loaders: the same exception class and message, or the same cleaning report and the
same clean rows. Then Parquet variants of the same data (typed columns), globs and
directories, random logs with exact money, and a memory limit far below the input.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnlens._loading import exact_total, load_transactions
from churnlens._loading_sql import EngineLimits, load_transactions_sql
from tests.test_loading import CORPUS, Case


def outcome_pandas(path: Any, **kwargs: Any) -> tuple[Any, ...]:
    try:
        tx, report = load_transactions(path, **kwargs)
    except ValueError as exc:
        return type(exc), str(exc), None
    return "ok", report, tx


def outcome_sql(path: Any, **kwargs: Any) -> tuple[Any, ...]:
    try:
        with load_transactions_sql(path, **kwargs) as clean:
            return "ok", clean.report, clean.to_pandas(), clean.out_of_core
    except ValueError as exc:
        return type(exc), str(exc), None, None


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows as comparable text-free values, sorted (the SQL view has no order)."""
    out = pd.DataFrame({
        column: (frame[column].astype("datetime64[us]") if column == "timestamp"
                 else frame[column].astype(object).where(frame[column].notna(), None))
        for column in frame.columns})
    out["customer_id"] = out["customer_id"].map(lambda v: v if v is None else str(v))
    return out.sort_values(list(out.columns), key=lambda s: s.astype(str)).reset_index(
        drop=True)


def assert_same(path: Any, **kwargs: Any) -> bool:
    """Assert both loaders agree; return whether the SQL ran out of core."""
    expected, got = outcome_pandas(path, **kwargs), outcome_sql(path, **kwargs)
    assert got[0] == expected[0], (got[1], expected[1])
    assert got[1] == expected[1]
    if expected[0] == "ok":
        left, right = canonical(expected[2]), canonical(got[2])
        assert list(left.columns) == list(right.columns)
        assert len(left) == len(right)
        for column in left.columns:
            assert left[column].tolist() == right[column].tolist(), column
    return bool(got[3])


# A directory differs by design (the SQL loader reads a directory of Parquet files, the
# pandas loader refuses it): tested on its own below, not for parity.
@pytest.mark.parametrize("case", [c for c in CORPUS if c.id != "directory"],
                         ids=lambda c: c.id)
def test_corpus_parity(case: Case, tmp_path: Path) -> None:
    assert_same(case.make(tmp_path), **case.kwargs)


@pytest.mark.slow
def test_most_of_the_corpus_runs_out_of_core(tmp_path: Path, monkeypatch) -> None:
    """Count the cases the SQL answers itself (the pandas loader is never called)."""
    import churnlens._loading_sql as loading_sql

    calls: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[0]))
        return load_transactions(*args, **kwargs)

    monkeypatch.setattr(loading_sql, "load_transactions", counted)
    by_sql = []
    for number, case in enumerate(CORPUS):
        folder = tmp_path / str(number)
        folder.mkdir()
        path = case.make(folder)
        before = len(calls)
        outcome_sql(path, **case.kwargs)
        by_sql.append(len(calls) == before)
    fell_back = [case.id for case, sql in zip(CORPUS, by_sql, strict=True) if not sql]
    print(f"{sum(by_sql)} of {len(CORPUS)} corpus cases answered by the SQL alone; "
          f"the pandas loader answered {fell_back}")
    # the ones that fall back: time formats, unusual column types, broken files
    assert sum(by_sql) >= 0.75 * len(CORPUS), fell_back


ODD = pd.DataFrame({
    "customer_id": ["007", "7", None, "NA", " x ", "12.0", "null", "a", "a", "b"],
    "timestamp": ["2024-01-01", "2024-01-02T10:00:00+02:00", "2024-01-03", "2024-01-04",
                  " 2024-01-05 ", "2024-01-06 10:00", "2024-01-07", "2024-02-01",
                  "2024-02-01", "2024-03-01T23:30:00-05:00"],
    "amount": ["1.5", "-2.25", "3", "0", "-0.0", " 4 ", "5", "10.10", "10.10", "-15.30"],
})


@pytest.mark.parametrize("as_of", [None, "2024-01-04", "2024-02-01", "2024-03-01"])
@pytest.mark.parametrize("deduplicate", [False, True])
@pytest.mark.parametrize("form", ["csv", "parquet-text", "parquet-typed"])
def test_odd_rows_in_every_form(tmp_path: Path, form: str, as_of: str | None,
                                deduplicate: bool) -> None:
    frame = ODD.copy()
    if form == "csv":
        path = tmp_path / "tx.csv"
        frame.to_csv(path, index=False)
    else:
        if form == "parquet-typed":
            frame = frame.iloc[[0, 1, 2, 6, 7, 8, 9]].copy()
            frame["timestamp"] = pd.to_datetime(frame["timestamp"].str.strip(),
                                                format="ISO8601", utc=True)
            frame["amount"] = frame["amount"].astype(float)
        path = tmp_path / "tx.parquet"
        frame.to_parquet(path)
    assert assert_same(path, as_of=as_of, deduplicate=deduplicate)


@pytest.mark.parametrize("change", [
    {"timestamp": (1, "31/01/2024")}, {"timestamp": (4, None)}, {"timestamp": (0, "9999-01-01")},
    {"amount": (1, "$5")}, {"amount": (5, "1e13")},
    {"amount": (9, None)}, {"amount": (7, "inf")}, {"timestamp": (5, "2024-02-30")},
    {"timestamp": (7, "2024-02-01 25:00"), "amount": (8, "1,5")},
], ids=str)
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_bad_values_same_message(tmp_path: Path, change: dict, suffix: str) -> None:
    frame = ODD.copy()
    for column, (row, value) in change.items():
        frame.loc[row, column] = value
    path = tmp_path / f"tx{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    expected = outcome_pandas(path)
    assert expected[0] != "ok"
    assert_same(path)


@pytest.mark.parametrize("ids", ["int", "int-with-gaps", "float-whole", "float-fraction"])
def test_typed_ids(tmp_path: Path, ids: str) -> None:
    values: list[Any] = {"int": [1, 2, 2**53 + 1], "int-with-gaps": [1, None, 3],
                         "float-whole": [1.0, np.nan, 3.0], "float-fraction": [1.0, 2.5, 3.0]}[ids]
    kind = pa.int64() if ids.startswith("int") else pa.float64()
    table = pa.table({"customer_id": pa.array(values, type=kind),
                      "timestamp": pa.array([dt.datetime(2024, 1, d) for d in (1, 2, 3)]),
                      "amount": pa.array([1.0, 2.0, -3.0])})
    path = tmp_path / "tx.parquet"
    pq.write_table(table, path)
    assert_same(path)


def random_log(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    customers = rng.integers(0, max(rows // 5, 1), rows)
    days = rng.integers(0, 400, rows)
    seconds = rng.integers(0, 86_400, rows)
    stamps = (pd.Timestamp("2023-06-01") + pd.to_timedelta(days, "D")
              + pd.to_timedelta(seconds, "s"))
    cents = rng.integers(-3_000, 20_000, rows)
    cents[rng.random(rows) < 0.05] = 0
    return pd.DataFrame({"customer_id": [f"C{c:05d}" for c in customers],
                         "timestamp": stamps, "amount": cents / 100})


@pytest.mark.parametrize("seed", range(6))
def test_random_logs_equal_exactly(tmp_path: Path, seed: int) -> None:
    print(f"seed {seed}")
    frame = random_log(seed, 3_000 + 500 * seed)
    path = tmp_path / ("tx.parquet" if seed % 2 else "tx.csv")
    frame.to_parquet(path) if seed % 2 else frame.to_csv(path, index=False)
    as_of = "2024-05-01" if seed % 3 == 0 else None
    assert assert_same(path, as_of=as_of)
    report = load_transactions(path, as_of=as_of).report
    amounts = frame["amount"].to_numpy()
    if as_of is None:  # the refund total is the exact sum of the billionths
        refunds = -amounts[amounts < 0]
        assert report.refund_total == exact_total(refunds)
        assert report.refund_total == pytest.approx(refunds.sum(), abs=1e-6)


def test_exact_total_is_order_free() -> None:
    values = np.array([10.10, 5.20, -15.30] * 1000 + [0.1] * 10)
    shuffled = values.copy()
    random.Random(0).shuffle(shuffled)
    assert exact_total(values) == exact_total(shuffled) == 1.0
    assert exact_total(np.array([])) == 0.0


def test_glob_and_directory_read_every_file(tmp_path: Path) -> None:
    frame = random_log(7, 4_000)
    folder = tmp_path / "parts"
    for part, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        chunk = frame.iloc[rows]
        (folder / f"month={part}").mkdir(parents=True)
        chunk.to_parquet(folder / f"month={part}" / "part.parquet")
    whole = tmp_path / "whole.parquet"
    frame.to_parquet(whole)
    expected = load_transactions(whole).report
    for source in (folder, f"{folder}/*/*.parquet"):
        with load_transactions_sql(source) as clean:
            got = clean.report
        assert dataclasses_equal_but_source(got, expected)
        assert got.source == str(source)
    with load_transactions_sql(folder, extra_cols=["month"]) as clean:  # a hive column
        months = clean.to_pandas()["month"]
    assert sorted(months.astype(int).unique().tolist()) == [0, 1, 2]


def dataclasses_equal_but_source(left: Any, right: Any) -> bool:
    import dataclasses

    return dataclasses.replace(left, source="") == dataclasses.replace(right, source="")


def test_a_glob_that_matches_nothing(tmp_path: Path) -> None:
    from churnlens.exceptions import DataValidationError

    with pytest.raises(DataValidationError, match="no file matches"):
        load_transactions_sql(tmp_path / "*.parquet")


@pytest.mark.slow
def test_memory_limit_far_below_the_input(tmp_path: Path) -> None:
    """A 64 MB limit on rows whose duplicate count needs more: DuckDB spills, no failure.

    Proof that it spilled: the same query on the same connection, with the spill folder
    capped at 0 bytes, runs out of memory.
    """
    import duckdb

    rows = 1_500_000
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "customer_id": pd.Series(rng.integers(0, rows, rows)).map("customer-{:09d}".format),
        "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(
            rng.integers(0, 365 * 86_400, rows), "s"),
        "amount": rng.integers(-500, 50_000, rows) / 100,
    })
    path = tmp_path / "big.parquet"
    frame.to_parquet(path, row_group_size=100_000)
    spill = tmp_path / "spill"
    limits = EngineLimits(memory_limit="64MB", temp_directory=str(spill))
    duplicates = ("SELECT count(*) FROM (SELECT customer_id, timestamp, amount, count(*) "
                  "FROM transactions GROUP BY ALL)")
    with load_transactions_sql(path, limits=limits) as clean:
        con = clean.connection
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        report = clean.report
        assert con.execute(duplicates).fetchall()[0][0] == rows
        con.execute("SET max_temp_directory_size = '0KB'")
        with pytest.raises(duckdb.OutOfMemoryException):
            con.execute(duplicates).fetchall()
    assert limit.endswith("MiB") and float(limit.split()[0]) <= 64
    assert report.rows_read == rows and report.customers == frame["customer_id"].nunique()
    assert report.duplicate_rows == int(frame.duplicated().sum())
    assert spill.is_dir()  # a folder the user gave is kept (its files are DuckDB's)


@pytest.mark.slow
def test_row_numbers_of_a_large_csv_follow_the_file(tmp_path: Path) -> None:
    """Bad rows far into a file read in parallel chunks: the same line numbers as pandas."""
    frame = random_log(11, 600_000)
    frame["timestamp"] = frame["timestamp"].astype(str)
    frame.loc[[70_001, 455_555, 599_998], "timestamp"] = ["31/12/2023", "soon", "2024-13-01"]
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    assert outcome_pandas(path)[0] is not None and outcome_pandas(path)[0] != "ok"
    assert_same(path)


def test_a_memory_limit_that_is_not_a_size(tmp_path: Path) -> None:
    from churnlens.exceptions import ChurnlensError

    path = tmp_path / "tx.csv"
    ODD.to_csv(path, index=False)
    with pytest.raises(ChurnlensError, match=r"is not a size.*Suggestion"):
        load_transactions_sql(path, limits=EngineLimits(memory_limit="lots"))


@pytest.mark.parametrize(("ram_gib", "expected"), [
    (24, "4096MiB"), (64, "4096MiB"), (8, "4096MiB"), (6, "3072MiB"), (1, "512MiB")])
def test_auto_memory_limit_is_half_the_ram_at_most_4_gib(ram_gib: int, expected: str) -> None:
    from churnlens._engine import resolve_memory_limit

    assert resolve_memory_limit("auto", ram_bytes=ram_gib * 1024**3) == expected
    assert resolve_memory_limit(" Auto ", ram_bytes=ram_gib * 1024**3) == expected
    # unknown RAM: the cap; anything else goes to DuckDB as written
    assert resolve_memory_limit("auto", ram_bytes=0) == "4096MiB"
    assert resolve_memory_limit("50%") == "50%" and resolve_memory_limit(None) is None


def test_the_default_limit_is_auto_on_the_connection(tmp_path: Path) -> None:
    """Without a setting the engine holds at most 4 GiB (or half a smaller machine's RAM):
    50% of 24 GiB let a 100M-row score peak at 6.83 GiB (docs/scale.md)."""
    import os

    from churnlens._config import load_config

    assert EngineLimits().memory_limit == "auto" == load_config().engine.memory_limit
    path = tmp_path / "tx.csv"
    ODD.to_csv(path, index=False)
    with load_transactions_sql(path) as clean:
        limit = clean.connection.execute(
            "SELECT current_setting('memory_limit')").fetchall()[0][0]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    number, unit = limit.split()
    size = float(number) * {"MiB": 2**20, "GiB": 2**30}[unit]
    assert abs(size - min(4 * 2**30, ram // 2)) <= 0.06 * 2**30


def test_memory_limit_setting_accepts_auto_and_sizes_only() -> None:
    from churnlens._config import load_config
    from churnlens.exceptions import ChurnlensError

    for value in ("auto", "AUTO", "2GB", "512MiB", "50%"):
        assert load_config(overrides={"engine.memory_limit": value}).engine.memory_limit == value
    for value in ("automatic", "lots", ""):
        with pytest.raises(ChurnlensError):
            load_config(overrides={"engine.memory_limit": value})


def test_the_spill_folder_it_made_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    ODD.to_csv(path, index=False)
    clean = load_transactions_sql(path)
    folder = clean.connection.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    assert Path(folder).is_dir()
    clean.close()
    assert not Path(folder).exists()
