"""The HTTP API: churn risk paired with actual retention, for marketing and services.

Thin by design: every handler parses, calls one library function and formats. The
served state (model, transactions, scores) is one immutable snapshot; ``/reload``
builds a new one off to the side and swaps the reference, so requests in flight keep
the snapshot they started with and none is dropped.

``POST /score`` is the hot path. Small requests are parsed on the event loop (large
ones in a worker thread), then handed to a :class:`~churnlens._online.MicroBatcher`:
the requests that arrive together are scored in one call of
:func:`churnlens.score_histories` on a worker thread, so the event loop never
blocks on DuckDB or the model, and one feature query and one model call serve a
whole batch. The plain forms of the request are answered before the framework's
middleware, routing and dependency resolution (see :class:`_API`), which at 32
concurrent clients cost a fifth of the server's CPU.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hmac
import json
import math
import os
import queue
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from starlette.types import Message, Receive, Scope, Send

from churnlens._artifact import ModelArtifact
from churnlens._config import ScoringSettings, Settings
from churnlens._engine import MAX_ABS_AMOUNT
from churnlens._online import FeatureQuery, MicroBatcher
from churnlens._version import __version__
from churnlens.exceptions import ChurnlensError

__all__ = ["API_KEYS_ENV", "ServingState", "build_state", "create_app", "load_state"]

API_KEYS_ENV = "CHURNLENS_API_KEYS"
MAX_CUSTOMERS = 10_000
MAX_PURCHASES = 1_000_000
# A million purchases of ~70 bytes of JSON each fit well within this.
MAX_BODY_BYTES = 128 * 1024 * 1024
# Bodies up to this size are parsed on the event loop (microseconds); larger ones in a
# worker thread so that a big request never stalls the others.
INLINE_BODY_BYTES = 64 * 1024
# Requests with at most this many purchases are micro-batched together; larger ones
# are scored on their own, in a worker thread, without holding up the small ones.
BATCH_PURCHASES = 20_000
# Dates the whole stack handles (pandas' nanosecond timestamps, plus a day of margin).
DATE_MIN, DATE_MAX = dt.date(1678, 1, 1), dt.date(2261, 12, 31)
UNSCORED_REASON = "no purchase occasion (positive net amount) on or before {as_of}"


# --- state ---------------------------------------------------------------------------


class _Rows:
    """A frame's rows as JSON-ready values, read by position: a page costs O(its rows).

    Each column gets a reader built once: numbers through numpy, Arrow text through
    Arrow's ``take``, anything else (dates...) through its distinct values, converted
    once. Going through pandas row by row costs ten times more per page.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.names = [str(c) for c in frame.columns]
        self.readers = [self._reader(frame[c]) for c in frame.columns]

    @staticmethod
    def _reader(column: pd.Series) -> Callable[[np.ndarray], list[Any]]:
        kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else ""
        if kind == "f":
            floats = column.to_numpy()
            return lambda rows: [v if math.isfinite(v) else None for v in floats[rows].tolist()]
        if kind in "iub":
            numbers = column.to_numpy()
            return lambda rows: numbers[rows].tolist()
        if isinstance(column.array, pd.arrays.ArrowStringArray):
            text = pa.chunked_array(column.array.__arrow_array__()).combine_chunks()
            return lambda rows: text.take(pa.array(rows, pa.int64())).to_pylist()
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        values = [_clean(v) for v in uniques] + [None]  # code -1 (missing) -> None
        return lambda rows: [values[c] for c in codes[rows].tolist()]

    def records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """The rows at these positions, as dictionaries."""
        rows = np.asarray(rows, dtype=np.int64)
        columns = [read(rows) for read in self.readers]
        return [dict(zip(self.names, row, strict=True))
                for row in zip(*columns, strict=True)]


@dataclasses.dataclass(frozen=True)
class ServingState:
    """Everything one version of the service answers from (never changed once built)."""

    artifact: ModelArtifact
    transactions: pd.DataFrame
    scores: pd.DataFrame  # score_customers(...).scores; row i is features row i
    features: pd.DataFrame
    summary: dict[str, Any]
    as_of: dt.date
    loaded_at: str
    index: dict[str, int]  # customer id as text -> row in scores
    ranked: dict[str, np.ndarray]  # sort key -> rows of scores in at-risk order
    scoring: ScoringSettings = dataclasses.field(default_factory=ScoringSettings)
    # the scored base's mean BG/NBD offset: /score explains every customer against it,
    # so reasons never depend on who else is in a batch (see score_batch)
    offset_center: float | None = None
    # filtered at-risk lists already computed: (sort, min_risk, segment, band) -> rows
    filtered: dict[tuple[Any, ...], np.ndarray] = dataclasses.field(default_factory=dict)
    score_rows: _Rows | None = None  # scores and features as JSON-ready columns
    feature_rows: _Rows | None = None


def build_state(
    artifact: ModelArtifact,
    transactions: pd.DataFrame,
    as_of: str | dt.date | None = None,
    *,
    scoring: ScoringSettings | None = None,
) -> ServingState:
    """Score the base at ``as_of`` (default: the data's last day) and index it.

    Parameters
    ----------
    artifact
        The model.
    transactions
        Clean transactions (:func:`churnlens.load_transactions`).
    as_of
        Scoring date.
    scoring
        Risk band thresholds.
    """
    from churnlens._contributions import offset_sum
    from churnlens._scoring import SORT_KEYS, at_risk_list, score_customers

    scoring = scoring or ScoringSettings()
    day = pd.Timestamp(as_of).date() if as_of else transactions["timestamp"].max().date()
    result = score_customers(transactions, day, artifact, settings=scoring, allow_past=True)
    scores = result.scores
    rows = scores.assign(_row=np.arange(len(scores)))
    # The at-risk order is the library's (at_risk_list); computed once per sort key so
    # that a page costs O(limit), not a sort of the whole base.
    ranked = {key: at_risk_list(rows, sort=key)["_row"].to_numpy() for key in SORT_KEYS}
    total, count = offset_sum(artifact.model, result.features)
    return ServingState(
        artifact=artifact, transactions=transactions, scores=scores, features=result.features,
        summary=result.summary, as_of=day,
        loaded_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        index={str(c): i for i, c in enumerate(scores["customer_id"].tolist())},
        ranked=ranked, scoring=scoring, offset_center=total / count if count else None,
        score_rows=_Rows(scores), feature_rows=_Rows(result.features),
    )


def load_state(
    transactions_source: Any,
    model: str,
    settings: Settings,
    *,
    as_of: str | dt.date | None = None,
) -> ServingState:
    """Load the model and the transactions, score the base, and index it."""
    from churnlens._loading import load_transactions
    from churnlens._tracking import load_model

    artifact = load_model(model, settings.mlflow)
    tx, _ = load_transactions(
        transactions_source, **settings.data.loader_options(), as_of=as_of)
    return build_state(artifact, tx, as_of, scoring=settings.scoring)


# --- request and response models ------------------------------------------------------

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_text(value: Any) -> Any:
    # Text only: pydantic would read a number (or a string of digits) as a Unix time.
    if not isinstance(value, str):
        raise ValueError("must be text: an ISO 8601 date or date-time such as 2024-03-05")
    if not _ISO_DATE.match(value):
        raise ValueError(f"not an ISO 8601 date or date-time: {value[:40]!r}")
    return value


def _iso_date_text(value: Any) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value  # already a date (Python callers)
    _iso_text(value)
    if not _ISO_DATE.fullmatch(value):
        raise ValueError(f"not a date YYYY-MM-DD: {value[:40]!r}")
    return value


def _in_range(day: dt.date) -> None:
    if not DATE_MIN <= day <= DATE_MAX:
        raise ValueError(f"dates must be between {DATE_MIN} and {DATE_MAX}")


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """As the loader: a time with an offset is converted to UTC; naive ones stay as given."""
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError as exc:
            raise ValueError(f"dates must be between {DATE_MIN} and {DATE_MAX}") from exc
    _in_range(value.date())
    return value


def _checked_date(value: dt.date) -> dt.date:
    _in_range(value)
    return value


Timestamp = Annotated[dt.datetime, BeforeValidator(_iso_text), AfterValidator(_naive_utc)]
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date_text), AfterValidator(_checked_date)]
CustomerId = (Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]
              | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)])
# Strictly inside the engine's limit for exact sums (_engine.MAX_ABS_AMOUNT).
Amount = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=-MAX_ABS_AMOUNT,
                                lt=MAX_ABS_AMOUNT)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Purchase(_Strict):
    """One transaction: when, and how much (negative = refund)."""

    timestamp: Timestamp = Field(
        description="ISO 8601 date or date-time (2024-03-05, 2024-03-05T14:30:00+01:00). "
                    "Times with an offset are converted to UTC; times without one are taken "
                    "as given.", examples=["2024-03-05T14:30:00+01:00"])
    amount: Amount = Field(description="Net amount; negative for a refund.", examples=[20.0])


class CustomerHistory(_Strict):
    """A customer's purchase history."""

    customer_id: CustomerId = Field(examples=["C0000042"])
    purchases: list[Purchase]


class ScoreRequest(_Strict):
    """Customers to score at an as-of date (purchases after it are ignored)."""

    as_of: IsoDate = Field(description="Scoring date, YYYY-MM-DD (its whole day included).",
                           examples=["2024-06-30"])
    customers: list[CustomerHistory] = Field(
        description=f"At most {MAX_CUSTOMERS:,} customers and {MAX_PURCHASES:,} purchases in "
                    "all (413 beyond); customer ids unique (compared as text).")


class CustomerScore(BaseModel):
    """Churn risk of one customer, with what it is worth and why."""

    customer_id: str | int
    churn_risk: float = Field(ge=0, le=1)
    risk_band: Literal["high", "medium", "low"]
    expected_value: float
    value_at_risk: float
    recency_days: int
    frequency: int
    reasons: list[str] = Field(description="Up to three features that raise the risk most "
                                           "(empty when not asked for).")


class Unscored(BaseModel):
    """A customer the model cannot score, and why."""

    customer_id: str | int
    reason: str


class ScoreResponse(BaseModel):
    """Scores for the customers of a request, in request order."""

    as_of: dt.date
    model_version: str | None
    horizon_days: int
    results: list[CustomerScore]
    unscored: list[Unscored]


class Health(BaseModel):
    """Service status."""

    status: Literal["ok"]
    churnlens_version: str
    model_name: str | None
    model_version: str | None
    model_alias: str | None
    data_as_of: dt.date
    customers_scored: int
    loaded_at: str
    last_reload_error: str | None


class ModelInfo(BaseModel):
    """The loaded model: what it predicts, from what, and how good it is."""

    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    horizon_days: int
    as_of: dt.date
    windows_days: list[int]
    features: list[str]
    metrics: dict[str, dict[str, float | None]]
    backtest: list[dict[str, Any]]


class AtRiskItem(BaseModel):
    """One scored customer of the base (the columns of ``churnlens score``)."""

    model_config = ConfigDict(extra="allow")

    customer_id: str | int
    as_of: dt.date
    churn_risk: float
    risk_band: Literal["high", "medium", "low"]
    expected_value: float
    value_at_risk: float
    recency_days: int
    frequency: int
    monetary_total: float
    segment: str
    reason_1: str = ""
    reason_2: str = ""
    reason_3: str = ""


class StoredCustomer(BaseModel):
    """A scored customer of the base, with their features."""

    score: AtRiskItem
    features: dict[str, float | int | str | None]


class AtRiskPage(BaseModel):
    """A page of the at-risk list."""

    items: list[AtRiskItem]
    total: int = Field(description="Customers in the whole filtered list.")
    limit: int
    offset: int


class RetentionRatesOut(BaseModel):
    """Actual retention rates of a period (percent; null where undefined)."""

    start: dt.date
    end: dt.date
    window_days: int
    S: int
    E: int
    N: int
    reactivated: int
    crr: float | None
    cohort_retention: float | None
    churn_rate: float | None
    repeat_rate: float | None
    simple_ratio: float | None


class RateWithInterval(BaseModel):
    """A predicted rate with its 95% interval (percent)."""

    value: float | None
    low: float | None
    high: float | None


class Outlook(BaseModel):
    """The coming horizon: predicted rates beside the last actual ones of the same length."""

    as_of: dt.date
    horizon_days: int
    period_start: dt.date
    period_end: dt.date
    active_customers: int
    predicted_cohort_retention: RateWithInterval
    predicted_crr: RateWithInterval
    last_actual: RetentionRatesOut
    expected_customers_lost: float
    revenue_at_risk: float


class BacktestPeriod(BaseModel):
    """Predicted vs actual retention of one past period, per model."""

    as_of: dt.date
    horizon_days: int
    models: dict[str, dict[str, float | None]]


class ReloadResult(BaseModel):
    """Outcome of a reload."""

    reloaded: bool
    model_version: str | None
    data_as_of: dt.date
    customers_scored: int
    error: str | None


class ErrorDetail(BaseModel):
    """An error."""

    detail: str


# --- helpers -------------------------------------------------------------------------


def _api_keys() -> list[str]:
    return [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]


def _clean(value: Any) -> Any:
    """JSON-ready: NaN -> None, numpy scalars -> Python, dates -> ISO text."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()[:10] if not isinstance(value, dt.datetime) else (
            value.isoformat())
    if value is pd.NaT or value is pd.NA:
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows, converted column by column (many times faster than by row)."""
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_float_dtype(column.dtype):
            values = [v if math.isfinite(v) else None for v in column.tolist()]
        elif pd.api.types.is_integer_dtype(column.dtype) and column.dtype.kind in "iu":
            values = column.tolist()  # plain integers: never missing
        else:
            values = column.tolist()
            if not all(type(v) is str for v in values):
                values = [_clean(v) for v in values]
        columns[str(name)] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _filtered_rows(state: ServingState, sort: str, min_risk: float | None,
                   segment: str | None, band: str | None) -> np.ndarray:
    """Rows of the at-risk list with these filters, in order (cached per state)."""
    from churnlens._scoring import at_risk_list

    if min_risk is None and segment is None and band is None:
        return state.ranked[sort]
    key = (sort, min_risk, segment, band)
    rows = state.filtered.get(key)
    if rows is None:
        rows = at_risk_list(state.scores.assign(_row=np.arange(len(state.scores))),
                            min_risk=min_risk, segment=segment, band=band, sort=sort,
                            )["_row"].to_numpy()
        if len(state.filtered) < 64:
            state.filtered[key] = rows
    return rows


def _page_body(state: ServingState, rows: np.ndarray, offset: int, limit: int) -> bytes:
    page = rows[offset: offset + limit]
    items = (state.score_rows.records(page) if state.score_rows is not None
             else _records(state.scores.iloc[page]))
    payload = {"items": items, "total": len(rows), "limit": limit, "offset": offset}
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


def _json(payload: Any, status_code: int = 200) -> Response:
    body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
    return Response(body, status_code=status_code, media_type="application/json")


def _unprocessable(message: str, loc: tuple[str | int, ...] = ()) -> HTTPException:
    """A 422 in the same shape as FastAPI's validation errors (one format for clients)."""
    return HTTPException(422, detail=[{"loc": list(loc), "msg": message, "type": "value_error"}])


def _wants_csv(accept: str) -> bool:
    """Whether ``Accept`` prefers text/csv to JSON (q-values respected)."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        best[media.lower()] = max(best.get(media.lower(), 0.0), q)
    csv_q = best.get("text/csv", 0.0)
    json_q = max(best.get("application/json", 0.0), best.get("*/*", 0.0))
    return csv_q > 0 and csv_q >= json_q


def _csv_chunks(frame: pd.DataFrame, rows: int = 50_000) -> Iterator[str]:
    from churnlens._io import neutralize_formulas

    for start in range(0, max(len(frame), 1), rows):
        chunk = neutralize_formulas(frame.iloc[start: start + rows])
        yield chunk.to_csv(index=False, header=start == 0)


class _BodyLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = JSONResponse(
                    {"detail": f"request body over {self.max_bytes:,} bytes"}, status_code=413)
                await response(scope, receive, send)
                return
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, detail=f"request body over {self.max_bytes:,} bytes")
            return message

        await self.app(scope, limited, send)


# --- scoring requests -----------------------------------------------------------------


@dataclasses.dataclass
class _ScoreJob:
    """One ``POST /score`` request, ready for the batcher."""

    state: ServingState
    request: ScoreRequest
    reasons: bool
    purchases: int


def _parse_score_request(body: bytes) -> ScoreRequest:
    try:
        return ScoreRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False, include_context=False):
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


def _score_jobs(jobs: list[_ScoreJob], features: Callable[..., pd.DataFrame]) -> list[Any]:
    """Score a batch of requests: one ``score_histories`` call per (state, as_of, reasons).

    Customers get integer row keys (unique in the batch, so equal ids in two requests
    never mix); each job gets its response body (JSON bytes) or the exception it raised.
    """
    from churnlens._scoring import score_histories

    out: list[Any] = [None] * len(jobs)
    groups: dict[tuple[int, dt.date, bool], list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault((id(job.state), job.request.as_of, job.reasons), []).append(i)
    for members in groups.values():
        first = jobs[members[0]]
        keys: list[int] = []
        stamps: list[dt.datetime] = []
        amounts: list[float] = []
        offsets = []
        key = 0
        for i in members:
            offsets.append(key)
            for customer in jobs[i].request.customers:
                for purchase in customer.purchases:
                    keys.append(key)
                    stamps.append(purchase.timestamp)
                    amounts.append(purchase.amount)
                key += 1
        frame = pd.DataFrame({
            "customer_id": np.asarray(keys, dtype=np.int64),
            "timestamp": np.asarray(stamps, dtype="datetime64[us]"),
            "amount": np.asarray(amounts, dtype=np.float64),
        })
        try:
            scores = score_histories(frame, first.request.as_of, first.state.artifact,
                                     settings=first.state.scoring, reasons=first.reasons,
                                     offset_center=first.state.offset_center,
                                     features_fn=features)
        except Exception as exc:  # reported to each request of the group
            for i in members:
                out[i] = exc
            continue
        found = {int(k): r for r, k in enumerate(scores["customer_id"].tolist())}
        columns = {c: scores[c].tolist() for c in scores.columns}
        for i, offset in zip(members, offsets, strict=True):
            out[i] = _score_body(jobs[i], offset, found, columns)
    return out


def _score_body(job: _ScoreJob, offset: int, found: dict[int, int],
                columns: dict[str, list[Any]]) -> bytes:
    request, artifact = job.request, job.state.artifact
    results, unscored = [], []
    reason_columns = [columns[c] for c in ("reason_1", "reason_2", "reason_3") if c in columns]
    for j, customer in enumerate(request.customers):
        row = found.get(offset + j)
        if row is None:
            unscored.append({"customer_id": customer.customer_id,
                             "reason": UNSCORED_REASON.format(as_of=request.as_of)})
            continue
        results.append({
            "customer_id": customer.customer_id,
            "churn_risk": float(columns["churn_risk"][row]),
            "risk_band": str(columns["risk_band"][row]),
            "expected_value": float(columns["expected_value"][row]),
            "value_at_risk": float(columns["value_at_risk"][row]),
            "recency_days": int(columns["recency_days"][row]),
            "frequency": int(columns["frequency"][row]),
            "reasons": [r[row] for r in reason_columns if r[row]],
        })
    payload = {"as_of": request.as_of.isoformat(), "model_version": artifact.version,
               "horizon_days": int(artifact.horizon_days), "results": results,
               "unscored": unscored}
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


class _FeatureQueries:
    """A pool of :class:`FeatureQuery` (one DuckDB connection each), one per thread in use."""

    def __init__(self) -> None:
        self._free: queue.LifoQueue[FeatureQuery] = queue.LifoQueue()
        self._all: list[FeatureQuery] = []
        self._lock = threading.Lock()

    def run(self, jobs: list[_ScoreJob]) -> list[Any]:
        try:
            query = self._free.get_nowait()
        except queue.Empty:
            query = FeatureQuery()
            with self._lock:
                self._all.append(query)
        try:
            return _score_jobs(jobs, query)
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


# --- the app -------------------------------------------------------------------------

_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description=f"One of the keys in ${API_KEYS_ENV} (when set).")
_E401 = {401: {"model": ErrorDetail, "description": "Missing or wrong X-API-Key."}}
_E404 = {404: {"model": ErrorDetail, "description": "Unknown customer."}}
_E413 = {413: {"model": ErrorDetail, "description": "Too many customers or purchases, or a "
                                                    "body over the size limit."}}
_E422 = {422: {"description": "Validation error (wrong types, unknown fields, bad values).",
               "content": {"application/json": {
                   "schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}}


# Dependencies are coroutines: cheap, and they must not cost a thread hop each.
async def _current_state(request: Request) -> ServingState:
    return request.app.state.holder["state"]


async def _require_key(
    x_api_key: Annotated[str | None, Security(_KEY_HEADER)] = None,
) -> None:
    _check_key(x_api_key)


def _check_key(x_api_key: str | None) -> None:
    keys = _api_keys()
    if not keys:
        return
    supplied = (x_api_key or "").encode()
    matched = False
    for key in keys:  # every key, always, each in constant time
        matched |= hmac.compare_digest(supplied, key.encode())
    if not matched:
        raise HTTPException(status_code=401, detail="missing or invalid X-API-Key header")


State = Annotated[ServingState, Depends(_current_state)]
secured = [Depends(_require_key)]

# The query strings /score answers on its direct path (anything else: FastAPI's).
_SCORE_QUERIES = {b"": True, b"reasons=true": True, b"reasons=false": False}
_DirectScore = Callable[[Scope, bytes, bool, Send], Awaitable[None]]


class _API(FastAPI):
    """The FastAPI app, with the plain ``POST /score`` requests answered up front.

    At 32 concurrent clients, the framework's per-request work (its middleware layers,
    routing, generic dependency resolution) was a fifth of the server's CPU.
    A ``POST /score`` with a small body (``Content-Length`` up to
    ``INLINE_BODY_BYTES``) and no query string but ``reasons=true|false`` goes straight
    to :attr:`score_direct`: the route's own key check (``secured``) and handler. If
    anything goes wrong before the answer starts (a wrong key, an invalid body, a
    scoring error), the request is handed, body included, to the whole app, which
    answers it exactly as for any other request. Every other request takes the whole
    app at once.
    """

    score_direct: _DirectScore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.score_direct is not None and scope["type"] == "http":
            reasons = _direct_score_reasons(scope)
            if reasons is not None:
                received: list[Message] = []
                while True:
                    message = await receive()
                    received.append(message)
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break
                if message["type"] == "http.request":
                    body = b"".join(m.get("body", b"") for m in received)
                    started = False

                    async def sending(event: Message) -> None:
                        nonlocal started
                        started = True
                        await send(event)

                    try:
                        await self.score_direct(scope, body, reasons, sending)
                        return
                    except Exception:
                        if started:
                            raise
                receive = _replay(received, receive)
        await super().__call__(scope, receive, send)


def _direct_score_reasons(scope: Scope) -> bool | None:
    """``reasons`` of a ``POST /score`` that :class:`_API` answers directly, else None."""
    if scope["method"] != "POST" or scope["path"] != "/score" or scope.get("root_path"):
        return None
    reasons = _SCORE_QUERIES.get(scope.get("query_string", b""))
    if reasons is None:
        return None
    for name, value in scope["headers"]:
        if name == b"content-length":
            return reasons if value.isdigit() and int(value) <= INLINE_BODY_BYTES else None
    return None


async def _no_receive() -> Message:  # a plain Response never reads the request
    raise RuntimeError("the request was read already")


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that gives ``messages`` again first."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def create_app(
    state_loader: Callable[[], ServingState],
    *,
    initial: ServingState | None = None,
) -> FastAPI:
    """Build the FastAPI app.

    Parameters
    ----------
    state_loader
        Builds a fresh :class:`ServingState` (used at start-up and by ``/reload``).
    initial
        A state already loaded (skips the start-up load; tests use it).
    """
    holder: dict[str, Any] = {"state": initial or state_loader(), "error": None}
    reload_lock = threading.Lock()
    queries = _FeatureQueries()
    # One batch at a time: with two in flight they fought over the GIL and scored
    # fewer requests per second on 2 cores (measured 442 -> 321 req/s).
    batcher: MicroBatcher[_ScoreJob, bytes] = MicroBatcher(
        queries.run, max_wait_s=0.002, max_weight=BATCH_PURCHASES, workers=1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        batcher.close()
        queries.close()

    app = _API(
        title="churnlens",
        version=__version__,
        description="Churn risk paired with the customer retention rate that actually "
                    "happened. Send the API key in the X-API-Key header when the server has "
                    f"keys (${API_KEYS_ENV}). No endpoint reads a file or a model URI from a "
                    "request.",
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.state.batcher = batcher
    app.state.holder = holder

    @app.exception_handler(ChurnlensError)
    async def churnlens_error(request: Request, exc: ChurnlensError) -> JSONResponse:
        return JSONResponse(status_code=422, content={
            "detail": [{"loc": [], "msg": str(exc), "type": "value_error"}]})

    @app.get("/health", response_model=Health, tags=["service"])
    async def health(state: State) -> Health:
        """Service status, model and data versions (no key needed)."""
        a = state.artifact
        return Health(status="ok", churnlens_version=__version__, model_name=a.name,
                      model_version=a.version, model_alias=a.alias, data_as_of=state.as_of,
                      customers_scored=len(state.scores), loaded_at=state.loaded_at,
                      last_reload_error=holder["error"])

    @app.get("/model", response_model=ModelInfo, dependencies=secured, responses=_E401,
             tags=["model"])
    async def model_info(state: State) -> ModelInfo:
        """Horizon, as-of, features, validation metrics and backtest of the model."""
        a = state.artifact
        return ModelInfo(name=a.name, version=a.version, alias=a.alias, run_id=a.run_id,
                         horizon_days=a.horizon_days, as_of=a.as_of,
                         windows_days=list(a.windows_days), features=a.feature_names,
                         metrics=_clean(a.metrics),
                         backtest=_clean((a.backtest or {}).get("runs", [])))

    @app.post("/score", response_model=ScoreResponse, dependencies=secured,
              responses={**_E401, **_E413, **_E422}, tags=["scoring"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {
                      "$ref": "#/components/schemas/ScoreRequest"}}}}})
    async def score(
        request: Request,
        state: State,
        reasons: Annotated[bool, Query(description="Explain each score (top 3 reasons). "
                                                   "false skips that work.")] = True,
    ) -> Response:
        """Churn risk of the customers sent, from their purchases up to ``as_of``.

        Purchases after ``as_of`` are ignored. Customers without a purchase occasion
        on or before ``as_of`` are listed in ``unscored``.
        """
        return await score_body(await request.body(), state, reasons)

    async def score_direct(scope: Scope, body: bytes, reasons: bool, send: Send) -> None:
        # What FastAPI does for `score` (see _API): the key check of `secured`
        # (APIKeyHeader reads the first X-API-Key header, as text), the state, the handler.
        key = next((value.decode("latin-1") for name, value in scope["headers"]
                    if name == b"x-api-key"), None)
        _check_key(key or None)
        response = await score_body(body, holder["state"], reasons)
        await response(scope, _no_receive, send)

    async def score_body(body: bytes, state: ServingState, reasons: bool) -> Response:
        if len(body) <= INLINE_BODY_BYTES:
            parsed = _parse_score_request(body)
        else:
            parsed = await run_in_threadpool(_parse_score_request, body)
        customers = parsed.customers
        if len(customers) > MAX_CUSTOMERS:
            raise HTTPException(413, detail=f"at most {MAX_CUSTOMERS:,} customers per request, "
                                            f"got {len(customers):,}")
        purchases = sum(len(c.purchases) for c in customers)
        if purchases > MAX_PURCHASES:
            raise HTTPException(413, detail=f"at most {MAX_PURCHASES:,} purchases per request, "
                                            f"got {purchases:,}")
        seen: dict[str, int] = {}
        for position, customer in enumerate(customers):
            text = str(customer.customer_id)
            if text in seen:
                raise _unprocessable(
                    f"duplicate customer_id {text[:40]!r} (also at {seen[text]}; ids are "
                    "compared as text)", ("body", "customers", position, "customer_id"))
            seen[text] = position
        job = _ScoreJob(state=state, request=parsed, reasons=reasons, purchases=purchases)
        if purchases <= BATCH_PURCHASES:
            result = await batcher.submit(job, weight=purchases + len(customers))
        else:
            result = (await run_in_threadpool(queries.run, [job]))[0]
            if isinstance(result, BaseException):
                raise result
        return Response(result, media_type="application/json")

    app.score_direct = score_direct

    @app.get("/customers/{customer_id}", response_model=StoredCustomer, dependencies=secured,
             responses={**_E401, **_E404}, tags=["scoring"])
    async def customer(customer_id: str, state: State) -> Response:
        """The stored score and features of one customer of the base."""
        row = state.index.get(customer_id)
        if row is None:
            raise HTTPException(404, detail=f"customer {customer_id[:80]!r} is not in the "
                                            "scored base")
        if state.score_rows is not None and state.feature_rows is not None:
            score = state.score_rows.records(np.array([row]))[0]
            features = state.feature_rows.records(np.array([row]))[0]
        else:
            score = _clean(state.scores.iloc[row].to_dict())
            features = _clean(state.features.iloc[row].to_dict())
        return _json({"score": score, "features": features})

    @app.get("/at-risk", response_model=AtRiskPage, dependencies=secured,
             responses={**_E401, 200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                                       "description": "A page (JSON) or the whole filtered "
                                                      "list (CSV)."}},
             tags=["lists"])
    async def at_risk(
        state: State,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        min_risk: Annotated[float | None, Query(ge=0, le=1)] = None,
        segment: Annotated[str | None, Query(max_length=100)] = None,
        band: Literal["high", "medium", "low"] | None = None,
        sort: Literal["churn_risk", "value_at_risk"] = "churn_risk",
        format: Literal["json", "csv"] | None = None,
    ) -> Response:
        """At-risk customers, riskiest first; ``?format=csv`` or ``Accept: text/csv``
        streams the whole filtered list as spreadsheet-safe CSV."""
        key = (sort, min_risk, segment, band)
        rows = state.filtered.get(key) if any(k is not None for k in key[1:]) else (
            state.ranked[sort])
        if rows is None:  # a new filter: at_risk_list over the whole base, off the loop
            rows = await run_in_threadpool(_filtered_rows, state, *key)
        wants_csv = format == "csv" or (format is None and _wants_csv(
            request.headers.get("accept", "")))
        if wants_csv:  # a sync generator: Starlette runs it in a thread
            return StreamingResponse(_csv_chunks(state.scores.iloc[rows]),
                                     media_type="text/csv",
                                     headers={"Content-Disposition":
                                              "attachment; filename=at-risk.csv"})
        if limit <= 500:  # a page of a few hundred rows costs ~1 ms: no thread hop
            body = _page_body(state, rows, offset, limit)
        else:
            body = await run_in_threadpool(_page_body, state, rows, offset, limit)
        return Response(body, media_type="application/json")

    @app.get("/retention", response_model=RetentionRatesOut, dependencies=secured,
             responses=_E401, tags=["retention"])
    def retention(
        state: State,
        start: Annotated[IsoDate, Query(description="Day before the period (YYYY-MM-DD).")],
        end: Annotated[IsoDate, Query(description="Last day of the period (YYYY-MM-DD).")],
        window_days: Annotated[int | None, Query(ge=1, le=3660)] = None,
    ) -> RetentionRatesOut:
        """Actual retention rates (CRR, cohort retention, ...) of the period (start, end];
        the same numbers as ``churnlens retention --json``."""
        from churnlens._retention import retention_rates

        if end <= start:
            raise _unprocessable("end must be after start", ("query", "end"))
        rates = retention_rates(state.transactions, start, end, window_days=window_days)
        return RetentionRatesOut(**_clean(rates.to_dict()))

    @app.get("/retention/outlook", response_model=Outlook, dependencies=secured,
             responses=_E401, tags=["retention"])
    async def outlook(state: State) -> Outlook:
        """Predicted cohort retention and CRR for the coming horizon, beside the last
        actual rates of the same length."""
        s = state.summary
        p = s["predicted"]
        horizon = state.artifact.horizon_days
        return Outlook(
            as_of=state.as_of, horizon_days=horizon, period_start=state.as_of,
            period_end=state.as_of + dt.timedelta(days=horizon), active_customers=p["S"],
            predicted_cohort_retention=RateWithInterval(
                value=p["cohort_retention"], low=p["cohort_retention_low"],
                high=p["cohort_retention_high"]),
            predicted_crr=RateWithInterval(value=p["crr"], low=p["crr_low"], high=p["crr_high"]),
            last_actual=RetentionRatesOut(**_clean(s["last_actual"])),
            expected_customers_lost=p["expected_lost"],
            revenue_at_risk=s["value_at_risk_total"],
        )

    @app.get("/retention/backtest", response_model=list[BacktestPeriod], dependencies=secured,
             responses=_E401, tags=["retention"])
    async def retention_backtest(state: State) -> list[BacktestPeriod]:
        """Predicted vs actual retention for past periods, from the model's backtest."""
        runs = (state.artifact.backtest or {}).get("runs", [])
        return [BacktestPeriod(**_clean(run)) for run in runs]

    @app.post("/reload", response_model=ReloadResult, dependencies=secured, responses=_E401,
              tags=["service"])
    def reload() -> ReloadResult:
        """Reload the model alias and the data; on failure keep serving the old ones."""
        with reload_lock:
            try:
                fresh = state_loader()
            except Exception as exc:  # any failure: keep the old state, say why
                holder["error"] = f"{type(exc).__name__}: {exc}"
                old = holder["state"]
                return ReloadResult(reloaded=False, model_version=old.artifact.version,
                                    data_as_of=old.as_of, customers_scored=len(old.scores),
                                    error=holder["error"])
            holder["state"], holder["error"] = fresh, None
            if gc.get_freeze_count():  # `churnlens serve` froze the first state: refreeze
                gc.unfreeze()          # so the old one can be collected, the new frozen
                gc.collect()
                gc.freeze()
        return ReloadResult(reloaded=True, model_version=fresh.artifact.version,
                            data_as_of=fresh.as_of, customers_scored=len(fresh.scores),
                            error=None)

    def openapi() -> dict[str, Any]:
        # /score reads its body itself (parsed off the event loop when large), so its
        # request schema is added here rather than inferred from a parameter.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            request = ScoreRequest.model_json_schema(
                ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request.pop("$defs", {}))
            components["ScoreRequest"] = request
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

