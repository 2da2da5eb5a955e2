"""Benchmark: peak memory and time of the out-of-core path against the pandas path.

Contenders, each in its own subprocess (peak memory from ``wait4``'s ``ru_maxrss`` of
that process alone; see ``bench/_measure.py``), on one generated Parquet file:

- ``validate (DuckDB)``: ``churnlens validate -t FILE`` (the contract in SQL on the file,
  ``_loading_sql``), with the default ``engine.memory_limit`` and with a config that
  sets it to ``--limit`` (1GB by default);
- ``validate (pandas)``: ``churnlens.load_transactions(FILE)``, what ``validate`` ran
  before (the same imports, no printing);
- ``retention (DuckDB)``: ``churnlens retention -t FILE --every quarter``, the same with
  the small limit;
- ``retention (pandas)``: ``load_transactions`` then ``retention_series(tx, "quarter")``,
  what ``retention`` ran before.

Ratios are DuckDB / pandas in the same run. The file is generated once with
``churnlens generate --customers N --seed 0`` (streams) and kept in ``bench/data``.
Run only on an idle machine (it refuses to start above a load average of 3) and never
above 3,000,000 customers here::

    .venv/bin/python bench/bench_out_of_core.py                   # 3,000,000 customers
    .venv/bin/python bench/bench_out_of_core.py --customers 200000  # quick

Results go to ``bench/results/bench_out_of_core.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from _measure import measure_and_print  # bench/_measure.py: the script's own folder is on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
MAX_CUSTOMERS = 3_000_000
MAX_LOAD = 3.0
CHURNLENS = str(Path(sys.executable).with_name("churnlens"))

_PANDAS_VALIDATE = """
import sys
from churnlens._loading import load_transactions
load_transactions(sys.argv[1])
"""
_PANDAS_RETENTION = """
import sys
from churnlens._loading import load_transactions
from churnlens._retention import retention_series
retention_series(load_transactions(sys.argv[1]).transactions, "quarter")
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=MAX_CUSTOMERS)
    parser.add_argument("--limit", default="1GB", help="the small engine.memory_limit")
    parser.add_argument("--force", action="store_true", help="run even on a busy machine")
    args = parser.parse_args(argv)
    if args.customers > MAX_CUSTOMERS:
        raise SystemExit(f"at most {MAX_CUSTOMERS:,} customers in this benchmark")
    load = os.getloadavg()[0]
    if load >= MAX_LOAD and not args.force:
        raise SystemExit(f"load average {load:.1f} >= {MAX_LOAD}: run when the machine is idle")
    path = DATA_DIR / f"ooc_tx{args.customers}.parquet"
    if not path.exists():
        DATA_DIR.mkdir(exist_ok=True)
        print(f"generating {path} ...", flush=True)
        _run([CHURNLENS, "generate", "--customers", str(args.customers), "--seed", "0",
              "--out", str(path)])
    import pyarrow.parquet as pq

    rows = int(pq.ParquetFile(path).metadata.num_rows)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "load_average_at_start": round(load, 2), "customers": args.customers, "rows": rows,
        "file_gib": path.stat().st_size / 2**30, "small_limit": args.limit, "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "small.yaml"
        config.write_text(f"engine:\n  memory_limit: {args.limit}\n")
        contenders = {
            "validate (pandas)": [sys.executable, "-c", _PANDAS_VALIDATE, str(path)],
            "validate (DuckDB)": [CHURNLENS, "validate", "-t", str(path), "--json"],
            "validate (DuckDB, small limit)": [CHURNLENS, "validate", "-t", str(path),
                                               "--json", "--config", str(config)],
            "retention (pandas)": [sys.executable, "-c", _PANDAS_RETENTION, str(path)],
            "retention (DuckDB)": [CHURNLENS, "retention", "-t", str(path), "--every",
                                   "quarter", "--json"],
            "retention (DuckDB, small limit)": [CHURNLENS, "retention", "-t", str(path),
                                                "--every", "quarter", "--json", "--config",
                                                str(config)],
        }
        for name, command in contenders.items():
            print(name, flush=True)
            results["runs"][name] = _run(command)
    runs = results["runs"]
    results["ratios"] = {
        f"{job} {what}": runs[f"{job} (DuckDB{suffix})"][key] / runs[f"{job} (pandas)"][key]
        for job in ("validate", "retention") for suffix in ("", ", small limit")
        for what, key in ((f"peak{suffix}", "peak_rss_gib"), (f"wall{suffix}", "wall_seconds"))
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "bench_out_of_core.json").write_text(json.dumps(results, indent=2) + "\n")
    print_results(results)
    return 0


def _run(command: list[str]) -> dict[str, Any]:
    return measure_and_print(command, cwd=ROOT)


def print_results(results: dict[str, Any]) -> None:
    print(f"\n{results['customers']:,} customers, {results['rows']:,} rows "
          f"({results['file_gib']:.2f} GiB Parquet); {results['machine']}")
    print("| run | wall | CPU | peak RSS |")
    print("|---|---|---|---|")
    for name, run in results["runs"].items():
        print(f"| {name} | {run['wall_seconds']:.1f} s | {run['cpu_seconds']:.1f} s | "
              f"{run['peak_rss_gib']:.2f} GiB |")
    for name, ratio in results["ratios"].items():
        print(f"DuckDB / pandas, {name}: {ratio:.2f}")


if __name__ == "__main__":
    sys.exit(main())
