"""``POST /score``: the customers of a request scored by the library, many requests per call.

A request is parsed (small bodies on the event loop, large ones in a worker thread)
and checked: its size, unique ids, and the amounts by the loader's rule. Then it is
handed to a :class:`~churnlens._online.MicroBatcher`: the requests that arrive
together are scored in one call of :func:`churnlens._scoring.score_requests` on a
worker thread, so the event loop never blocks on DuckDB or the model, and one feature
query and one model call serve a whole batch.

The data contract is the loader's: :func:`churnlens._loading.clean_values` reads the
ids, timestamps and amounts of a batch with the same code as
:func:`churnlens.load_transactions`. A customer whose id the loader reads as missing
(``"NA"``, ``"null"``...) is not scored (the loader drops such rows) and is named in
``unscored``; timestamps with a UTC offset are converted to UTC as the loader does;
amounts the loader refuses are a 422 with its message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import queue
import threading
from typing import Any

import numpy as np
import pandas as pd
from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from churnlens._loading import amounts_in_range, clean_values
from churnlens._online import FeatureQuery, MicroBatcher
from churnlens._scoring import RequestScores, check_as_of, score_requests
from churnlens.api.errors import unprocessable
from churnlens.api.limits import ApiLimits
from churnlens.api.schemas import ScoreRequest
from churnlens.api.state import ServingState
from churnlens.exceptions import ChurnlensError, DataValidationError

__all__ = ["ScoreJob", "ScoreService", "parse_score_request"]

SOURCE = "POST /score"
MISSING_ID_REASON = ("missing customer id: {customer_id!r} reads as a missing value, and "
                     "load_transactions drops the rows of such ids")


@dataclasses.dataclass
class ScoreJob:
    """One ``POST /score`` request, checked and ready for the batcher."""

    state: ServingState
    request: ScoreRequest
    reasons: bool
    purchases: int


def parse_score_request(body: bytes) -> ScoreRequest:
    """Parse and validate a body; errors in FastAPI's 422 format (``loc`` from ``body``)."""
    try:
        return ScoreRequest.model_validate_json(body)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        for details in exc.errors(include_url=False, include_context=False):
            error: dict[str, Any] = dict(details)
            error["loc"] = ["body", *error["loc"]]
            given = error.get("input")
            if isinstance(given, dict | list):
                error.pop("input")  # do not echo whole documents back
            elif isinstance(given, bytes | str):  # an unparseable body: its start only
                text = given.decode(errors="replace") if isinstance(given, bytes) else given
                error["input"] = text[:200]
            elif isinstance(given, float) and not math.isfinite(given):
                error["input"] = str(given)  # NaN and infinities are not JSON
            errors.append(error)
        raise RequestValidationError(errors) from None


def check_request(request: ScoreRequest, limits: ApiLimits) -> int:
    """Refuse a request that is too large (413), repeats an id or holds an amount the
    loader refuses (422); return its number of purchases."""
    customers = request.customers
    if len(customers) > limits.max_customers:
        raise HTTPException(413, detail=f"at most {limits.max_customers:,} customers per "
                                        f"request, got {len(customers):,}")
    purchases = sum(len(c.purchases) for c in customers)
    if purchases > limits.max_purchases:
        raise HTTPException(413, detail=f"at most {limits.max_purchases:,} purchases per "
                                        f"request, got {purchases:,}")
    seen: dict[str, int] = {}
    for position, customer in enumerate(customers):
        text = str(customer.customer_id)
        if text in seen:
            raise unprocessable(
                f"duplicate customer_id {text[:40]!r} (also at {seen[text]}; ids are "
                "compared as text)", ("body", "customers", position, "customer_id"))
        seen[text] = position
    amounts = np.fromiter((p.amount for c in customers for p in c.purchases),
                          dtype=np.float64, count=purchases)
    bad = np.flatnonzero(~amounts_in_range(amounts))
    if len(bad):
        _refuse_amounts(request, bad, amounts)
    return purchases


def _refuse_amounts(request: ScoreRequest, bad: np.ndarray, amounts: np.ndarray) -> None:
    """The loader's refusal of these amounts, as a 422 at the first of them."""
    places = [(i, j) for i, c in enumerate(request.customers) for j in range(len(c.purchases))]
    labels = [f"customers[{i}].purchases[{j}]" for i, j in (places[k] for k in bad)]
    try:
        clean_values(amounts=pd.Series(amounts[bad], index=labels), source=SOURCE)
    except DataValidationError as exc:
        customer, purchase = places[int(bad[0])]
        raise unprocessable(str(exc), ("body", "customers", customer, "purchases", purchase,
                                       "amount")) from None
    raise AssertionError("amounts_in_range and the loader disagree")  # pragma: no cover


def score_jobs(jobs: list[ScoreJob], features: Any) -> list[bytes | BaseException]:
    """Score a batch of requests: one library call per (state, as_of, reasons).

    Each job gets its response body (JSON bytes) or the exception it raised. When a
    group fails on the data contract, each of its requests is scored alone, so that
    only the offending one is refused.
    """
    out: list[bytes | BaseException] = [b""] * len(jobs)
    groups: dict[tuple[int, dt.date, bool], list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault((id(job.state), job.request.as_of, job.reasons), []).append(i)
    for members in groups.values():
        try:
            bodies = _score_group([jobs[i] for i in members], features)
        except ChurnlensError as exc:
            if len(members) == 1:
                out[members[0]] = exc
                continue
            for i in members:
                try:
                    out[i] = _score_group([jobs[i]], features)[0]
                except Exception as alone:  # reported to that request only
                    out[i] = alone
            continue
        except Exception as exc:  # reported to each request of the group
            for i in members:
                out[i] = exc
            continue
        for i, body in zip(members, bodies, strict=True):
            out[i] = body
    return out


def _score_group(jobs: list[ScoreJob], features: Any) -> list[bytes]:
    """Requests of one state, as-of date and ``reasons``: one library call.

    The values go through the loader's rules (:func:`churnlens._loading.clean_values`),
    then :func:`churnlens._scoring.score_requests` scores them all at once and gives
    each request its customers back in request order.
    """

    first = jobs[0]
    ids: list[Any] = []
    keys: list[int] = []
    stamps: list[str] = []
    amounts: list[float] = []
    for job in jobs:
        for customer in job.request.customers:
            key = len(ids)
            ids.append(customer.customer_id)
            for purchase in customer.purchases:
                keys.append(key)
                stamps.append(purchase.timestamp)
                amounts.append(purchase.amount)
    # (the amounts passed the loader's rule in check_request)
    clean_ids, clean_stamps, _ = clean_values(
        pd.Series(ids, dtype=object), pd.Series(stamps, dtype=object), source=SOURCE)
    assert clean_ids is not None  # (both were given)
    assert clean_stamps is not None
    missing = np.flatnonzero(clean_ids.isna().to_numpy(dtype=bool))
    purchases = pd.DataFrame({"customer_key": np.asarray(keys, dtype=np.int64),
                              "timestamp": clean_stamps.to_numpy(dtype="datetime64[us]"),
                              "amount": np.asarray(amounts, dtype=np.float64)})
    scored = score_requests(
        purchases, [[c.customer_id for c in job.request.customers] for job in jobs],
        first.request.as_of, first.state.artifact, settings=first.state.scoring,
        reasons=first.reasons, offset_center=first.state.offset_center, features_fn=features,
        # as the loader: the rows of an id it reads as missing are dropped
        unscored={int(k): MISSING_ID_REASON.format(customer_id=ids[k]) for k in missing})
    return [_score_body(job, answer) for job, answer in zip(jobs, scored, strict=True)]


def _score_body(job: ScoreJob, answer: RequestScores) -> bytes:
    """A ``ScoreResponse`` as JSON bytes."""
    artifact = job.state.artifact
    payload = {
        "as_of": job.request.as_of.isoformat(), "model_version": artifact.version,
        "horizon_days": int(artifact.horizon_days),
        "results": [{"customer_id": r.customer_id, "churn_risk": r.churn_risk,
                     "risk_band": r.risk_band, "expected_value": r.expected_value,
                     "value_at_risk": r.value_at_risk, "p_alive": r.p_alive,
                     "expected_purchases": r.expected_purchases,
                     "days_to_next_purchase": r.days_to_next_purchase,
                     "expected_spend": r.expected_spend, "clv": r.clv,
                     "recency_days": r.recency_days,
                     "frequency": r.frequency, "reasons": r.reasons}
                    for r in answer.results],
        "unscored": [{"customer_id": u.customer_id, "reason": u.reason}
                     for u in answer.unscored],
    }
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


class FeatureQueries:
    """A pool of :class:`FeatureQuery` (one DuckDB connection each), one per thread in use."""

    def __init__(self) -> None:
        self._free: queue.LifoQueue[FeatureQuery] = queue.LifoQueue()
        self._all: list[FeatureQuery] = []
        self._lock = threading.Lock()

    def run(self, jobs: list[ScoreJob]) -> list[bytes | BaseException]:
        """:func:`score_jobs` with a connection of the pool."""
        try:
            query = self._free.get_nowait()
        except queue.Empty:
            query = FeatureQuery()
            with self._lock:
                self._all.append(query)
        try:
            return score_jobs(jobs, query)
        finally:
            self._free.put(query)

    def close(self) -> None:
        """Close every connection; later calls open new ones (an app can restart)."""
        with self._lock:
            while True:
                try:
                    self._free.get_nowait()
                except queue.Empty:
                    break
            for query in self._all:
                query.close()
            self._all.clear()


class ScoreService:
    """``POST /score`` from body to answer: parse, check, batch, score, format.

    Parameters
    ----------
    limits
        Request sizes, and where parsing and scoring happen.
    """

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self.queries = FeatureQueries()
        self.in_flight = 0  # requests being scored (counted on the event loop)
        # One batch at a time: with two in flight they fought over the GIL and scored
        # fewer requests per second on 2 cores (measured 442 -> 321 req/s).
        self.batcher: MicroBatcher[ScoreJob, bytes] = MicroBatcher(
            self.queries.run, max_wait_s=0.002, max_weight=limits.batch_purchases, workers=1)

    async def score(self, body: bytes, state: ServingState, reasons: bool, *,
                    allow_past: bool = False) -> bytes:
        """The ``ScoreResponse`` (JSON bytes) of a request body, scored against ``state``.

        An ``as_of`` before the model's training as-of is refused as ``churnlens score``
        refuses it (:func:`churnlens._scoring.check_as_of`) unless ``allow_past``.

        Raises
        ------
        RequestValidationError, HTTPException
            422 for an invalid request, 413 for one too large.
        ChurnlensError
            The library refused the data or the date (the app answers 422).
        """
        self.in_flight += 1
        try:
            return await self._score(body, state, reasons, allow_past)
        finally:
            self.in_flight -= 1

    def busy(self) -> bool:
        """Whether a request is being scored (bulk reads step aside meanwhile)."""
        return self.in_flight > 0

    async def _score(self, body: bytes, state: ServingState, reasons: bool,
                     allow_past: bool) -> bytes:
        if len(body) <= self.limits.inline_body_bytes:
            request, purchases = self._checked(body)
        else:
            request, purchases = await run_in_threadpool(self._checked, body)
        check_as_of(state.artifact, request.as_of, allow_past=allow_past)
        job = ScoreJob(state=state, request=request, reasons=reasons, purchases=purchases)
        if purchases <= self.limits.batch_purchases:
            return await self.batcher.submit(job, weight=purchases + len(request.customers))
        result = (await run_in_threadpool(self.queries.run, [job]))[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _checked(self, body: bytes) -> tuple[ScoreRequest, int]:
        request = parse_score_request(body)
        return request, check_request(request, self.limits)

    def close(self) -> None:
        """Stop the batcher and close the connections (a later request restarts them)."""
        self.batcher.close()
        self.queries.close()
