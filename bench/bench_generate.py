"""Benchmark: the streaming generator against the in-memory one, time and peak memory.

Contenders, each in its own subprocess (peak memory from ``wait4``'s ``ru_maxrss`` of
that process alone; see ``bench/_measure.py``):

- ``streaming``: ``churnlens._synthetic.write_transactions`` (what ``churnlens
  generate`` calls): 200,000 customers at a time, each chunk appended to the Parquet
  file;
- ``in memory``: ``churnlens.generate_transactions(N)`` then the table writer
  (``write_table``), what ``churnlens generate`` did before it streamed; run only up
  to ``--in-memory-max`` customers (its memory grows with N: about 2.8 GiB per
  million customers).

At each size the streaming generator's time and peak memory are divided by the
in-memory one's (same run, same machine; both contenders start the same Python with
the same imports). The command itself, ``churnlens generate``, is run once at the
largest size, for its peak memory with the CLI's imports. Up to one chunk (200,000 customers) both
files must be byte-identical. Targets: the streaming generator's peak memory at the
largest size at most 1.25 times its peak at one chunk (flat, not proportional), and
its wall time within 1.25 times the in-memory generator's where both run.

Run from the repository root::

    .venv/bin/python bench/bench_generate.py                          # 200k, 1M, 3M
    .venv/bin/python bench/bench_generate.py --sizes 50000 400000     # quick

Results go to ``bench/results/bench_generate.json``.
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
RESULTS_DIR = HERE / "results"
FLAT_LIMIT = 1.25  # peak at the largest size / peak at one chunk
TIME_LIMIT = 1.25  # streaming wall time / in-memory wall time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[200_000, 1_000_000, 3_000_000])
    parser.add_argument("--in-memory-max", type=int, default=1_000_000,
                        help="largest size the in-memory generator is run at")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", nargs=3, metavar=("HOW", "CUSTOMERS", "OUT"),
                        help=argparse.SUPPRESS)  # internal: run one contender
    args = parser.parse_args(argv)
    if args.run:
        how, customers, out = args.run
        print(json.dumps(run_contender(how, int(customers), out, args.seed)))
        return 0

    from churnlens._synthetic import CHUNK_CUSTOMERS

    churnlens_bin = str(Path(sys.executable).with_name("churnlens"))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="churnlens-bench-generate-") as tmp:
        for size in sorted(args.sizes):
            streamed, whole = Path(tmp) / "streamed.parquet", Path(tmp) / "whole.parquet"
            row: dict[str, Any] = {"customers": size}
            print(f"{size:,} customers: streaming ...", flush=True)
            row["streaming"] = _run(_contender("streaming", size, streamed, args.seed))
            row["streaming"]["rows"] = _rows(streamed)
            if size <= args.in_memory_max:
                print(f"{size:,} customers: in memory ...", flush=True)
                row["in_memory"] = _run(_contender("in-memory", size, whole, args.seed))
                row["in_memory"]["rows"] = _rows(whole)
                row["ratio_wall"] = (row["streaming"]["wall_seconds"]
                                     / row["in_memory"]["wall_seconds"])
                row["ratio_cpu"] = (row["streaming"]["cpu_seconds"]
                                    / row["in_memory"]["cpu_seconds"])
                row["ratio_peak"] = (row["streaming"]["peak_rss_gib"]
                                     / row["in_memory"]["peak_rss_gib"])
                if size <= CHUNK_CUSTOMERS and streamed.read_bytes() != whole.read_bytes():
                    raise SystemExit(f"{size:,} customers fit in one chunk, but the files "
                                     "differ")
                row["same_file"] = size <= CHUNK_CUSTOMERS
                whole.unlink()
            streamed.unlink()
            rows.append(row)
        largest_size = rows[-1]["customers"]
        print(f"{largest_size:,} customers: churnlens generate ...", flush=True)
        command = _run([churnlens_bin, "generate", "-n", str(largest_size), "--seed",
                        str(args.seed), "-o", str(Path(tmp) / "cli.parquet")])
        command["rows"] = _rows(Path(tmp) / "cli.parquet")
        if command["rows"] != rows[-1]["streaming"]["rows"]:
            raise SystemExit("churnlens generate wrote other rows than write_transactions")

    one_chunk = next((r for r in rows if r["customers"] >= CHUNK_CUSTOMERS), rows[0])
    largest = rows[-1]
    growth = largest["streaming"]["peak_rss_gib"] / one_chunk["streaming"]["peak_rss_gib"]
    timed = [r["ratio_wall"] for r in rows if "ratio_wall" in r]
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average_at_end": list(os.getloadavg())},
        "seed": args.seed,
        "chunk_customers": CHUNK_CUSTOMERS,
        "sizes": rows,
        "command": {"customers": largest_size, **command},
        "peak_growth": {"from": one_chunk["customers"], "to": largest["customers"],
                        "ratio": growth, "limit": FLAT_LIMIT},
        "time_limit": TIME_LIMIT,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "bench_generate.json").write_text(json.dumps(results, indent=2) + "\n")
    print_results(results)
    return 0 if growth <= FLAT_LIMIT and all(r <= TIME_LIMIT for r in timed) else 1


def _run(command: list[str]) -> dict[str, Any]:
    return measure_and_print(command, cwd=ROOT)


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _contender(how: str, customers: int, out: Path, seed: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--seed", str(seed), "--run", how,
            str(customers), str(out)]


def run_contender(how: str, customers: int, out: str, seed: int) -> dict[str, Any]:
    """One contender: ``streaming`` (write_transactions) or ``in-memory`` (the whole
    frame from generate_transactions, then the one table writer)."""
    from churnlens._io import write_table
    from churnlens._synthetic import generate_transactions, write_transactions

    if how == "streaming":
        return {"rows": write_transactions(out, customers, seed=seed).transactions}
    frame = generate_transactions(customers, seed=seed)
    write_table(frame, out)
    return {"rows": len(frame)}


def print_results(results: dict[str, Any]) -> None:
    print(f"\nchunks of {results['chunk_customers']:,} customers; seed {results['seed']}")
    print("| customers | rows | streaming wall | CPU | peak | in memory wall | CPU | peak "
          "| x wall | x peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in results["sizes"]:
        s, m = row["streaming"], row.get("in_memory")
        mem = (f"{m['wall_seconds']:.1f} s | {m['cpu_seconds']:.1f} s | "
               f"{m['peak_rss_gib']:.2f} GiB | {row['ratio_wall']:.2f} | "
               f"{row['ratio_peak']:.2f}" if m else "- | - | - | - | -")
        print(f"| {row['customers']:,} | {s['rows']:,} | {s['wall_seconds']:.1f} s | "
              f"{s['cpu_seconds']:.1f} s | {s['peak_rss_gib']:.2f} GiB | {mem} |")
    cmd = results["command"]
    print(f"churnlens generate -n {cmd['customers']}: {cmd['wall_seconds']:.1f} s wall, "
          f"{cmd['cpu_seconds']:.1f} s CPU, peak {cmd['peak_rss_gib']:.2f} GiB")
    growth = results["peak_growth"]
    print(f"streaming peak at {growth['to']:,} / at {growth['from']:,} customers: "
          f"{growth['ratio']:.2f} (limit {growth['limit']})")


if __name__ == "__main__":
    raise SystemExit(main())
