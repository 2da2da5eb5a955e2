"""``GET /at-risk``: the at-risk list, a page as JSON or the whole list as CSV."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from churnlens.api.deps import E401, CurrentState, Reads, secured
from churnlens.api.reads import ReadQueue
from churnlens.api.schemas import AtRiskPage
from churnlens.api.state import list_key

# A page of a few hundred rows costs ~1 ms: answered on the event loop; larger pages,
# new filters and CSV exports go to the read thread (churnlens.api.reads).
_INLINE_PAGE_ROWS = 500
ListKind = Literal["all", "campaign", "win-back"]

router = APIRouter(tags=["lists"], dependencies=secured, responses=E401)


@router.get("/at-risk", response_model=AtRiskPage, responses={
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "A page (JSON) or the whole filtered list (CSV)."}})
async def at_risk(
    state: CurrentState,
    reads: Reads,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    min_risk: Annotated[float | None, Query(ge=0, le=1)] = None,
    segment: Annotated[str | None, Query(max_length=100)] = None,
    band: Literal["high", "medium", "low"] | None = None,
    sort: Literal["churn_risk", "value_at_risk"] | None = None,
    format: Literal["json", "csv"] | None = None,
    kind: Annotated[ListKind, Query(
        alias="list", description="all: the whole scored base, riskiest first (the CLI's "
        "at-risk --all); campaign: the customers worth a call (last purchase less than two "
        "horizons ago, band high or medium, by value at risk; the CLI's default list, "
        "uncut); win-back: the customers already gone (no purchase in two horizons), by "
        "value at risk.")] = "all",
) -> Response:
    """At-risk customers: by default the whole scored base, riskiest first (the CLI's
    ``at-risk --all``; filter by band, risk or segment); ``?list=campaign`` for the
    customers worth a call, ``?list=win-back`` for those already gone. ``?format=csv``
    or ``Accept: text/csv`` streams the whole filtered list as spreadsheet-safe CSV."""
    if sort is None:
        sort = "churn_risk" if kind == "all" else "value_at_risk"
    if format == "csv" or (format is None and wants_csv(request.headers.get("accept", ""))):
        # written once per state and filter, on the read thread (never the event loop)
        pieces = state.csv_cache.get(list_key(kind, sort, min_risk, segment, band))
        if pieces is None:
            pieces = await reads.run(state.at_risk_csv, sort, min_risk, segment, band,
                                     reads.pause, kind)
        reads.check_room()
        name = "at-risk" if kind == "all" else kind
        return StreamingResponse(_stream(reads, pieces), media_type="text/csv",
                                 headers={"Content-Disposition":
                                          f"attachment; filename={name}.csv"})
    rows = state.cached_at_risk_rows(sort, min_risk, segment, band, kind)
    if rows is None:  # a new filter: at_risk_list over the whole base, off the loop
        rows = await reads.run(state.at_risk_rows, sort, min_risk, segment, band, kind)
    if limit <= _INLINE_PAGE_ROWS:
        body = state.page_body(rows, offset, limit)
    else:
        body = await reads.run(state.page_body, rows, offset, limit)
    return Response(body, media_type="application/json")


async def _stream(reads: ReadQueue, pieces: list[bytes]) -> AsyncIterator[bytes]:
    # in a read slot, stepping aside for scoring between pieces
    async with reads.slot(checked=True):
        for k, piece in enumerate(pieces):
            if k:
                await reads.step_aside()
            yield piece


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

