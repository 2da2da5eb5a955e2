"""Benchmark: how ``churnlens score`` time and memory grow with the number of customers.

Issue 19 measured 23 s at 1.1M customers and 5 min 47 s at 3M (15x the time for 3x
the rows). This script finds the phase whose time per row grows with size: for each
size it generates a Parquet log once (``churnlens generate --customers N --seed 0``,
cached in ``bench/data/``), takes ``bench_scoring.py``'s model (trained once), then
scores each size in its own subprocess (peak RSS from ``wait4``) and records the wall
time of every phase of :func:`churnlens._scoring.score_file` (the progress messages,
timed in the process) plus the Parquet write (``churnlens._io.write_table``, as the
CLI calls it). With ``--profile`` the scoring runs under cProfile and the top
functions by cumulative time are saved beside the results. ``--query`` times the
features query alone (DuckDB on the Parquet file) with DuckDB's ``MEDIAN`` and with
``list_median(LIST(...))`` as the gap median: the cause (docs/scale-profile.md).

Run from the repository root (2 cores, 24 GiB: keep sizes <= 2M)::

    .venv/bin/python bench/bench_score_scaling.py                       # 250k .. 2M
    .venv/bin/python bench/bench_score_scaling.py --sizes 250000 500000 # quick
    .venv/bin/python bench/bench_score_scaling.py --query --sizes 1000000 2000000

Results go to ``bench/results/bench_score_scaling.json`` (and ``.md``, a table);
``docs/scale-profile.md`` ("Where scoring time goes") discusses them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _measure import measure  # bench/_measure.py: the script's own folder is on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
PYTHON = sys.executable
CLI = str(Path(PYTHON).with_name("churnlens"))
SIZES = (250_000, 500_000, 1_000_000, 2_000_000)
SCORE_AS_OF = "2024-12-31"  # the generator's last day


def _data(customers: int) -> Path:
    path = DATA_DIR / f"scaling_tx{customers}.parquet"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([CLI, "generate", "--customers", str(customers), "--seed", "0",
                        "--out", str(path)], check=True, cwd=ROOT, capture_output=True)
    return path


def _model() -> Path:
    """bench_scoring.py's model (20,000 other customers, seed 1, default settings): the
    one behind the issue's 23 s at 1.1M customers."""
    from bench_scoring import cached_model

    return cached_model(20_000)


def run_one(transactions: str, bundle: str, out: str, profile: str | None) -> dict[str, Any]:
    """Score one file in this process; the wall time of each phase (seconds)."""
    import datetime as dt

    from churnlens._config import Settings
    from churnlens._io import write_table
    from churnlens._model_loader import load_model

    marks: list[tuple[str, float]] = [("loading the model", time.perf_counter())]

    def progress(message: str) -> None:
        if not message.startswith("scored "):  # one mark per phase, not per chunk
            name = re.sub(r" [0-9,]+ ", " ", message.split(" at ")[0].split(" with ")[0])
            marks.append((name, time.perf_counter()))

    settings = Settings()
    artifact = load_model(bundle, settings.mlflow)
    marks.append(("importing the scoring", time.perf_counter()))
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    from churnlens._scoring import score_file

    result = score_file(transactions, dt.date.fromisoformat(SCORE_AS_OF), artifact,
                        settings=settings, progress=progress)
    progress("writing")
    write_table(result.scores, Path(out), metadata={"as_of": SCORE_AS_OF},
                spreadsheet_safe=True)
    progress("end")
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        Path(profile).write_text(text.getvalue())
    phases = {}
    for (name, began), (_next, ended) in itertools.pairwise(marks):
        phases[name] = phases.get(name, 0.0) + ended - began
    return {"customers": len(result.scores), "rows": result.summary["cleaning"]["rows_kept"],
            "phases": phases}


MEDIANS = {"median": "MEDIAN(CAST(day - previous_day AS DOUBLE))",
           "list_median": "list_median(LIST(CAST(day - previous_day AS DOUBLE)))"}


def run_query(transactions: str, form: str) -> dict[str, Any]:
    """The features query alone, DuckDB straight on the Parquet file, with ``form`` as
    the ``gap_median`` aggregate (the cause of issue 19's superlinear scoring)."""
    from churnlens._engine import connect, day_number
    from churnlens._features_sql import features_select_sql, sequence_select_sql

    con = connect()
    con.execute("CREATE VIEW tx AS SELECT customer_id, timestamp AS event_time, amount "
                f"FROM read_parquet('{transactions}')")
    import datetime as dt

    day = day_number(dt.date.fromisoformat(SCORE_AS_OF))
    sql = features_select_sql(f"({sequence_select_sql('tx', day, 'duckdb')}) AS sequence",
                              [day], (30, 90, 180, 365), "duckdb", date_column="as_of")
    sql = sql.replace(MEDIANS["list_median"], MEDIANS["median"]).replace(
        MEDIANS["median"], MEDIANS[form])
    began, times = time.perf_counter(), os.times()
    rows = con.sql(sql).to_arrow_table().num_rows
    ended = os.times()
    return {"form": form, "customers": rows, "query_seconds": time.perf_counter() - began,
            "user_seconds": ended.user - times.user,
            "system_seconds": ended.system - times.system}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--profile", action="store_true",
                        help="Also run each size under cProfile (top 45 by cumulative).")
    parser.add_argument("--query", action="store_true",
                        help="Time only the features query, with DuckDB's MEDIAN and with "
                        "list_median(LIST(...)) as the gap median, per size.")
    parser.add_argument("--one-query", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--one", nargs=4, metavar=("TX", "BUNDLE", "OUT", "PROFILE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        tx, bundle, out, profile = args.one
        print(json.dumps(run_one(tx, bundle, out, None if profile == "-" else profile)))
        return
    if args.one_query:
        print(json.dumps(run_query(*args.one_query)))
        return
    sizes = sorted(args.sizes)
    if args.query:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        found = []
        for n in sizes:
            for form in MEDIANS:
                cost = measure([PYTHON, str(Path(__file__).resolve()), "--one-query",
                                str(_data(n)), form], cwd=ROOT)
                found.append({**json.loads(cost["stdout"]),
                              "peak_rss_gib": cost["peak_rss_gib"]})
                print(json.dumps(found[-1]), flush=True)
        (RESULTS_DIR / "bench_score_scaling_query.json").write_text(json.dumps(found, indent=2))
        return
    bundle = _model()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        tx = _data(n)
        out = DATA_DIR / f"scaling_scores{n}.parquet"
        cost = measure([PYTHON, str(Path(__file__).resolve()), "--one", str(tx), str(bundle),
                        str(out), "-"], cwd=ROOT, env={**os.environ, "CHURNLENS_LEDGER": "off"})
        row = {**json.loads(cost["stdout"]), "wall_seconds": cost["wall_seconds"],
               "cpu_seconds": cost["cpu_seconds"], "peak_rss_gib": cost["peak_rss_gib"]}
        row["seconds_per_million_rows"] = row["wall_seconds"] / (row["rows"] / 1e6)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.profile:
            measure([PYTHON, str(Path(__file__).resolve()), "--one", str(tx), str(bundle),
                     str(out), str(RESULTS_DIR / f"bench_score_scaling_profile{n}.txt")],
                    cwd=ROOT, env={**os.environ, "CHURNLENS_LEDGER": "off"})
    (RESULTS_DIR / "bench_score_scaling.json").write_text(json.dumps(rows, indent=2))
    names = list(dict.fromkeys(p for r in rows for p in r["phases"]))
    lines = ["| customers | rows | " + " | ".join(names) + " | wall s | peak GiB | s per M rows |",
             "|" + "---|" * (len(names) + 5)]
    for r in rows:
        lines.append(f"| {r['customers']:,} | {r['rows']:,} | " + " | ".join(
            f"{r['phases'].get(p, 0.0):.1f}" for p in names) + f" | {r['wall_seconds']:.1f} | "
            f"{r['peak_rss_gib']:.2f} | {r['seconds_per_million_rows']:.2f} |")
    (RESULTS_DIR / "bench_score_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
