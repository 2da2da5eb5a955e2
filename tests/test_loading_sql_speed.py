"""The out-of-core contract's shortcuts (issue 19, speed and memory at 10M rows).

Each shortcut gives the same report and rows as before (the parity tests of
``tests/test_loading_sql.py`` run through them); these tests pin the shortcuts
themselves: the exact duplicate count by hash, the report's counts taken in the check
scan, the text ids read as they are when the rules change none, and the allocator
returning freed memory.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import churnlens._loading_sql as loading_sql
from churnlens._loading_sql import (
    _count_duplicates,
    duplicates_sql,
    load_transactions_sql,
)
from tests.test_loading_sql import ODD, assert_same, random_log

WANTED = {"customer_id": "customer_id", "timestamp": "timestamp", "amount": "amount"}


def _with_repeats(seed: int, rows: int) -> pd.DataFrame:
    """A log with exact repeats, near repeats (one column differs) and missing extras."""
    rng = np.random.default_rng(seed)
    frame = random_log(seed, rows)
    repeats = frame.sample(n=rows // 10, random_state=seed, replace=True)
    near = frame.sample(n=rows // 10, random_state=seed + 1)
    near = near.assign(amount=near["amount"] + 0.01)
    out = pd.concat([frame, repeats, near], ignore_index=True)
    out["channel"] = rng.choice(np.array(["web", "store", None], dtype=object), len(out))
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("extra", [False, True])
def test_duplicates_by_hash_are_the_exact_count(seed: int, extra: bool) -> None:
    frame = _with_repeats(seed, 2_000 + 700 * seed)
    wanted = {**WANTED, "channel": "channel"} if extra else WANTED
    columns = list(wanted)
    con = duckdb.connect()
    try:
        con.register("rows_frame", frame[columns])
        con.execute("CREATE TEMP TABLE kept AS SELECT * FROM rows_frame")
        expected = int(frame[columns].duplicated().sum())
        assert expected > 0
        assert con.execute(duplicates_sql("kept", wanted)).fetchall()[0][0] == expected
        assert _count_duplicates(con, "kept", wanted) == expected
        # nothing left behind in the connection
        assert not [name for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables()").fetchall() if "hash" in name]
    finally:
        con.close()


def test_duplicates_by_hash_without_repeats_is_zero() -> None:
    frame = random_log(3, 2_000).drop_duplicates()
    con = duckdb.connect()
    try:
        con.register("kept", frame)
        assert _count_duplicates(con, "kept", WANTED) == 0
    finally:
        con.close()


@pytest.mark.parametrize("as_of", [None, "2024-01-04", "2024-02-01"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_check_scan_counts_the_report(tmp_path: Path, monkeypatch, suffix: str,
                                          as_of: str | None) -> None:
    """Without deduplication the report's counts come from the check scan itself: the
    separate scan of ``stats_sql`` is not run, and the report is the pandas loader's."""
    path = tmp_path / f"tx{suffix}"
    ODD.to_csv(path, index=False) if suffix == ".csv" else ODD.to_parquet(path)

    def no_scan(*args: object, **kwargs: object) -> str:
        raise AssertionError("stats_sql scanned the rows again")

    monkeypatch.setattr(loading_sql, "stats_sql", no_scan)
    assert assert_same(path, as_of=as_of)


def test_deduplicated_reports_still_count_the_distinct_rows(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    ODD.to_parquet(path)
    assert assert_same(path, deduplicate=True)


def _kept_sql(clean: loading_sql.CleanTransactions) -> str:
    return str(clean.connection.execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'kept'").fetchall()[0][0])


def test_text_ids_are_read_as_they_are_when_the_rules_change_none(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    random_log(1, 3_000).to_parquet(path)
    with load_transactions_sql(path) as clean:
        assert loading_sql._RAW_ID in _kept_sql(clean)
    assert assert_same(path)


@pytest.mark.parametrize("odd_id", ["12.0", "null", " NA "])
def test_text_ids_the_rules_change_go_through_the_rules(tmp_path: Path, odd_id: str) -> None:
    frame = random_log(2, 500)
    frame.loc[7, "customer_id"] = odd_id
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    with load_transactions_sql(path) as clean:
        assert loading_sql._RAW_ID not in _kept_sql(clean)
    assert assert_same(path)


def test_the_engine_returns_freed_memory_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    random_log(0, 100).to_parquet(path)
    with load_transactions_sql(path) as clean:
        setting = clean.connection.execute(
            "SELECT current_setting('allocator_background_threads')").fetchall()[0][0]
    assert setting is True
