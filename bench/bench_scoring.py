"""Benchmark: ``churnlens score`` on 1.1 million customers against the floor.

The floor is what any scoring of these customers with this model must do, measured
in the same run on the same data and machine:

1. the features query: churnlens' own feature SQL run by DuckDB straight on the
   Parquet file (no validation, no pandas), fetched as Arrow;
2. a bare LightGBM ``predict`` of the same booster on those features (the booster
   of the churnlens model; its two BG/NBD input columns are filled with a constant,
   since computing them is part of churnlens' model, not of a bare predict).

The contenders, each in its own subprocess (so each one's peak memory is its own,
read from ``wait4``'s ``ru_maxrss``):

- ``floor``: the two steps above;
- ``churnlens score``: the whole command (load and validate the transactions, features,
  last actual retention, churn risk with the full model, bands, expected value,
  segments, reasons, summary, atomic Parquet write);
- ``churnlens score --no-reasons``.

Each round runs the contenders one after the other (the order rotates between
rounds, so background load hits them alike); the medians of wall time are compared,
and CPU time (user + system, all threads) is shown too: on a shared machine it is
less disturbed than wall time. Targets: ``churnlens score`` within 2x of the floor,
peak memory under 4 GiB.

Run from the repository root::

    .venv/bin/python bench/bench_scoring.py                          # 1.1M customers
    .venv/bin/python bench/bench_scoring.py --customers 50000        # quick

The transactions are generated once (``churnlens.generate_transactions(N, seed=0)``)
and cached in ``bench/data/`` (gitignored), with the model (trained on 20,000 other
synthetic customers, seed 1, default settings); results go to
``bench/results/bench_scoring.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _measure import measure  # bench/_measure.py: the script's own folder is on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
TARGET_RATIO = 2.0
MEMORY_LIMIT_GIB = 4.0
MODEL_AS_OF = "2024-09-30"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-of", default="2024-12-31")
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds (median shown)")
    parser.add_argument("--train-customers", type=int, default=20_000)
    parser.add_argument("--floor", nargs=3, metavar=("DATA", "MODEL", "AS_OF"),
                        help=argparse.SUPPRESS)  # internal: run the floor and print JSON
    args = parser.parse_args(argv)
    if args.floor:
        print(json.dumps(run_floor(*args.floor)))
        return 0

    data = cached_transactions(args.customers, args.seed)
    model = cached_model(args.train_customers)
    churnlens_bin = str(Path(sys.executable).with_name("churnlens"))
    with tempfile.TemporaryDirectory(prefix="churnlens-bench-") as tmp:
        out = Path(tmp) / "scores.parquet"
        score = [churnlens_bin, "score", "-t", str(data), "--as-of", args.as_of, "--model",
                 str(model), "--out", str(out)]
        contenders = {
            "floor": [sys.executable, str(Path(__file__).resolve()), "--floor", str(data),
                      str(model), args.as_of],
            "churnlens score": score,
            "churnlens score --no-reasons": [*score, "--no-reasons"],
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_index in range(args.rounds):
            order = names[round_index % len(names):] + names[:round_index % len(names)]
            for name in order:
                print(f"round {round_index + 1}/{args.rounds}: {name} ...", flush=True)
                result = measure(contenders[name], cwd=ROOT)
                if name == "floor":
                    result["floor"] = json.loads(result.pop("stdout").strip().splitlines()[-1])
                else:
                    result.pop("stdout")
                    result["rows"] = _rows(out)
                print(f"  {result['wall_seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s "
                      f"CPU, peak {result['peak_rss_gib']:.2f} GiB", flush=True)
                runs[name].append(result)

    floor_rows = runs["floor"][0]["floor"]["rows"]
    for name in names[1:]:
        rows = {r["rows"] for r in runs[name]}
        if rows != {floor_rows}:
            raise SystemExit(f"{name} scored {rows} customers, the floor {floor_rows}")
    summary = {name: _medians(results) for name, results in runs.items()}
    floor = summary["floor"]
    for name in names[1:]:
        summary[name]["ratio_wall"] = summary[name]["wall_seconds"] / floor["wall_seconds"]
        summary[name]["ratio_cpu"] = summary[name]["cpu_seconds"] / floor["cpu_seconds"]
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average_at_end": list(os.getloadavg())},
        "data": {"file": data.name, "customers_scored": floor_rows, "as_of": args.as_of},
        "model": str(model.name),
        "rounds": args.rounds,
        "summary": summary,
        "runs": runs,
        "target_ratio": TARGET_RATIO,
        "memory_limit_gib": MEMORY_LIMIT_GIB,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "bench_scoring.json").write_text(json.dumps(results, indent=2) + "\n")
    print_results(results)
    main_run = summary["churnlens score"]
    ok = main_run["ratio_wall"] <= TARGET_RATIO and main_run["peak_rss_gib"] < MEMORY_LIMIT_GIB
    return 0 if ok else 1


def _medians(results: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("wall_seconds", "cpu_seconds", "peak_rss_gib")
    return {k: statistics.median(r[k] for r in results) for k in keys}


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def run_floor(data: str, model: str, as_of: str) -> dict[str, Any]:
    """The floor: the features query on the Parquet file, then a bare booster predict."""
    import numpy as np

    from churnlens._engine import connect, day_number
    from churnlens._features_sql import features_select_sql, sequence_select_sql
    from churnlens._model_loader import load_bundle

    artifact = load_bundle(model, full=True)  # the floor wants the LightGBM booster
    booster = artifact.model.booster_.booster_
    began = time.perf_counter()
    con = connect()
    path = str(data).replace("'", "''")
    con.execute(f"""CREATE VIEW tx AS SELECT customer_id, "timestamp" AS event_time, amount
                    FROM read_parquet('{path}')""")
    day = day_number(dt.date.fromisoformat(as_of))
    sequence = f"({sequence_select_sql('tx', day, 'duckdb')}) AS sequence"
    sql = features_select_sql(sequence, [day], artifact.windows_days, "duckdb",
                              date_column="as_of")
    features = con.sql(sql).to_arrow_table()
    con.close()
    query = time.perf_counter() - began
    names = artifact.model.feature_names_
    matrix = np.column_stack([
        features.column(n).to_numpy(zero_copy_only=False).astype(np.float64)
        if n in features.column_names else np.full(features.num_rows, 0.5) for n in names])
    predicted = booster.predict(matrix, raw_score=True)
    total = time.perf_counter() - began
    return {"rows": features.num_rows, "features_seconds": query,
            "predict_seconds": total - query, "checksum": float(np.sum(predicted))}


def cached_transactions(customers: int, seed: int) -> Path:
    """The synthetic transactions as Parquet, generated on first use."""
    path = DATA_DIR / f"synthetic_{customers}_seed{seed}.parquet"
    if not path.exists():
        import churnlens

        DATA_DIR.mkdir(exist_ok=True)
        print(f"generating {customers:,} customers (seed {seed}) -> {path}", flush=True)
        frame = churnlens.generate_transactions(customers, seed=seed)
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    return path


def cached_model(customers: int) -> Path:
    """A churnlens model bundle trained on other synthetic customers (seed 1)."""
    folder = DATA_DIR / f"model_{customers}_seed1"
    if not (folder / "churnlens-model.json").exists():
        import churnlens
        from churnlens._config import load_config
        from churnlens._pipeline import train

        print(f"training the benchmark model on {customers:,} customers -> {folder}",
              flush=True)
        settings = load_config(overrides={"mlflow.enabled": False, "backtest_steps": 0})
        train(churnlens.generate_transactions(customers, seed=1), as_of=MODEL_AS_OF,
              settings=settings, bundle_dir=folder)
    return folder


def print_results(results: dict[str, Any]) -> None:
    summary = results["summary"]
    floor = summary["floor"]
    floor_runs = sorted(results["runs"]["floor"], key=lambda r: r["wall_seconds"])
    detail = floor_runs[len(floor_runs) // 2]["floor"]  # the median round's split
    print(f"\n{results['data']['customers_scored']:,} customers scored at "
          f"{results['data']['as_of']} ({results['data']['file']}), median of "
          f"{results['rounds']} round(s), {results['machine']['cpus']} CPUs, load average "
          f"at the end {results['machine']['load_average_at_end'][0]:.1f}")
    print(f"{'':32} {'wall s':>8} {'CPU s':>8} {'peak GiB':>9} {'x floor':>8} {'x CPU':>7}")
    for name, row in summary.items():
        ratio = f"{row['ratio_wall']:.2f}" if "ratio_wall" in row else "1.00"
        cpu_ratio = f"{row['ratio_cpu']:.2f}" if "ratio_cpu" in row else "1.00"
        print(f"{name:32} {row['wall_seconds']:8.1f} {row['cpu_seconds']:8.1f} "
              f"{row['peak_rss_gib']:9.2f} {ratio:>8} {cpu_ratio:>7}")
    print(f"(floor: features query {detail['features_seconds']:.1f} s + bare predict "
          f"{detail['predict_seconds']:.1f} s; target: within {TARGET_RATIO:g}x of "
          f"{floor['wall_seconds']:.1f} s, peak under {MEMORY_LIMIT_GIB:g} GiB)")


if __name__ == "__main__":
    sys.exit(main())
