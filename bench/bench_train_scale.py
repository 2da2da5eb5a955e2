"""Benchmark: ``train`` on a big file, the pandas path against the out-of-core path (issue 19).

Run it once per mode, each in its own process under ``/usr/bin/time -v`` (peak RSS);
``F=bench/data/scale/tx_1100000_seed0.parquet`` (``churnlens generate --customers 1100000
--seed 0``)::

    /usr/bin/time -v .venv/bin/python bench/bench_train_scale.py pandas $F
    /usr/bin/time -v .venv/bin/python bench/bench_train_scale.py ooc $F
    /usr/bin/time -v .venv/bin/python bench/bench_train_scale.py ooc $F 2GB

``pandas`` loads the file with the pandas loader and trains on the frame; ``ooc`` hands
``train`` the path, so DuckDB reads it within the memory limit (third argument, default
50%) and only the sampled snapshots reach pandas. MLflow off, no backtest, as-of
2024-12-31 (the data of ``churnlens generate --seed 0``). The numbers are in
docs/scale.md ("Training out of core and on Spark").
"""

from __future__ import annotations

import sys
import time

from churnlens._config import Settings
from churnlens._loading import load_transactions
from churnlens._pipeline import train


def main(argv: list[str]) -> None:
    mode, path = argv[0], argv[1]
    if mode not in ("pandas", "ooc"):
        raise SystemExit("usage: bench_train_scale.py pandas|ooc FILE [MEMORY_LIMIT]")
    limit = argv[2] if len(argv) > 2 else "50%"
    settings = Settings(mlflow={"enabled": False}, backtest_steps=0,
                        engine={"memory_limit": limit})
    began = time.time()

    def say(message: str) -> None:
        print(f"{time.time() - began:8.1f}s {message}", flush=True)

    source = (load_transactions(path, as_of="2024-12-31").transactions
              if mode == "pandas" else path)
    run = train(source, as_of="2024-12-31", settings=settings, progress=say)
    summary = run.summary()
    print("RESULT", mode, f"wall={time.time() - began:.1f}s",
          "snapshot_rows", summary["snapshot_rows"], summary["sampling"]["rows_before"],
          "auc", summary["validation"]["churnlens"]["auc"])


if __name__ == "__main__":
    main(sys.argv[1:])
