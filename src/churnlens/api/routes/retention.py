"""``/retention``: actual retention rates, the outlook of the coming horizon, the backtest."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated

from fastapi import APIRouter, Query

from churnlens._io import json_ready
from churnlens.api.deps import E401, CurrentState, Reads, secured
from churnlens.api.errors import unprocessable
from churnlens.api.schemas import (
    BacktestPeriod,
    IsoDate,
    Outlook,
    RateWithInterval,
    RetentionRatesOut,
)

router = APIRouter(tags=["retention"], dependencies=secured, responses=E401)


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
    from churnlens._retention import retention_rates

    if end <= start:
        raise unprocessable("end must be after start", ("query", "end"))
    # a query over the whole history: on the read thread, beside the other bulk reads
    rates = await reads.run(functools.partial(
        retention_rates, state.transactions, start, end, window_days=window_days))
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
