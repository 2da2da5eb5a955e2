"""``GET /at-risk``: the at-risk list, a page as JSON or the whole list as CSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from churnlens._io import csv_text
from churnlens.api.deps import E401, CurrentState, secured
from churnlens.api.schemas import AtRiskPage

# A page of a few hundred rows costs ~1 ms: answered on the event loop.
_INLINE_PAGE_ROWS = 500
_CSV_CHUNK_ROWS = 50_000

router = APIRouter(tags=["lists"], dependencies=secured, responses=E401)


@router.get("/at-risk", response_model=AtRiskPage, responses={
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "A page (JSON) or the whole filtered list (CSV)."}})
async def at_risk(
    state: CurrentState,
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
    rows = state.cached_at_risk_rows(sort, min_risk, segment, band)
    if rows is None:  # a new filter: at_risk_list over the whole base, off the loop
        rows = await run_in_threadpool(state.at_risk_rows, sort, min_risk, segment, band)
    if format == "csv" or (format is None and wants_csv(request.headers.get("accept", ""))):
        # a sync generator: Starlette runs it in a thread
        return StreamingResponse(csv_chunks(state.scores.iloc[rows]), media_type="text/csv",
                                 headers={"Content-Disposition":
                                          "attachment; filename=at-risk.csv"})
    if limit <= _INLINE_PAGE_ROWS:
        body = state.page_body(rows, offset, limit)
    else:
        body = await run_in_threadpool(state.page_body, rows, offset, limit)
    return Response(body, media_type="application/json")


def wants_csv(accept: str) -> bool:
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


def csv_chunks(frame: pd.DataFrame, rows: int = _CSV_CHUNK_ROWS) -> Iterator[str]:
    """``frame`` in churnlens' one CSV dialect, spreadsheet-safe, a chunk of rows at a time."""
    for start in range(0, max(len(frame), 1), rows):
        yield csv_text(frame.iloc[start: start + rows], spreadsheet_safe=True,
                       header=start == 0)
