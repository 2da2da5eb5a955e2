"""Shared by the benchmarks: run one contender in its own process and read its cost."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def measure(command: list[str], *, cwd: str | Path, env: dict[str, str] | None = None
            ) -> dict[str, Any]:
    """Run a command; wall time, CPU time and peak memory of that process alone.

    CPU time and peak memory come from ``wait4``'s ``rusage`` of this child (all its
    threads), so other work on the machine does not count. A failing command stops
    the benchmark with its stderr.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=cwd,
                                   env=env)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed ({process.returncode}):\n{stderr}")
    return {"wall_seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_gib": usage.ru_maxrss * 1024 / 2**30, "stdout": stdout}


def measure_and_print(command: list[str], *, cwd: str | Path) -> dict[str, Any]:
    """:func:`measure`, its output dropped and its cost printed in one line."""
    result = measure(command, cwd=cwd)
    result.pop("stdout")
    print(f"  {result['wall_seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s CPU, "
          f"peak {result['peak_rss_gib']:.2f} GiB", flush=True)
    return result
