"""The HTTP API: churn risk paired with actual retention, for marketing and services.

Thin by design: every handler parses, calls one library function and formats. The
served state (model, transactions, scores) is one immutable snapshot; ``/reload``
builds a new one off to the side and swaps the reference, so requests in flight keep
the snapshot they started with and none is dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from churnlens._artifact import ModelArtifact
from churnlens._config import Settings
from churnlens._version import __version__
from churnlens.exceptions import ChurnlensError

__all__ = ["API_KEYS_ENV", "ServingState", "create_app", "load_state"]

API_KEYS_ENV = "CHURNLENS_API_KEYS"
MAX_CUSTOMERS = 10_000
MAX_PURCHASES = 1_000_000
MAX_BODY_BYTES = 256 * 1024 * 1024


# --- state ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServingState:
    """Everything one version of the service answers from."""

    artifact: ModelArtifact
    transactions: pd.DataFrame
    scores: pd.DataFrame
    features: pd.DataFrame
    summary: dict[str, Any]
    as_of: dt.date
    loaded_at: str
    index: dict[str, int]  # customer id as text -> row in scores


def load_state(
    transactions_source: Any,
    model: str,
    settings: Settings,
    *,
    as_of: str | dt.date | None = None,
) -> ServingState:
    """Load the model and the transactions, score the base, and index it."""
    from churnlens._loading import load_transactions
    from churnlens._scoring import score_customers
    from churnlens._tracking import load_model

    artifact = load_model(model, settings.mlflow)
    data = settings.data
    tx, _ = load_transactions(
        transactions_source, customer_col=data.customer_col, time_col=data.time_col,
        amount_col=data.amount_col, time_format=data.time_format, as_of=as_of,
    )
    day = pd.Timestamp(as_of).date() if as_of else tx["timestamp"].max().date()
    result = score_customers(tx, day, artifact, settings=settings.scoring, allow_past=True)
    scores = result.scores
    return ServingState(
        artifact=artifact, transactions=tx, scores=scores, features=result.features,
        summary=result.summary, as_of=day,
        loaded_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        index={str(c): i for i, c in enumerate(scores["customer_id"].tolist())},
    )


# --- request and response models ------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Purchase(_Strict):
    """One transaction: an ISO 8601 timestamp or date and an amount (negative = refund)."""

    timestamp: StrictStr = Field(examples=["2024-03-05T14:30:00+01:00"])
    amount: StrictFloat | StrictInt = Field(examples=[20.0])

    @field_validator("timestamp")
    @classmethod
    def _iso(cls, value: str) -> str:
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not an ISO 8601 date or datetime: {value!r}") from exc
        if pd.Timestamp(value) is pd.NaT:
            raise ValueError("a timestamp is required")
        return value

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("amount must be a finite number")
        return value


class CustomerHistory(_Strict):
    """A customer's purchase history."""

    customer_id: StrictStr | StrictInt = Field(examples=["C0000042"])
    purchases: list[Purchase]


class ScoreRequest(_Strict):
    """Customers to score at an as-of date (purchases after it are ignored)."""

    as_of: dt.date
    customers: list[CustomerHistory]


class CustomerScore(BaseModel):
    """Churn risk of one customer, with what it is worth and why."""

    customer_id: str | int
    churn_risk: float
    risk_band: Literal["high", "medium", "low"]
    expected_value: float
    value_at_risk: float
    recency_days: int
    frequency: int
    reasons: list[str]


class Unscored(BaseModel):
    """A customer the model cannot score, and why."""

    customer_id: str | int
    reason: str


class ScoreResponse(BaseModel):
    """Scores for the customers of a request."""

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


class StoredCustomer(BaseModel):
    """A scored customer of the base, with their features."""

    score: dict[str, Any]
    features: dict[str, Any]


class AtRiskPage(BaseModel):
    """A page of the at-risk list."""

    items: list[dict[str, Any]]
    total: int
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

    detail: Any


# --- the app -------------------------------------------------------------------------


def _api_keys() -> list[str]:
    return [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, pd.Timestamp | dt.date):
        return value.isoformat()[:10] if isinstance(value, dt.date) else str(value)
    return value


def _record(frame: pd.DataFrame, row: int) -> dict[str, Any]:
    return _clean(frame.iloc[row].to_dict())


_ERRORS = {401: {"model": ErrorDetail, "description": "Missing or wrong X-API-Key."}}


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
    app = FastAPI(
        title="churnlens",
        version=__version__,
        description="Churn risk paired with the customer retention rate that actually "
                    "happened. Send the API key in the X-API-Key header.",
    )
    holder: dict[str, Any] = {"state": initial or state_loader(), "error": None}
    reload_lock = threading.Lock()

    def current() -> ServingState:
        return holder["state"]

    def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        keys = _api_keys()
        if not keys:
            return
        supplied = (x_api_key or "").encode()
        # compare against every key, always, in constant time
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(supplied, key.encode())
        if not matched:
            raise HTTPException(status_code=401, detail="missing or invalid X-API-Key header")

    State = Annotated[ServingState, Depends(current)]
    secured = [Depends(require_key)]

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[..., Any]) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse(status_code=413,
                                content={"detail": f"request body over {MAX_BODY_BYTES} bytes"})
        return await call_next(request)

    @app.exception_handler(ChurnlensError)
    async def churnlens_error(request: Request, exc: ChurnlensError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.get("/health", response_model=Health, tags=["service"])
    def health(state: State) -> Health:
        """Service status, model and data versions (no key needed)."""
        a = state.artifact
        return Health(status="ok", churnlens_version=__version__, model_name=a.name,
                      model_version=a.version, model_alias=a.alias, data_as_of=state.as_of,
                      customers_scored=len(state.scores), loaded_at=state.loaded_at,
                      last_reload_error=holder["error"])

    @app.get("/model", response_model=ModelInfo, dependencies=secured, responses=_ERRORS,
             tags=["model"])
    def model_info(state: State) -> ModelInfo:
        """Horizon, as-of, features, validation metrics and backtest of the model."""
        a = state.artifact
        return ModelInfo(name=a.name, version=a.version, alias=a.alias, run_id=a.run_id,
                         horizon_days=a.horizon_days, as_of=a.as_of,
                         windows_days=list(a.windows_days), features=a.feature_names,
                         metrics=_clean(a.metrics),
                         backtest=_clean((a.backtest or {}).get("runs", [])))

    @app.post("/score", response_model=ScoreResponse, dependencies=secured,
              responses={**_ERRORS, 413: {"model": ErrorDetail, "description": "Too many "
                                          "customers or purchases."}}, tags=["scoring"])
    def score(request: ScoreRequest, state: State) -> ScoreResponse:
        """Churn risk of the customers sent, from their purchases up to ``as_of``."""
        from churnlens._scoring import score_histories

        if len(request.customers) > MAX_CUSTOMERS:
            raise HTTPException(413, detail=f"at most {MAX_CUSTOMERS} customers per request")
        total = sum(len(c.purchases) for c in request.customers)
        if total > MAX_PURCHASES:
            raise HTTPException(413, detail=f"at most {MAX_PURCHASES} purchases per request")
        ids = [c.customer_id for c in request.customers]
        if len(set(map(str, ids))) != len(ids):
            raise HTTPException(422, detail="customer_id values must be unique in a request")
        rows = [(c.customer_id, p.timestamp, p.amount)
                for c in request.customers for p in c.purchases]
        scored, unscored = score_histories(rows, ids, request.as_of, state.artifact)
        return ScoreResponse(
            as_of=request.as_of, model_version=state.artifact.version,
            horizon_days=state.artifact.horizon_days,
            results=[CustomerScore(**r) for r in scored],
            unscored=[Unscored(**u) for u in unscored],
        )

    @app.get("/customers/{customer_id}", response_model=StoredCustomer, dependencies=secured,
             responses={**_ERRORS, 404: {"model": ErrorDetail, "description": "Unknown customer."
                                         }}, tags=["scoring"])
    def customer(customer_id: str, state: State) -> StoredCustomer:
        """The stored score and features of one customer of the base."""
        row = state.index.get(customer_id)
        if row is None:
            raise HTTPException(404, detail=f"customer {customer_id!r} is not in the scored base")
        feature_row = state.features.index[state.features["customer_id"].astype(str)
                                           == customer_id]
        return StoredCustomer(score=_record(state.scores, row),
                              features=_clean(state.features.loc[feature_row[0]].to_dict()))

    @app.get("/at-risk", response_model=AtRiskPage, dependencies=secured,
             responses={**_ERRORS, 200: {"content": {"text/csv": {}}}}, tags=["lists"])
    def at_risk(
        state: State,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        min_risk: Annotated[float | None, Query(ge=0, le=1)] = None,
        segment: str | None = None,
        band: Literal["high", "medium", "low"] | None = None,
        sort: Literal["churn_risk", "value_at_risk"] = "churn_risk",
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        """A page of at-risk customers; ``?format=csv`` or ``Accept: text/csv`` streams
        the whole filtered list as spreadsheet-safe CSV."""
        from churnlens._scoring import at_risk_list

        chosen = at_risk_list(state.scores, min_risk=min_risk, segment=segment, band=band,
                              sort=sort)
        wants_csv = format == "csv" or "text/csv" in request.headers.get("accept", "")
        if wants_csv:
            return StreamingResponse(_csv_chunks(chosen), media_type="text/csv",
                                     headers={"Content-Disposition":
                                              "attachment; filename=at-risk.csv"})
        page = chosen.iloc[offset: offset + limit]
        return AtRiskPage(items=[_record(page, i) for i in range(len(page))],
                          total=len(chosen), limit=limit, offset=offset)

    @app.get("/retention", response_model=RetentionRatesOut, dependencies=secured,
             responses={**_ERRORS, 422: {"model": ErrorDetail}}, tags=["retention"])
    def retention(
        state: State, start: dt.date, end: dt.date,
        window_days: Annotated[int | None, Query(ge=1, le=3660)] = None,
    ) -> RetentionRatesOut:
        """Actual retention rates (CRR, cohort retention, ...) of the period (start, end]."""
        from churnlens._retention import retention_rates

        if end <= start:
            raise HTTPException(422, detail="end must be after start")
        rates = retention_rates(state.transactions, start, end, window_days=window_days)
        return RetentionRatesOut(**_clean(rates.to_dict()))

    @app.get("/retention/outlook", response_model=Outlook, dependencies=secured,
             responses=_ERRORS, tags=["retention"])
    def outlook(state: State) -> Outlook:
        """Predicted cohort retention and CRR for the coming horizon, beside the last
        actual rates of the same length."""
        s = state.summary
        p = s["predicted"]
        last = s["last_actual"]
        horizon = state.artifact.horizon_days
        return Outlook(
            as_of=state.as_of, horizon_days=horizon, period_start=state.as_of,
            period_end=state.as_of + dt.timedelta(days=horizon), active_customers=p["S"],
            predicted_cohort_retention=RateWithInterval(
                value=p["cohort_retention"], low=p["cohort_retention_low"],
                high=p["cohort_retention_high"]),
            predicted_crr=RateWithInterval(value=p["crr"], low=p["crr_low"], high=p["crr_high"]),
            last_actual=RetentionRatesOut(**_clean(last)),
            expected_customers_lost=p["expected_lost"],
            revenue_at_risk=s["value_at_risk_total"],
        )

    @app.get("/retention/backtest", response_model=list[BacktestPeriod], dependencies=secured,
             responses=_ERRORS, tags=["retention"])
    def retention_backtest(state: State) -> list[BacktestPeriod]:
        """Predicted vs actual retention for past periods, from the model's backtest."""
        runs = (state.artifact.backtest or {}).get("runs", [])
        return [BacktestPeriod(**_clean(run)) for run in runs]

    @app.post("/reload", response_model=ReloadResult, dependencies=secured, responses=_ERRORS,
              tags=["service"])
    def reload() -> ReloadResult:
        """Reload the model alias and the data; on failure keep serving the old ones."""
        with reload_lock:
            try:
                fresh = state_loader()
            except Exception as exc:  # any failure: keep the old state, say why
                holder["error"] = f"{type(exc).__name__}: {exc}"
                old = current()
                return ReloadResult(reloaded=False, model_version=old.artifact.version,
                                    data_as_of=old.as_of, customers_scored=len(old.scores),
                                    error=holder["error"])
            holder["state"], holder["error"] = fresh, None
        return ReloadResult(reloaded=True, model_version=fresh.artifact.version,
                            data_as_of=fresh.as_of, customers_scored=len(fresh.scores),
                            error=None)

    app.state.started = time.time()
    return app


def _csv_chunks(frame: pd.DataFrame, rows: int = 50_000) -> Iterator[str]:
    from churnlens._io import neutralize_formulas

    for start in range(0, max(len(frame), 1), rows):
        chunk = neutralize_formulas(frame.iloc[start: start + rows])
        yield chunk.to_csv(index=False, header=start == 0)
