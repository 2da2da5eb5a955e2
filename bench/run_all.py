"""Run every benchmark in bench/ (``make bench``), one after the other.

Each benchmark measures churnlens against a peer in the same run and prints its own
ratio; this script only runs them in order and stops at the first failure. They use
the data cached in bench/data/ (generated on first use: ~10M transactions).
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
    for name in names:
        began = time.perf_counter()
        print(f"== {name}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / name)])
        print(f"== {name}: exit {code} after {time.perf_counter() - began:.0f} s", flush=True)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
