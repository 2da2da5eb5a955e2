"""Benchmark: ``validate``, ``features``, ``score`` and ``retention`` at 10M, 30M and 100M
transactions (issue 19, build item 5), and the same at 10M on Spark ``local[2]``.

Every run is its own process (wall time, CPU time of all its threads and peak RSS from
``wait4``'s ``rusage`` of that child alone: ``bench/_measure.py``); the load average of
the machine is recorded before and after each run, since the wall time of a shared
machine is noisy (CPU time is much less so). The data are ``churnlens generate
--customers N --seed 0`` files in ``bench/data/scale/`` (1.1M, 3.3M and 11M customers:
about 10M, 30M and 100M transactions), generated once if missing.

Commands timed (the CLI as a user runs it, the default ``engine`` settings unless
``--memory-limit``):

- ``validate``: ``churnlens validate -t FILE --json``;
- ``features``: ``churnlens features -t FILE --as-of 2024-12-31 --out F.parquet``;
- ``score``: ``churnlens score -t FILE --as-of 2024-12-31 --model MODEL --out S.parquet
  --no-ledger`` (with reasons; the model of ``bench/bench_scoring.py``);
- ``retention``: ``churnlens retention -t FILE --every quarter --json``;
- Spark (smallest size): ``score --engine spark --master local[2]`` and ``validate`` /
  ``retention`` with ``--engine spark`` when the CLI has that option.

The growth exponent of each command is the log-log slope of its time against the rows
between the smallest and the largest size measured (wall and CPU).

``--acceptance`` adds, at the smallest size, the second acceptance item of issue 19 in
one run: ``bench/bench_scoring.py``'s floor (its ``--floor`` mode), ``churnlens score``
(out of core) and the in-memory path it replaced (``score_file`` + ``write_table`` in a
process of its own); the score's ratio to the floor must stay <= 2.1 and its peak memory
at most half of the in-memory path's.

Results are cached in ``bench/results/bench_scale.json`` (one entry per size, command and
engine; ``--rerun`` measures again what is asked), and the table is written to
``bench/results/bench_scale.md``. The whole benchmark, on a quiet machine::

    .venv/bin/python bench/bench_scale.py --sizes 1100000 3300000 11000000 --spark \\
        --acceptance --rerun

One size again (the others stay from the cache)::

    .venv/bin/python bench/bench_scale.py --sizes 11000000 --jobs score --rerun
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _measure import measure  # bench/_measure.py: the script's own folder is on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = HERE / "data" / "scale"
RESULTS_DIR = HERE / "results"
RESULTS = RESULTS_DIR / "bench_scale.json"
CHURNLENS = str(Path(sys.executable).with_name("churnlens"))
SIZES = (1_100_000, 3_300_000, 11_000_000)
JOBS = ("validate", "features", "score", "retention")
AS_OF = "2024-12-31"  # the generator's last day
SCORE_TARGET_GIB = 6.0
EXPONENT_TARGET = 1.1
FLOOR_RATIO_TARGET = 2.1

# The in-memory path ``churnlens score`` ran before it went out of core: the pandas
# loader, compute_features on the frame, score_file's chunks, write_table.
_IN_MEMORY_SCORE = """
import json, sys, datetime as dt
from churnlens._config import Settings
from churnlens._io import write_table
from churnlens._model_loader import load_model
from churnlens._scoring import score_file
data, model, as_of, out = sys.argv[1:5]
settings = Settings()
artifact = load_model(model, settings.mlflow)
result = score_file(data, dt.date.fromisoformat(as_of), artifact, settings=settings)
summary = result.summary
write_table(result.scores, out, spreadsheet_safe=True, metadata={
    "model": json.dumps(summary["model"], sort_keys=True), "as_of": summary["as_of"],
    "horizon_days": str(artifact.horizon_days)})
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="customers of each generated file (default: 1.1M 3.3M 11M)")
    parser.add_argument("--jobs", nargs="+", default=list(JOBS), choices=JOBS)
    parser.add_argument("--spark", action="store_true",
                        help="also the smallest size on Spark local[2]")
    parser.add_argument("--acceptance", action="store_true",
                        help="also floor / out-of-core / in-memory score at the smallest size")
    parser.add_argument("--rerun", action="store_true", help="measure again what is cached")
    parser.add_argument("--rounds", type=int, default=1,
                        help="--acceptance: rounds of floor / out of core / in memory (the "
                             "order rotates; medians and per-round ratios are kept)")
    parser.add_argument("--memory-limit", default=None,
                        help="engine.memory_limit for every churnlens run (default: the "
                             "config's, 50%% of RAM)")
    args = parser.parse_args(argv)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("runs", {})
    results["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, "
                          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}"
                          " GiB")
    model = _model()
    _LIMIT[0] = f"@{args.memory_limit}" if args.memory_limit else ""
    with tempfile.TemporaryDirectory(prefix="churnlens-bench-scale-") as tmp:
        config = _config(Path(tmp), args.memory_limit)
        for customers in sorted(args.sizes):
            data = _data(customers)
            for job in args.jobs:
                _measure_once(results, args.rerun, customers, job, "duckdb",
                              _command(job, data, model, Path(tmp), config, "duckdb"))
        smallest = min(args.sizes)
        data = _data(smallest)
        if args.spark:
            for job in args.jobs:
                if job == "features":
                    continue  # no --engine on `features`
                command = _command(job, data, model, Path(tmp), config, "spark")
                if command is None:
                    results["runs"][_key(smallest, job, "spark")] = {
                        "skipped": f"`churnlens {job}` has no --engine option in this tree"}
                    continue
                _measure_once(results, args.rerun, smallest, job, "spark", command)
        if args.acceptance:
            _acceptance(results, args.rerun, smallest, data, model, Path(tmp), config,
                        rounds=max(1, args.rounds))
    results["exponents"] = _exponents(results["runs"])
    results["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    RESULTS_DIR.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    text = markdown(results)
    (RESULTS_DIR / "bench_scale.md").write_text(text)
    print(text)
    return 0


def _key(customers: int, job: str, engine: str) -> str:
    """``customers job engine``, plus ``@LIMIT`` when run with ``--memory-limit``."""
    return f"{customers} {job} {engine}{_LIMIT[0]}"


_LIMIT = [""]


def _model() -> Path:
    sys.path.insert(0, str(HERE))
    from bench_scoring import cached_model  # the model bench_scoring.py times

    return cached_model(20_000)


def _data(customers: int) -> Path:
    path = DATA_DIR / f"tx_{customers}_seed0.parquet"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        print(f"generating {path} ...", flush=True)
        subprocess.run([CHURNLENS, "generate", "--customers", str(customers), "--seed", "0",
                        "--out", str(path)], check=True, cwd=ROOT)
    return path


def _config(folder: Path, memory_limit: str | None) -> Path | None:
    if memory_limit is None:
        return None
    config = folder / "engine.yaml"
    config.write_text(f"engine:\n  memory_limit: {memory_limit}\n")
    return config


def _has_engine_option(job: str) -> bool:
    help_text = subprocess.run([CHURNLENS, job, "--help"], capture_output=True, text=True,
                               env={**os.environ, "COLUMNS": "200"}).stdout
    return "--engine" in help_text


def _command(job: str, data: Path, model: Path, tmp: Path, config: Path | None,
             engine: str) -> list[str] | None:
    base = [CHURNLENS, job, "-t", str(data)]
    if job == "validate":
        command = [*base, "--json"]
    elif job == "features":
        command = [*base, "--as-of", AS_OF, "--out", str(tmp / "features.parquet")]
    elif job == "score":
        command = [*base, "--as-of", AS_OF, "--model", str(model), "--out",
                   str(tmp / "scores.parquet"), "--no-ledger"]
    else:
        command = [*base, "--every", "quarter", "--json"]
    if engine == "spark":
        if not _has_engine_option(job):
            return None
        command += ["--engine", "spark", "--master", "local[2]"]
    if config is not None:
        command += ["--config", str(config)]
    return command


def _measure_once(results: dict[str, Any], rerun: bool, customers: int, job: str,
                  engine: str, command: list[str] | None) -> dict[str, Any] | None:
    key = _key(customers, job, engine)
    if command is None:
        return None
    if key in results["runs"] and "wall_seconds" in results["runs"][key] and not rerun:
        print(f"{key}: cached", flush=True)
        return results["runs"][key]
    print(f"{key} ...", flush=True)
    run = _run(command, customers, engine)
    results["runs"][key] = run
    RESULTS_DIR.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")  # progress
    return run


def measure_tree(command: list[str]) -> dict[str, Any]:
    """:func:`_measure.measure` for a command that starts a JVM (Spark ``local[2]``).

    ``wait4`` counts a process and the children it waited for; PySpark's JVM may not be
    one of them, so the whole process tree is also sampled every 0.25 s (psutil): the
    peak of the summed RSS and the CPU time of every process at its last sighting (at
    most 0.25 s missed per process). The larger of the two readings is kept.
    """
    import threading

    import psutil

    peak, cpu = [0], {}
    done = threading.Event()

    def sample(root: psutil.Process) -> None:
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            rss = 0
            for proc in tree:
                try:
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu[proc.pid] = times.user + times.system
                except psutil.Error:
                    continue
            peak[0] = max(peak[0], rss)
            done.wait(0.25)

    import _measure

    real_popen = _measure.subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> Any:
        process = real_popen(*args, **kwargs)
        threading.Thread(target=sample, args=(psutil.Process(process.pid),),
                         daemon=True).start()
        return process

    _measure.subprocess.Popen = popen  # type: ignore[misc]
    try:
        run = measure(command, cwd=ROOT)
    finally:
        _measure.subprocess.Popen = real_popen  # type: ignore[misc]
        done.set()
    run["wait4_cpu_seconds"], run["wait4_peak_rss_gib"] = run["cpu_seconds"], run["peak_rss_gib"]
    run["tree_cpu_seconds"], run["tree_peak_rss_gib"] = sum(cpu.values()), peak[0] / 2**30
    run["cpu_seconds"] = max(run["cpu_seconds"], run["tree_cpu_seconds"])
    run["peak_rss_gib"] = max(run["peak_rss_gib"], run["tree_peak_rss_gib"])
    return run


def _rows(customers: int) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(DATA_DIR / f"tx_{customers}_seed0.parquet").metadata.num_rows)


def _acceptance(results: dict[str, Any], rerun: bool, customers: int, data: Path,
                model: Path, tmp: Path, config: Path | None, *, rounds: int = 1) -> None:
    """Floor, out-of-core score and the in-memory path, one after the other, ``rounds``
    times (the order rotating, so background load falls on all three alike).

    Each contender's entry holds the medians of wall time, CPU time and peak memory and
    its runs (``rounds``); the ratios are of the medians, and per round (the three runs
    of a round are close in time, so their ratio suffers less from a changing load).
    """
    floor = [sys.executable, str(HERE / "bench_scoring.py"), "--floor", str(data), str(model),
             AS_OF]
    in_memory = [sys.executable, "-c", _IN_MEMORY_SCORE, str(data), str(model), AS_OF,
                 str(tmp / "scores_in_memory.parquet")]
    out_of_core = _command("score", data, model, tmp, config, "duckdb")
    contenders = {"floor": floor, "score out of core": out_of_core,
                  "score in memory": in_memory}
    names = list(contenders)
    keys = {name: _key(customers, f"acceptance {name}", "duckdb") for name in names}
    runs: dict[str, Any] = {}
    if not rerun and all("wall_seconds" in results["runs"].get(keys[n], {}) for n in names):
        runs = {name: results["runs"][keys[name]] for name in names}
    else:
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for index in range(rounds):
            order = names[index % len(names):] + names[:index % len(names)]
            for name in order:
                print(f"{keys[name]} (round {index + 1}/{rounds}) ...", flush=True)
                samples[name].append(_run(contenders[name], customers, "duckdb"))
        for name in names:
            runs[name] = _medians(samples[name])
            results["runs"][keys[name]] = runs[name]
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    ooc, memory, base = runs["score out of core"], runs["score in memory"], runs["floor"]
    per_round = [(o["wall_seconds"] / f["wall_seconds"], o["cpu_seconds"] / f["cpu_seconds"],
                  o["peak_rss_gib"] / m["peak_rss_gib"])
                 for o, f, m in zip(ooc.get("rounds", [ooc]), base.get("rounds", [base]),
                                    memory.get("rounds", [memory]), strict=False)]
    results[f"acceptance{_LIMIT[0]}"] = {
        "customers": customers, "memory_limit": _LIMIT[0][1:] or "default",
        "rows": _rows(customers), "rounds": len(per_round),
        "ratio_to_floor_wall": ooc["wall_seconds"] / base["wall_seconds"],
        "ratio_to_floor_cpu": ooc["cpu_seconds"] / base["cpu_seconds"],
        "in_memory_ratio_to_floor_wall": memory["wall_seconds"] / base["wall_seconds"],
        "peak_ratio_out_of_core_to_in_memory": ooc["peak_rss_gib"] / memory["peak_rss_gib"],
        "wall_ratio_out_of_core_to_in_memory": ooc["wall_seconds"] / memory["wall_seconds"],
        "per_round_ratio_to_floor_wall": [r[0] for r in per_round],
        "per_round_ratio_to_floor_cpu": [r[1] for r in per_round],
        "per_round_peak_ratio": [r[2] for r in per_round],
        "target_ratio_to_floor": FLOOR_RATIO_TARGET, "target_peak_ratio": 0.5,
    }


def _run(command: list[str], customers: int, engine: str) -> dict[str, Any]:
    """One measured run of ``command`` with its load averages and date."""
    load_before = os.getloadavg()
    run = measure_tree(command) if engine == "spark" else measure(command, cwd=ROOT)
    run.pop("stdout", None)
    run.update(load_before=[round(x, 2) for x in load_before],
               load_after=[round(x, 2) for x in os.getloadavg()],
               rows=_rows(customers), command=" ".join(Path(c).name if i == 0 else c
                                                      for i, c in enumerate(command)),
               date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    print(f"  {run['wall_seconds']:.1f} s wall, {run['cpu_seconds']:.1f} s CPU, peak "
          f"{run['peak_rss_gib']:.2f} GiB (load {run['load_before'][0]:.1f})", flush=True)
    return run


def _medians(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each measure over the runs (the first run's other fields), and the
    runs themselves under ``rounds`` when there are several."""
    import statistics

    out = dict(samples[0])
    for measure_name in ("wall_seconds", "cpu_seconds", "peak_rss_gib"):
        out[measure_name] = statistics.median(run[measure_name] for run in samples)
    if len(samples) > 1:
        out["rounds"] = samples
    return out


def _exponents(runs: dict[str, Any]) -> dict[str, Any]:
    """Log-log slope of time against rows, smallest to largest size, per command."""
    out: dict[str, Any] = {}
    for job in JOBS:
        by_setting: dict[str, list[tuple[int, Any]]] = {}
        for key, run in runs.items():
            rest = key.split(" ", 1)[1]
            name, engine = rest.rsplit(" ", 1)
            if name == job and engine.startswith("duckdb") and "wall_seconds" in run:
                by_setting.setdefault(engine, []).append((run["rows"], run))
        for engine, found in by_setting.items():
            points = sorted(found, key=lambda point: point[0])
            if len(points) < 2:
                continue
            (r0, a), (r1, b) = points[0], points[-1]
            span = math.log(r1 / r0)
            out[f"{job} {engine}"] = {
                "from_rows": r0, "to_rows": r1,
                "wall": math.log(b["wall_seconds"] / a["wall_seconds"]) / span,
                "cpu": math.log(b["cpu_seconds"] / a["cpu_seconds"]) / span}
    return out


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables (bench/results/bench_scale.md)."""
    runs = results["runs"]
    lines = [f"# bench_scale ({results.get('machine', '')}; {results.get('date', '')})", "",
             "| transactions | command | engine | wall | CPU | peak RSS | load avg before/after |",
             "|---|---|---|---|---|---|---|"]
    def order(item: tuple[str, Any]) -> tuple[int, int, str]:
        customers, rest = item[0].split(" ", 1)
        job = rest.rsplit(" ", 1)[0]
        rank = JOBS.index(job) if job in JOBS else len(JOBS)
        return int(customers), rank, item[0]

    for key, run in sorted(runs.items(), key=order):
        customers, rest = key.split(" ", 1)
        job, engine = rest.rsplit(" ", 1)
        if "wall_seconds" not in run:
            lines.append(f"| {int(customers):,} customers | {job} | {engine} | "
                         f"{run.get('skipped', '-')} | | | |")
            continue
        lines.append(
            f"| {run['rows'] / 1e6:.1f}M | {job} | {engine} | {run['wall_seconds']:.1f} s | "
            f"{run['cpu_seconds']:.1f} s | {run['peak_rss_gib']:.2f} GiB | "
            f"{run['load_before'][0]:.1f} / {run['load_after'][0]:.1f} |")
    exponents = results.get("exponents") or {}
    if exponents:
        lines += ["", "Growth exponent of time with rows (log-log slope, smallest to largest "
                  "size; target for score <= 1.1):", "",
                  "| command | rows | wall | CPU |", "|---|---|---|---|"]
        for job, e in sorted(exponents.items()):
            lines.append(f"| {job} | {e['from_rows'] / 1e6:.1f}M -> {e['to_rows'] / 1e6:.1f}M | "
                         f"{e['wall']:.2f} | {e['cpu']:.2f} |")
    for name, acceptance in sorted(results.items()):
        if not name.startswith("acceptance"):
            continue
        lines += ["", f"Acceptance at {acceptance['rows'] / 1e6:.1f}M transactions "
                  f"(engine.memory_limit {acceptance.get('memory_limit', 'default')}): "
                  f"out-of-core score / floor {acceptance['ratio_to_floor_wall']:.2f} wall "
                  f"({acceptance['ratio_to_floor_cpu']:.2f} CPU; target <= "
                  f"{acceptance['target_ratio_to_floor']}), in-memory path / floor "
                  f"{acceptance['in_memory_ratio_to_floor_wall']:.2f}; peak memory out of "
                  f"core / in memory {acceptance['peak_ratio_out_of_core_to_in_memory']:.2f} "
                  f"(target <= 0.5); wall out of core / in memory "
                  f"{acceptance['wall_ratio_out_of_core_to_in_memory']:.2f}."]
        if acceptance.get("rounds", 1) > 1:
            def listed(values: list[float]) -> str:
                return ", ".join(f"{v:.2f}" for v in values)

            lines += ["", f"Medians of {acceptance['rounds']} rounds; per round, out of core "
                      f"/ floor {listed(acceptance['per_round_ratio_to_floor_wall'])} wall "
                      f"({listed(acceptance['per_round_ratio_to_floor_cpu'])} CPU), peak "
                      f"out of core / in memory {listed(acceptance['per_round_peak_ratio'])}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
