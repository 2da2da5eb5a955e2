"""A small trained model and its data, shared by the API tests (trained once per process).

The API tests (``test_api.py``, ``test_api_schema.py``) need a real trained model;
training takes a few seconds, so it happens once per test process, whichever file asks
first.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import pandas as pd

AS_OF = "2024-06-30"
SEED = 3


@functools.lru_cache(maxsize=1)
def trained() -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """(raw transactions, clean transactions, model artifact), seed ``SEED``."""
    from churnlens import generate_transactions, load_transactions
    from churnlens._config import load_config
    from churnlens._pipeline import train

    raw = generate_transactions(600, seed=SEED, start="2022-07-01", end=AS_OF)
    settings = load_config(overrides={
        "mlflow.enabled": False, "backtest_steps": 1, "snapshots.count": 4,
        "model.n_estimators": 40, "model.min_child_samples": 20, "model.n_jobs": 1,
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LightGBM's deprecation notices
        run = train(raw, as_of=AS_OF, settings=settings)
    clean = load_transactions(raw).transactions
    return raw, clean, run.artifact


@functools.lru_cache(maxsize=1)
def served() -> Any:
    """The served state of the API tests: the base scored at ``AS_OF``."""
    from churnlens.api import build_state

    _, clean, artifact = trained()
    return build_state(artifact, clean, AS_OF)


def history_body(transactions: pd.DataFrame, customer_ids: list[Any], as_of: str = AS_OF
                 ) -> dict[str, Any]:
    """A ``POST /score`` body with the full purchase history of these customers."""
    customers = []
    for cid in customer_ids:
        rows = transactions.loc[transactions["customer_id"] == cid]
        customers.append({
            "customer_id": cid,
            "purchases": [{"timestamp": ts.isoformat(), "amount": float(amount)}
                          for ts, amount in zip(rows["timestamp"], rows["amount"], strict=True)],
        })
    return {"as_of": as_of, "customers": customers}


def is_number(text: str) -> bool:
    """Whether a CSV cell reads as a number (a negative amount is not a formula)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def wait_until_serving(process: Any, port: int, *, timeout: float = 60.0) -> None:
    """Wait until ``churnlens serve`` (a ``subprocess.Popen``) answers ``/health``.

    Fails the test if the process exits first (with its stderr, when piped) or if it is
    not serving after ``timeout`` seconds.
    """
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"the server exited: {stderr}")
        if time.monotonic() >= deadline:
            raise AssertionError("the server did not start")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
