"""Run every benchmark in bench/ (``make bench``), one after the other.

Each benchmark measures churnlens against a peer in the same run and prints its own
ratio; this script only runs them in order (bench_api, bench_features, bench_load,
bench_quality, bench_retention, bench_scoring, bench_web) and exits with the first
failing status once all have run: a missed target in one benchmark does not hide the
numbers of the next. They use the data cached in bench/data/ (generated on first use: ~10M
transactions); bench_quality generates its own logs and reads CDNOW.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Run bench_*.py (or the names given on the command line) and report their status."""
    names = sys.argv[1:] or sorted(p.name for p in HERE.glob("bench_*.py"))
    failures: dict[str, int] = {}
    for name in names:
        began = time.perf_counter()
        print(f"== {name}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / name)])
        print(f"== {name}: exit {code} after {time.perf_counter() - began:.0f} s", flush=True)
        if code != 0:
            failures[name] = code
    if failures:
        print(f"== failed: {', '.join(f'{n} (exit {c})' for n, c in failures.items())}",
              flush=True)
    return next(iter(failures.values()), 0)


if __name__ == "__main__":
    raise SystemExit(main())
