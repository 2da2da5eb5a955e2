"""Benchmark: churnlens features vs a hand-written DuckDB query vs lifetimes; snapshots.

Data: ``churnlens.generate_transactions(1_100_000, seed=0)`` (about 10 million rows
for 1.1 million customers), cached as Parquet in ``bench/data/``. One cutoff, the
last day of the data (2024-12-31). Each contender runs in its own subprocess, which
loads the Parquet file into pandas and then times only the call; peak memory is
that process's peak resident set size (``ru_maxrss``: the loaded data included, so
the "before" figure is shown too). Contenders are interleaved over ``--rounds``
rounds and the best wall time is kept (the machine may be shared).

Contenders:

- ``churnlens``: ``compute_features`` with the full feature set (32 features, plus
  ``customer_id`` and ``as_of``).
- ``duckdb_rfm``: a hand-written DuckDB query for recency, frequency, tenure and
  monetary total only (occasions = days with positive net amount, as churnlens).
- ``lifetimes``: ``lifetimes.utils.summary_data_from_transaction_data`` (frequency,
  recency, T, monetary value) on the same frame. If ``lifetimes`` cannot be imported
  in this interpreter (it is archived and may break on new pandas), it runs in a
  separate virtual environment ``bench/.venv-lifetimes`` with ``pandas<3``, created
  on first use.
- ``snapshots_1`` / ``snapshots_12``: ``build_snapshots`` at the last month end only
  and at the 12 month ends of 2024 (horizon 90 days).

Usage::

    python bench/bench_features.py            # full size, 3 rounds
    python bench/bench_features.py --customers 100000 --rounds 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"
LIFETIMES_VENV = HERE / ".venv-lifetimes"
AS_OF = "2024-12-31"
MONTH_ENDS = [f"2024-{m:02d}-{d}" for m, d in zip(
    range(1, 13), (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31), strict=True)]
CONTENDERS = ("churnlens", "duckdb_rfm", "lifetimes", "snapshots_1", "snapshots_12")

RFM_SQL = f"""
WITH daily AS (
    SELECT customer_id, CAST("timestamp" AS DATE) AS day, SUM(amount) AS net
    FROM transactions
    WHERE "timestamp" < DATE '{AS_OF}' + INTERVAL 1 DAY
    GROUP BY customer_id, day
)
SELECT customer_id,
       DATE '{AS_OF}' - MAX(day) FILTER (WHERE net > 1e-9) AS recency_days,
       COUNT(*) FILTER (WHERE net > 1e-9) AS frequency,
       DATE '{AS_OF}' - MIN(day) FILTER (WHERE net > 1e-9) AS tenure_days,
       SUM(net) AS monetary_total
FROM daily
GROUP BY customer_id
HAVING COUNT(*) FILTER (WHERE net > 1e-9) > 0
"""


def data_path(customers: int) -> Path:
    path = DATA / f"synthetic_{customers}_seed0.parquet"
    if not path.exists():
        import churnlens

        DATA.mkdir(parents=True, exist_ok=True)
        print(f"generating {customers:,} customers into {path} ...", flush=True)
        frame = churnlens.generate_transactions(customers, seed=0)
        frame[["customer_id", "timestamp", "amount"]].to_parquet(path, index=False)
    return path


# --- worker: one contender, one subprocess ------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(name: str, path: Path) -> dict:
    import pandas as pd

    frame = pd.read_parquet(path, columns=["customer_id", "timestamp", "amount"])
    frame["timestamp"] = frame["timestamp"].astype("datetime64[us]")
    before = peak_rss_mib()
    began = time.perf_counter()
    if name == "churnlens":
        from churnlens import compute_features

        rows = len(compute_features(frame, AS_OF))
    elif name == "duckdb_rfm":
        from churnlens._engine import connect

        con = connect()
        con.register("transactions", frame)
        rows = len(con.sql(RFM_SQL).to_arrow_table().to_pandas())
        con.close()
    elif name == "lifetimes":
        import warnings

        warnings.simplefilter("ignore")
        from lifetimes.utils import summary_data_from_transaction_data

        rows = len(summary_data_from_transaction_data(
            frame, "customer_id", "timestamp", monetary_value_col="amount",
            observation_period_end=AS_OF, freq="D"))
    elif name.startswith("snapshots_"):
        from churnlens import build_snapshots

        cutoffs = MONTH_ENDS if name == "snapshots_12" else MONTH_ENDS[-1:]
        rows = len(build_snapshots(frame, cutoffs, horizon_days=90))
    else:
        raise SystemExit(f"unknown contender {name!r}")
    seconds = time.perf_counter() - began
    return {"name": name, "seconds": seconds, "rows_out": rows, "rows_in": len(frame),
            "rss_before_mib": before, "peak_rss_mib": peak_rss_mib()}


def lifetimes_python() -> str:
    """An interpreter where lifetimes imports: this one, or a dedicated venv."""
    probe = "import warnings; warnings.simplefilter('ignore'); import lifetimes.utils"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
        return sys.executable
    python = LIFETIMES_VENV / "bin" / "python"
    if not python.exists():
        print(f"lifetimes does not import here; creating {LIFETIMES_VENV} (pandas<3)",
              flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LIFETIMES_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "pandas<3",
                        "pyarrow", "lifetimes>=0.11.3"], check=True)
    return str(python)


def run_contender(name: str, path: Path) -> dict:
    python = lifetimes_python() if name == "lifetimes" else sys.executable
    # the lifetimes venv has no churnlens: run this file as a plain script there
    result = subprocess.run(
        [python, str(Path(__file__).resolve()), "--worker", name, "--data", str(path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- driver ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.data))))
        return

    path = data_path(args.customers)
    best: dict[str, dict] = {}
    for round_number in range(1, args.rounds + 1):
        for name in args.only:
            result = run_contender(name, path)
            print(f"round {round_number}: {name:13s} {result['seconds']:8.2f} s  "
                  f"peak {result['peak_rss_mib']:7.0f} MiB", flush=True)
            kept = best.get(name)
            if kept is None or result["seconds"] < kept["seconds"]:
                result["peak_rss_mib"] = max(result["peak_rss_mib"],
                                             kept["peak_rss_mib"] if kept else 0.0)
                best[name] = result
            else:
                kept["peak_rss_mib"] = max(kept["peak_rss_mib"], result["peak_rss_mib"])

    rows_in = next(iter(best.values()))["rows_in"]
    print(f"\n{rows_in:,} transactions, {args.customers:,} customers, as of {AS_OF}, "
          f"best of {args.rounds} round(s), {os.cpu_count()} cores")
    print(f"{'contender':14s} {'wall s':>8s} {'rows out':>10s} {'RSS before':>11s} "
          f"{'peak RSS':>9s}")
    for name in args.only:
        r = best[name]
        print(f"{name:14s} {r['seconds']:8.2f} {r['rows_out']:10,} "
              f"{r['rss_before_mib']:8.0f} MiB {r['peak_rss_mib']:5.0f} MiB")

    def ratio(a: str, b: str) -> float | None:
        return best[a]["seconds"] / best[b]["seconds"] if a in best and b in best else None

    checks = [
        ("churnlens / duckdb_rfm", ratio("churnlens", "duckdb_rfm"), "target <= 2"),
        ("lifetimes / churnlens", ratio("lifetimes", "churnlens"), "target >= 20"),
        ("snapshots_12 / snapshots_1", ratio("snapshots_12", "snapshots_1"), "target <= 3"),
    ]
    print()
    for label, value, target in checks:
        if value is not None:
            print(f"{label:28s} {value:6.2f}x   ({target})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"features_{args.customers}.json"
    out.write_text(json.dumps({"best": best, "ratios": {k: v for k, v, _ in checks}},
                              indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
