"""Online scoring plumbing: the prepared feature query and the micro-batcher."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from conftest import GOLDEN_ROWS

from churnlens import compute_features
from churnlens._online import FeatureQuery, MicroBatcher

SEED = 11
WINDOWS = (30, 90, 180, 365)


def random_transactions(n_customers: int, seed: int = SEED) -> pd.DataFrame:
    """Integer ids, several rows per day, refunds, times of day; printed seed."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 15, n_customers)
    ids = np.repeat(np.arange(n_customers), counts)
    seconds = rng.integers(0, 900 * 86_400, counts.sum())
    stamps = (pd.Timestamp("2022-06-01") + pd.to_timedelta(seconds, unit="s")).to_numpy()
    amounts = np.round(rng.normal(30, 25, counts.sum()), 2)  # some negative: refunds
    frame = pd.DataFrame({"customer_id": ids, "timestamp": stamps.astype("datetime64[us]"),
                          "amount": amounts})
    repeat = frame.sample(frac=0.1, random_state=seed)  # same day, same customer again
    return pd.concat([frame, repeat], ignore_index=True)


def sorted_by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id", ignore_index=True)


@pytest.mark.parametrize("as_of", ["2023-01-31", "2023-12-31", "2024-11-30", "2030-01-01"])
def test_feature_query_equals_compute_features(as_of: str) -> None:
    print(f"seed {SEED}")
    tx = random_transactions(400)
    query = FeatureQuery()
    got = sorted_by_id(query(tx, as_of, windows_days=WINDOWS))
    expected = sorted_by_id(compute_features(tx, as_of, windows_days=WINDOWS))
    assert len(expected) > 0
    # Same columns, dtypes and values; sums may differ in the last bit (summation order).
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, atol=1e-9)


def test_feature_query_reproduces_the_golden_table() -> None:
    letters = sorted({c for c, _, _ in GOLDEN_ROWS})
    tx = pd.DataFrame({
        "customer_id": [letters.index(c) for c, _, _ in GOLDEN_ROWS],
        "timestamp": pd.to_datetime([d for _, d, _ in GOLDEN_ROWS]).astype("datetime64[us]"),
        "amount": [a for _, _, a in GOLDEN_ROWS],
    })
    got = sorted_by_id(FeatureQuery()(tx, "2024-03-31", windows_days=WINDOWS))
    assert [letters[i] for i in got["customer_id"]] == ["A", "B", "C", "E", "F"]
    assert got["frequency"].tolist() == [2, 1, 1, 1, 1]
    assert got["recency_days"].tolist() == [26, 59, 137, 304, 6]
    assert got["tenure_days"].tolist() == [81, 59, 137, 304, 6]
    assert got["monetary_total"].tolist() == [50.0, 50.0, 10.0, 60.0, 20.0]


def test_feature_query_reuses_and_evicts_prepared_statements() -> None:
    tx = random_transactions(50)
    query = FeatureQuery(max_prepared=2)
    dates = ["2023-03-31", "2023-06-30", "2023-09-30", "2023-03-31", "2023-06-30"]
    for as_of in dates:
        got = sorted_by_id(query(tx, as_of, windows_days=(30, 90)))
        expected = sorted_by_id(compute_features(tx, as_of, windows_days=(30, 90)))
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    assert len(query._prepared) == 2
    other = sorted_by_id(query(tx, "2023-06-30", windows_days=WINDOWS))  # other windows
    assert "occasions_365d" in other and len(query._prepared) == 2


def test_feature_query_on_no_rows_and_between_threads() -> None:
    tx = random_transactions(30)
    query = FeatureQuery()
    empty = query(tx.iloc[:0], "2024-01-01", windows_days=WINDOWS)
    assert len(empty) == 0
    assert list(empty.columns) == list(compute_features(tx, "2024-01-01",
                                                        windows_days=WINDOWS).columns)
    assert len(query(tx, "2021-01-01", windows_days=WINDOWS)) == 0  # before any purchase
    expected = sorted_by_id(compute_features(tx, "2024-01-01", windows_days=WINDOWS))
    results: list[pd.DataFrame] = []

    def work() -> None:
        for _ in range(5):
            results.append(sorted_by_id(query(tx, "2024-01-01", windows_days=WINDOWS)))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 15
    for got in results:
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)


# --- MicroBatcher ---------------------------------------------------------------------


def doubling(batches: list[list[int]]) -> Callable[[list[int]], list[object]]:
    def process(items: list[int]) -> list[object]:
        batches.append(list(items))
        return [ValueError(f"bad {i}") if i < 0 else 2 * i for i in items]

    return process


def test_batcher_gathers_concurrent_items_and_answers_each() -> None:
    batches: list[list[int]] = []
    batcher = MicroBatcher(doubling(batches), max_wait_s=0.01)

    async def main() -> list[object]:
        return await asyncio.gather(*(batcher.submit(i) for i in range(20)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert results == [2 * i for i in range(20)]
    assert sum(len(b) for b in batches) == 20
    assert len(batches) < 20
    assert (batcher.batches, batcher.items) == (len(batches), 20)
    batcher.close()


def test_batcher_reports_errors_to_their_own_submitter() -> None:
    batches: list[list[int]] = []
    batcher = MicroBatcher(doubling(batches))

    async def main() -> list[object]:
        return await asyncio.gather(batcher.submit(1), batcher.submit(-1), batcher.submit(3),
                                    return_exceptions=True)

    ok1, bad, ok3 = asyncio.run(main())
    assert (ok1, ok3) == (2, 6)
    assert isinstance(bad, ValueError) and str(bad) == "bad -1"

    def broken(items: list[int]) -> list[object]:
        raise RuntimeError("the model is gone")

    failing = MicroBatcher(broken)

    async def both() -> list[object]:
        return await asyncio.gather(failing.submit(1), failing.submit(2),
                                    return_exceptions=True)

    assert [str(e) for e in asyncio.run(both())] == ["the model is gone"] * 2


def test_batcher_respects_the_weight_limit() -> None:
    batches: list[list[int]] = []
    batcher = MicroBatcher(doubling(batches), max_weight=10, max_wait_s=0.01)

    async def main() -> list[object]:
        weights = {1: 4, 2: 4, 3: 4, 4: 50, 5: 1}
        return await asyncio.gather(*(batcher.submit(i, weight=w) for i, w in weights.items()))

    assert asyncio.run(main()) == [2, 4, 6, 8, 10]
    assert [4] in batches  # heavier than the limit: alone
    assert all(len(b) <= 2 or b == [4] for b in batches)  # 4 + 4 + 4 > 10


def test_batcher_survives_new_event_loops_and_close() -> None:
    batches: list[list[int]] = []
    batcher = MicroBatcher(doubling(batches))
    assert asyncio.run(batcher.submit(1)) == 2
    assert asyncio.run(batcher.submit(2)) == 4  # another loop: a fresh collector
    batcher.close()
    assert asyncio.run(batcher.submit(3)) == 6  # started again after close
    batcher.close()
