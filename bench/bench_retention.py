"""Benchmark: churnlens retention vs hand-written DuckDB SQL on ~10 million transactions.

Times, in the same run and on the same data:

1. the rates of one period (``churnlens.retention_rates``) against one hand-written
   DuckDB query computing the same figures;
2. the cohort table (``churnlens.cohort_table``) against a hand-written query;
3. (for information) a quarterly series in one call against the hand-written period
   query run once per quarter.

Each pair is run alternately (so background load hits both alike) after a warm-up;
the medians of wall time are compared (CPU time of the process, DuckDB's threads
included, is shown too: it is less disturbed by other work on the machine). Both
sides must give identical numbers, or the benchmark fails.

The hand-written side gets the most favourable input: the transactions already
converted to an Arrow table and registered (not timed). churnlens gets the pandas
DataFrame from ``load_transactions`` and its time includes its input checks and
conversion.

Run from the repository root::

    .venv/bin/python bench/bench_retention.py            # 1.1M customers, ~10M rows
    .venv/bin/python bench/bench_retention.py --customers 50000 --repeats 1   # quick

The synthetic data is generated once and cached in ``bench/data/`` (gitignored);
results are also written to ``bench/results/bench_retention.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

import churnlens
from churnlens._engine import connect
from churnlens._io import write_json, write_table

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
TARGET_RATIO = 2.0

# A period well inside the synthetic data (2023-01-01 .. 2024-12-31): 2024Q3.
PERIOD_START, PERIOD_END = dt.date(2024, 6, 30), dt.date(2024, 9, 30)

PERIOD_SQL = """
WITH occasions AS (
    SELECT customer_id, CAST("timestamp" AS DATE) AS day
    FROM tx
    WHERE CAST("timestamp" AS DATE) <= DATE '{t1}'
    GROUP BY customer_id, day
    HAVING sum(amount) > 0
),
customers AS (
    SELECT customer_id,
           min(day) AS first_day,
           bool_or(day > DATE '{t0}' - {w} AND day <= DATE '{t0}') AS active_at_start,
           bool_or(day > DATE '{t1}' - {w}) AS active_at_end,
           bool_or(day > DATE '{t0}') AS bought_in_period
    FROM occasions
    GROUP BY customer_id
),
counts AS (
    SELECT count(*) FILTER (WHERE active_at_start) AS s,
           count(*) FILTER (WHERE active_at_end) AS e,
           count(*) FILTER (WHERE first_day > DATE '{t0}') AS n,
           count(*) FILTER (WHERE active_at_start AND active_at_end) AS retained,
           count(*) FILTER (WHERE active_at_end AND NOT active_at_start
                            AND first_day <= DATE '{t0}') AS reactivated,
           count(*) FILTER (WHERE first_day <= DATE '{t0}') AS acquired,
           count(*) FILTER (WHERE bought_in_period AND first_day <= DATE '{t0}') AS repeaters
    FROM customers
)
SELECT s AS "S", e AS "E", n AS "N", reactivated,
       100 * (e - n)::DOUBLE / nullif(s, 0) AS crr,
       100 * retained::DOUBLE / nullif(s, 0) AS cohort_retention,
       100 - 100 * retained::DOUBLE / nullif(s, 0) AS churn_rate,
       100 * repeaters::DOUBLE / nullif(acquired, 0) AS repeat_rate,
       100 * e::DOUBLE / nullif(s, 0) AS simple_ratio
FROM counts
"""

COHORT_SQL = """
WITH occasions AS (
    SELECT customer_id, CAST("timestamp" AS DATE) AS day
    FROM tx
    GROUP BY customer_id, day
    HAVING sum(amount) > 0
),
months AS (SELECT DISTINCT customer_id, date_trunc('month', day) AS month FROM occasions),
cohorts AS (SELECT customer_id, min(month) AS cohort FROM months GROUP BY customer_id),
cells AS (
    SELECT c.cohort, datediff('month', c.cohort, m.month) AS k, count(*) AS customers
    FROM months AS m JOIN cohorts AS c USING (customer_id)
    GROUP BY ALL
),
data_end AS (SELECT max(CAST("timestamp" AS DATE)) AS last_day FROM tx),
last_full_month AS (
    SELECT CASE WHEN last_day = last_day(last_day) THEN date_trunc('month', last_day)
                ELSE date_trunc('month', last_day) - INTERVAL 1 MONTH END AS month
    FROM data_end
),
sized AS (
    SELECT cohort, k, customers,
           max(customers) FILTER (WHERE k = 0) OVER (PARTITION BY cohort) AS cohort_size
    FROM cells
)
SELECT strftime(cohort, '%Y-%m') AS cohort, k, cohort_size,
       100 * customers::DOUBLE / cohort_size AS share
FROM sized, last_full_month
WHERE cohort + to_months(k) <= last_full_month.month
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of each side after one warm-up (median reported)")
    parser.add_argument("--no-series", action="store_true", help="skip the series timing")
    args = parser.parse_args(argv)

    path = cached_transactions(args.customers, args.seed)
    began = time.perf_counter()
    transactions, report = churnlens.load_transactions(path)
    load_seconds = time.perf_counter() - began
    print(f"data: {report.rows_kept:,} transactions, {report.customers:,} customers, "
          f"{report.first_day} .. {report.last_day} ({path.name}; loaded in "
          f"{load_seconds:.1f} s, not timed below)", flush=True)

    con = connect()
    con.register("tx", pa.Table.from_pandas(
        transactions[["customer_id", "timestamp", "amount"]], preserve_index=False))
    window = (PERIOD_END - PERIOD_START).days

    # 1. period rates
    hand_period_sql = PERIOD_SQL.format(t0=PERIOD_START, t1=PERIOD_END, w=window)
    lib_rates, hand_rates, period_times = compare(
        "period rates",
        lambda: churnlens.retention_rates(transactions, PERIOD_START, PERIOD_END),
        lambda: con.execute(hand_period_sql).df(),
        args.repeats,
    )
    check_rates(lib_rates.to_dict(), hand_rates.iloc[0].to_dict(), "period rates")

    # 2. cohort table
    lib_cohorts, hand_cohorts, cohort_times = compare(
        "cohort table",
        lambda: churnlens.cohort_table(transactions),
        lambda: con.execute(COHORT_SQL).df(),
        args.repeats,
    )
    cells = check_cohorts(lib_cohorts, hand_cohorts)

    # 3. a quarterly series: one call vs the hand-written query once per quarter
    series_times: dict[str, Any] | None = None
    if not args.no_series:
        series_times = time_series(transactions, con)

    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "duckdb": duckdb.__version__,
                    "churnlens": churnlens.__version__, "cpus": _cpus(),
                    "platform": platform.platform()},
        "data": {"transactions": report.rows_kept, "customers": report.customers,
                 "first_day": str(report.first_day), "last_day": str(report.last_day)},
        "period": {"start": str(PERIOD_START), "end": str(PERIOD_END), **period_times,
                   "rates": lib_rates.to_dict()},
        "cohort_table": {**cohort_times, "cohorts": len(lib_cohorts),
                         "cells_compared": cells},
        "series": series_times,
        "target_ratio": TARGET_RATIO,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    write_json(results, RESULTS_DIR / "bench_retention.json")
    print_results(results)
    ok = all(r["ratio_wall"] <= TARGET_RATIO for r in (period_times, cohort_times))
    return 0 if ok else 1


# --- data -------------------------------------------------------------------------


def cached_transactions(customers: int, seed: int) -> Path:
    """The synthetic transactions as Parquet, generated on first use."""
    path = DATA_DIR / f"synthetic_{customers}_seed{seed}.parquet"
    if not path.exists():
        DATA_DIR.mkdir(exist_ok=True)
        print(f"generating {customers:,} customers (seed {seed}) into {path} ...", flush=True)
        write_table(churnlens.generate_transactions(customers, seed=seed), path)
    return path


# --- timing -----------------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(func: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = func()
    return result, time.perf_counter() - wall, _cpu_seconds() - cpu


def compare(name: str, library: Callable[[], Any], hand: Callable[[], Any],
            repeats: int) -> tuple[Any, Any, dict[str, Any]]:
    """Run both sides alternately: one warm-up each, then ``repeats`` timed runs each."""
    walls: dict[str, list[float]] = {"churnlens": [], "hand": []}
    cpus: dict[str, list[float]] = {"churnlens": [], "hand": []}
    lib_result = hand_result = None
    for run in range(repeats + 1):
        # alternate which side goes first, so neither always runs on a warmer cache
        order = [("churnlens", library), ("hand", hand)]
        for side, func in order if run % 2 == 0 else order[::-1]:
            result, wall, cpu = _timed(func)
            if side == "churnlens":
                lib_result = result
            else:
                hand_result = result
            if run > 0:
                walls[side].append(wall)
                cpus[side].append(cpu)
        print(f"  {name}: run {run}{' (warm-up)' if run == 0 else ''} done", flush=True)
    times = {
        "churnlens_wall_s": statistics.median(walls["churnlens"]),
        "hand_wall_s": statistics.median(walls["hand"]),
        "churnlens_cpu_s": statistics.median(cpus["churnlens"]),
        "hand_cpu_s": statistics.median(cpus["hand"]),
        "churnlens_wall_runs_s": walls["churnlens"],
        "hand_wall_runs_s": walls["hand"],
    }
    times["ratio_wall"] = times["churnlens_wall_s"] / times["hand_wall_s"]
    times["ratio_cpu"] = times["churnlens_cpu_s"] / times["hand_cpu_s"]
    return lib_result, hand_result, times


def time_series(transactions: pd.DataFrame, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """One quarterly series call vs the hand-written period query per complete quarter."""
    series, lib_wall, lib_cpu = _timed(
        lambda: churnlens.retention_series(transactions, "quarter"))
    complete = series[series["complete"]]
    began_wall, began_cpu = time.perf_counter(), _cpu_seconds()
    for row in complete.itertuples(index=False):
        sql = PERIOD_SQL.format(t0=row.start, t1=row.end, w=row.window_days)
        hand = con.execute(sql).df().iloc[0].to_dict()
        check_rates(row._asdict(), hand, f"series {row.period}")
    hand_wall, hand_cpu = time.perf_counter() - began_wall, _cpu_seconds() - began_cpu
    return {"every": "quarter", "periods": len(series), "complete_periods": len(complete),
            "churnlens_wall_s": lib_wall, "churnlens_cpu_s": lib_cpu,
            "hand_loop_wall_s": hand_wall, "hand_loop_cpu_s": hand_cpu}


# --- equality ---------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    a_missing = a is None or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or (isinstance(b, float) and math.isnan(b))
    return (a_missing and b_missing) or (not a_missing and not b_missing and a == b)


def check_rates(library: dict[str, Any], hand: dict[str, Any], what: str) -> None:
    keys = ("S", "E", "N", "reactivated", "crr", "cohort_retention", "churn_rate",
            "repeat_rate", "simple_ratio")
    differ = {k: (library[k], hand[k]) for k in keys if not _same(library[k], hand[k])}
    if differ:
        raise AssertionError(f"{what}: churnlens and the hand-written query differ: {differ}")


def check_cohorts(library: pd.DataFrame, hand: pd.DataFrame) -> int:
    """Every cell the hand-written query returns equals churnlens' (to the bit).

    The hand-written query has no rows for elapsed cells where nobody bought;
    churnlens shows 0 there. Unelapsed cells are NaN in churnlens and absent in the
    hand-written result. Returns the number of cells compared.
    """
    expected = {(r.cohort, int(r.k)): float(r.share) for r in hand.itertuples(index=False)}
    sizes = {r.cohort: int(r.cohort_size) for r in hand.itertuples(index=False)}
    months = [c for c in library.columns if isinstance(c, int)]
    compared = 0
    for row in library.itertuples(index=False):
        record = dict(zip(library.columns, row, strict=True))
        cohort = record["cohort"]
        if record["cohort_size"] and cohort in sizes and sizes[cohort] != record["cohort_size"]:
            raise AssertionError(f"cohort {cohort}: size {record['cohort_size']} != "
                                 f"{sizes[cohort]}")
        for k in months:
            value = record[k]
            hand_value = expected.pop((cohort, k), None)
            if math.isnan(value):
                if hand_value is not None:
                    raise AssertionError(f"cohort {cohort} month {k}: NaN vs {hand_value}")
            elif value != (hand_value if hand_value is not None else 0.0):
                raise AssertionError(f"cohort {cohort} month {k}: {value} vs {hand_value}")
            compared += not math.isnan(value)
    if expected:
        raise AssertionError(f"cells missing from churnlens: {sorted(expected)[:5]}")
    return compared


# --- report -----------------------------------------------------------------------


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def print_results(results: dict[str, Any]) -> None:
    data = results["data"]
    lines = [
        "",
        "=== churnlens retention benchmark ===",
        f"data: {data['transactions']:,} transactions, {data['customers']:,} customers "
        f"({data['first_day']} .. {data['last_day']}), {results['machine']['cpus']} CPUs, "
        f"DuckDB {results['machine']['duckdb']}",
        f"{'':<26}{'churnlens':>12}{'hand SQL':>12}{'ratio':>8}   (median wall; cpu)",
    ]
    for label, key in (("period rates (2024Q3)", "period"), ("cohort table", "cohort_table")):
        r = results[key]
        lines.append(
            f"{label:<26}{r['churnlens_wall_s']:>10.2f} s{r['hand_wall_s']:>10.2f} s"
            f"{r['ratio_wall']:>7.2f}x   (cpu {r['churnlens_cpu_s']:.2f} s vs "
            f"{r['hand_cpu_s']:.2f} s: {r['ratio_cpu']:.2f}x)"
        )
    series = results["series"]
    if series:
        lines.append(
            f"{'series, ' + str(series['periods']) + ' quarters':<26}"
            f"{series['churnlens_wall_s']:>10.2f} s{series['hand_loop_wall_s']:>10.2f} s"
            f"{series['churnlens_wall_s'] / series['hand_loop_wall_s']:>7.2f}x   "
            f"(hand SQL run once per complete quarter: {series['complete_periods']})"
        )
    ok = all(results[k]["ratio_wall"] <= results["target_ratio"]
             for k in ("period", "cohort_table"))
    lines += [
        f"identical numbers: yes (rates, {results['cohort_table']['cells_compared']:,} "
        "cohort cells" + (", every complete quarter" if series else "") + ")",
        f"target: churnlens within {results['target_ratio']:.0f}x of hand-written SQL: "
        f"{'met' if ok else 'NOT met'}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
