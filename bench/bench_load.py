"""Benchmark: loading a model in a fresh process, and the CLI's start-up.

What a new user waits for before ``churnlens score`` or ``churnlens serve`` does any
work. Each contender runs in its own fresh Python process (imports included, as a
user meets them), one after the other; the order rotates between rounds and the
medians of wall time are compared (CPU time, user + system, is shown too):

- ``churnlens.load_model`` of ``models:/churnlens@champion`` from a sqlite registry
  (every check: digest, card, signature, features, horizon);
- ``churnlens.load_model`` of the exported bundle (the same model); both read the
  bundle's scoring form (``churnlens-scorer.npz``: arrays, NumPy only, no pickle);
- ``churnlens.load_model(..., full=True)`` of the bundle: the fitted estimator from
  the pickle (what training code and notebooks ask for);
- peer: ``mlflow.pyfunc.load_model`` of the same registered model (no checks beyond
  the bundle's digest, which churnlens' pyfunc does);
- the pickle's floor: ``joblib.load`` of the bundle's model file, nothing else (the
  libraries the pickled model is made of must be imported by any loader of the pickle;
  the scoring form does without them);
- ``churnlens --version`` and ``churnlens --help``.

Each load process also times a second load of the same model, once the libraries are
imported ("warm"): that is churnlens' own work (finding the version, reading and
hashing the file, unpickling, checks). Targets: the registered champion in under
3 s, a bundle in under 1 s, ``--version`` and ``--help`` in under 0.5 s, all in a
fresh process.

Run from the repository root::

    .venv/bin/python bench/bench_load.py              # 5 rounds
    .venv/bin/python bench/bench_load.py --rounds 3

The registry (a sqlite store with one registered model, trained on 20,000 synthetic
customers, seed 1, default settings) and its exported bundle are created once and
cached in ``bench/data/`` (gitignored); results go to ``bench/results/bench_load.json``.
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
from pathlib import Path
from typing import Any

from _measure import measure  # bench/_measure.py: the script's own folder is on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
MODEL_AS_OF = "2024-09-30"
CHAMPION = "models:/churnlens@champion"
TARGETS = {  # contender -> wall seconds it must stay under (fresh process)
    "churnlens.load_model: registry champion": 3.0,
    "churnlens.load_model: bundle": 1.0,
    "churnlens --version": 0.5,
    "churnlens --help": 0.5,
}

# The load processes: a cold load (imports included), then a warm one of the same model.
_TIMED_LOAD = """
import json, sys, time
began = time.perf_counter()
{load}
cold = time.perf_counter() - began
began = time.perf_counter()
{load}
warm = time.perf_counter() - began
print(json.dumps({{"cold_seconds": cold, "warm_seconds": warm, "check": {check}}}))
"""
CHURNLENS_LOAD = _TIMED_LOAD.format(  # MLflow settings only for a registry URI
    load="""import churnlens
if sys.argv[2:]:
    from churnlens._config import MlflowSettings
model = churnlens.load_model(
    sys.argv[1], MlflowSettings(tracking_uri=sys.argv[2]) if sys.argv[2:] else None)""",
    check="model.horizon_days")
CHURNLENS_FULL_LOAD = _TIMED_LOAD.format(
    load="import churnlens; model = churnlens.load_model(sys.argv[1], full=True)",
    check="model.model.horizon_days_")
MLFLOW_LOAD = _TIMED_LOAD.format(
    load="import mlflow.pyfunc; model = mlflow.pyfunc.load_model(sys.argv[1])",
    check="model.unwrap_python_model().artifact.horizon_days")
JOBLIB_LOAD = _TIMED_LOAD.format(
    load="import joblib; model = joblib.load(sys.argv[1])", check="model.horizon_days")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median shown)")
    parser.add_argument("--train-customers", type=int, default=20_000)
    args = parser.parse_args(argv)

    store = cached_registry(args.train_customers)
    tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
    bundle = store / "bundle"
    churnlens_bin = str(Path(sys.executable).with_name("churnlens"))
    python = sys.executable
    contenders: dict[str, list[str]] = {
        "churnlens.load_model: registry champion": [python, "-c", CHURNLENS_LOAD, CHAMPION,
                                                    tracking_uri],
        "churnlens.load_model: bundle": [python, "-c", CHURNLENS_LOAD, str(bundle)],
        "churnlens.load_model: bundle, full=True": [python, "-c", CHURNLENS_FULL_LOAD,
                                                    str(bundle)],
        "mlflow.pyfunc.load_model: registry champion": [python, "-c", MLFLOW_LOAD, CHAMPION],
        "floor: joblib.load of the bundle file": [
            python, "-c", JOBLIB_LOAD, str(bundle / "churnlens-model.joblib")],
        "churnlens --version": [churnlens_bin, "--version"],
        "churnlens --help": [churnlens_bin, "--help"],
    }
    environment = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    names = list(contenders)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="churnlens-bench-load-") as workdir:
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                result = measure(contenders[name], cwd=workdir, env=environment)
                stdout = result.pop("stdout").strip()
                if stdout.startswith("{"):
                    result.update(json.loads(stdout.splitlines()[-1]))
                print(f"round {round_index + 1}/{args.rounds}: {name}: "
                      f"{result['wall_seconds']:.2f} s wall, {result['cpu_seconds']:.2f} s CPU",
                      flush=True)
                runs[name].append(result)
    for name in names:
        checks = {r.get("check") for r in runs[name]} - {None}
        if checks - {91}:
            raise SystemExit(f"{name} loaded a model of horizon {checks}, not 91 days")

    summary = {name: _medians(results) for name, results in runs.items()}
    peer = summary["mlflow.pyfunc.load_model: registry champion"]["wall_seconds"]
    floor = summary["floor: joblib.load of the bundle file"]["wall_seconds"]
    for name, row in summary.items():
        if "cold_seconds" in row:
            row["ratio_to_mlflow_pyfunc"] = row["wall_seconds"] / peer
            row["ratio_to_floor"] = row["wall_seconds"] / floor
        if name in TARGETS:
            row["target_seconds"] = TARGETS[name]
            row["passed"] = row["wall_seconds"] < TARGETS[name]
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average_at_end": list(os.getloadavg())},
        "model": {"registry": tracking_uri, "uri": CHAMPION, "bundle": str(bundle),
                  "bundle_bytes": (bundle / "churnlens-model.joblib").stat().st_size,
                  "train_customers": args.train_customers},
        "rounds": args.rounds,
        "summary": summary,
        "runs": runs,
        "targets_seconds": TARGETS,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "bench_load.json").write_text(json.dumps(results, indent=2) + "\n")
    print_results(results)
    return 0 if all(summary[name]["passed"] for name in TARGETS) else 1


def _medians(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in ("wall_seconds", "cpu_seconds", "peak_rss_gib", "cold_seconds",
                        "warm_seconds") if k in results[0]]
    return {k: statistics.median(r[k] for r in results) for k in keys}


def cached_registry(customers: int) -> Path:
    """A sqlite MLflow store with one registered champion, and its bundle (seed 1)."""
    folder = DATA_DIR / f"registry_{customers}_seed1"
    if not (folder / "bundle" / "churnlens-scorer.npz").exists():  # (older caches: none)
        import shutil
        import warnings

        import churnlens
        from churnlens._config import load_config
        from churnlens._pipeline import train

        print(f"training and registering the benchmark model on {customers:,} customers "
              f"-> {folder}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        settings = load_config(overrides={
            "backtest_steps": 0, "mlflow.tracking_uri": f"sqlite:///{folder / 'mlflow.db'}"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(churnlens.generate_transactions(customers, seed=1), as_of=MODEL_AS_OF,
                  settings=settings, bundle_dir=folder / "bundle")
    return folder


def print_results(results: dict[str, Any]) -> None:
    summary = results["summary"]
    print(f"\nfresh processes, median of {results['rounds']} round(s), "
          f"{results['machine']['cpus']} CPUs, load average at the end "
          f"{results['machine']['load_average_at_end'][0]:.1f}; model bundle "
          f"{results['model']['bundle_bytes'] / 2**20:.1f} MiB")
    print(f"{'':46} {'wall s':>7} {'CPU s':>7} {'warm s':>7} {'x mlflow':>9} {'x floor':>8}"
          f"  target")
    for name, row in summary.items():
        warm = f"{row['warm_seconds']:.3f}" if "warm_seconds" in row else ""
        peer = f"{row['ratio_to_mlflow_pyfunc']:.2f}" if "ratio_to_mlflow_pyfunc" in row else ""
        floor = f"{row['ratio_to_floor']:.2f}" if "ratio_to_floor" in row else ""
        target = (f"< {row['target_seconds']:g} s {'pass' if row['passed'] else 'FAIL'}"
                  if "target_seconds" in row else "")
        print(f"{name:46} {row['wall_seconds']:7.2f} {row['cpu_seconds']:7.2f} {warm:>7} "
              f"{peer:>9} {floor:>8}  {target}")
    print("(warm: a second load in the same process, libraries already imported)")


if __name__ == "__main__":
    sys.exit(main())
