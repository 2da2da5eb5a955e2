"""``/retention``: actual retention rates (one period, a series, the acquisition cohorts),
the outlook of the coming horizon, the backtest."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query

from churnlens._io import json_ready
from churnlens.api.deps import E401, CurrentState, Reads, secured
from churnlens.api.errors import unprocessable
from churnlens.api.schemas import (
    BacktestPeriod,
    Cohort,
    CohortTable,
    IsoDate,
    Outlook,
    RateWithInterval,
    RetentionPeriod,
    RetentionRatesOut,
    RetentionSeries,
)
from churnlens.api.state import cohorts_key, rates_key, series_key

router = APIRouter(tags=["retention"], dependencies=secured, responses=E401)

# quarter, month, year, or periods of N days (the CLI's --every); at least a week, so a
# series over years stays a few hundred periods
_EVERY = re.compile(r"^(quarter|month|year|([1-9][0-9]{0,3})d)$")
_MIN_EVERY_DAYS = 7


@router.get("/retention", response_model=RetentionRatesOut)
async def retention(
    state: CurrentState,
    reads: Reads,
    start: Annotated[IsoDate, Query(description="Day before the period (YYYY-MM-DD).")],
    end: Annotated[IsoDate, Query(description="Last day of the period (YYYY-MM-DD).")],
    window_days: Annotated[int | None, Query(ge=1, le=3660)] = None,
) -> RetentionRatesOut:
    """Actual retention rates (CRR, cohort retention, ...) of the period (start, end];
    the same numbers as ``churnlens retention --json``."""
    if end <= start:
        raise unprocessable("end must be after start", ("query", "end"))
    # a query over the whole history: on the read thread, beside the other bulk reads,
    # once per served state and period (ServingState.retention_rates)
    cached = state.cached_read(rates_key(start, end, window_days))
    rates = (cached if cached is not None
             else await reads.run(state.retention_rates, start, end, window_days))
    return RetentionRatesOut(**json_ready(rates.to_dict()))


@router.get("/retention/outlook", response_model=Outlook)
async def outlook(state: CurrentState) -> Outlook:
    """Predicted cohort retention and CRR for the coming horizon, beside the last
    actual rates of the same length; customers lost and revenue at risk over the same
    base, the active customers (``base``)."""
    summary = state.summary
    predicted = summary["predicted"]
    horizon = state.artifact.horizon_days
    active = summary.get("bases", {}).get("active", {})
    rows = {row["rate"]: row for row in summary.get("pairing", [])}

    def rate(name: str, level_error: float | None) -> RateWithInterval:
        row = rows.get(name, {})
        return RateWithInterval(value=row.get("predicted"), low=row.get("predicted_low"),
                                high=row.get("predicted_high"), level_error=level_error,
                                covers=row.get("interval_covers"),
                                definition=row.get("definition"))

    return Outlook(
        as_of=state.as_of, horizon_days=horizon, period_start=state.as_of,
        period_end=state.as_of + dt.timedelta(days=horizon),
        active_customers=predicted["S"],
        predicted_cohort_retention=rate("cohort_retention",
                                        predicted.get("level_error_cohort_retention")),
        predicted_crr=rate("crr", predicted.get("level_error_crr")),
        predicted_repeat_rate=rate("repeat_rate", 0.0) if "repeat_rate" in rows else None,
        last_actual=RetentionRatesOut(**json_ready(summary["last_actual"])),
        base="active",
        base_definition=active.get("definition", f"customers with a purchase in the last "
                                                 f"{horizon} days"),
        acquired_customers=summary["customers_scored"],
        expected_customers_lost=predicted["expected_lost"],
        revenue_at_risk=summary["value_at_risk_total"],
        interval_covers=predicted.get("interval_covers"),
        definitions=summary.get("definitions", {}),
        model_warnings=summary.get("model_warnings", []),
    )


@router.get("/retention/backtest", response_model=list[BacktestPeriod])
async def retention_backtest(state: CurrentState) -> list[BacktestPeriod]:
    """Predicted vs actual retention for past periods, from the model's backtest."""
    runs = (state.artifact.backtest or {}).get("runs", [])
    return [BacktestPeriod(**json_ready(run)) for run in runs]


@router.get("/retention/series", response_model=RetentionSeries)
async def retention_series(
    state: CurrentState,
    reads: Reads,
    every: Annotated[str | None, Query(
        max_length=10, description="quarter, month, year or Nd (N days, at least 7; the "
        "periods end on the scoring date). Default: periods of the model's horizon.")] = None,
    window_days: Annotated[int | None, Query(ge=1, le=3660)] = None,
) -> RetentionSeries:
    """Retention rates of consecutive periods up to the scoring date, oldest first; the
    same numbers as ``churnlens retention --every ... --end AS_OF --json``."""
    from churnlens._io import frame_records

    every = every if every is not None else f"{state.artifact.horizon_days}d"
    match = _EVERY.fullmatch(every)
    if match is None or (match.group(2) is not None and int(match.group(2)) < _MIN_EVERY_DAYS):
        raise unprocessable(f"every must be quarter, month, year or Nd with N >= "
                            f"{_MIN_EVERY_DAYS}, not {every!r}", ("query", "every"))
    series = state.cached_read(series_key(every, window_days))
    if series is None:  # _retention.retention_series, once per state (ServingState)
        series = await reads.run(state.retention_series, every, window_days)
    return RetentionSeries(every=every, window_days=window_days,
                           periods=[RetentionPeriod(**row) for row in frame_records(series)])


@router.get("/retention/cohorts", response_model=CohortTable)
async def retention_cohorts(state: CurrentState, reads: Reads) -> CohortTable:
    """Monthly acquisition cohorts up to the scoring date: the share of each cohort
    buying k months after acquisition (``churnlens cohorts --json``)."""
    table = state.cached_read(cohorts_key())
    if table is None:  # _retention.cohort_table, once per state (ServingState)
        table = await reads.run(state.cohort_table)
    return CohortTable(cohorts=_cohort_rows(table))


def _cohort_rows(table: Any) -> list[Cohort]:
    from churnlens._io import frame_records

    months = sorted(c for c in table.columns if isinstance(c, int))
    return [Cohort(cohort=row["cohort"], cohort_size=row["cohort_size"],
                   months=[row[str(k)] for k in months])
            for row in frame_records(table[["cohort", "cohort_size", *months]])]
