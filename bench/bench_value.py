"""Benchmark: the cost of the value columns in scoring (issue 20, item 3).

Scores ``--rows`` customers with :func:`churnlens._scoring.score_batch` (the row-wise
step both engines and the API run) with the model's value model and with the same model
stripped of it (heuristic ``expected_value``, NaN value columns), with and without
reasons, and times :func:`churnlens._value.predict_value` alone. The customers are the
features of ``--transactions`` at ``--as-of``, repeated to ``--rows`` rows (new ids).
Best of ``--repeat`` runs each.

Run from the repository root, with a model trained with value model::

    .venv/bin/churnlens dataset cdnow --out /tmp/cdnow.csv
    .venv/bin/churnlens train --transactions /tmp/cdnow.csv --as-of 1997-12-31 \\
        --no-mlflow --bundle /tmp/cdnow-model
    .venv/bin/python bench/bench_value.py --transactions /tmp/cdnow.csv \\
        --model /tmp/cdnow-model --as-of 1997-12-31
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd


def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from churnlens._features import compute_features
    from churnlens._loading import load_transactions
    from churnlens._model_loader import load_model
    from churnlens._scoring import score_batch
    from churnlens._value import predict_value, value_model_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", required=True)
    parser.add_argument("--model", required=True, help="a bundle folder or models:/ URI")
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    day = dt.date.fromisoformat(args.as_of)
    transactions, _ = load_transactions(args.transactions)
    features = compute_features(transactions, day).sort_values("customer_id",
                                                                ignore_index=True)
    copies = -(-args.rows // len(features))
    big = pd.concat([features] * copies, ignore_index=True).iloc[:args.rows].copy()
    big["customer_id"] = np.arange(len(big))
    artifact = load_model(args.model)
    value_model = value_model_of(artifact.model)
    if value_model is None:
        raise SystemExit("the model has no value model: train it with this churnlens first")
    stripped = copy.copy(artifact.model)
    stripped.value_model_ = None
    without = dataclasses.replace(artifact, model=stripped)
    warnings.simplefilter("ignore")  # the "retrain" warning of the stripped model
    result: dict[str, Any] = {"rows": len(big), "as_of": str(day),
                              "purchase_model": value_model.purchase_model}
    result["predict_value_s"] = _best(
        lambda: predict_value(value_model, big, horizon_days=artifact.horizon_days),
        args.repeat)
    for reasons in (False, True):
        key = "reasons" if reasons else "no_reasons"
        result[f"{key}_with_value_s"] = _best(
            lambda r=reasons: score_batch(big, day, artifact, reasons=r), args.repeat)
        result[f"{key}_without_value_s"] = _best(
            lambda r=reasons: score_batch(big, day, without, reasons=r), args.repeat)
        result[f"{key}_ratio"] = (result[f"{key}_with_value_s"]
                                  / result[f"{key}_without_value_s"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
