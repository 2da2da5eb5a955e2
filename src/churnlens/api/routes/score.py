"""``POST /score``: churn risk of the customers sent, from their purchases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from churnlens.api.deps import E401, E415, CurrentState, Responses, Scorer, secured
from churnlens.api.schemas import ErrorDetail, ScoreResponse

_E413: Responses = {413: {"model": ErrorDetail, "description": "Too many customers or "
                                                              "purchases, or a body over the "
                                                              "size limit."}}
_E422: Responses = {422: {
    "description": "Validation error (wrong types, unknown fields, bad values).",
    "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}}
# The handler reads its body itself (parsed off the event loop when large), so the
# request schema is declared here and added to the components by create_app.
_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}}}}

router = APIRouter(tags=["scoring"], dependencies=secured, responses=E401)


@router.post("/score", response_model=ScoreResponse, responses={**_E413, **E415, **_E422},
             openapi_extra=_BODY)
async def score(
    request: Request,
    state: CurrentState,
    scorer: Scorer,
    reasons: Annotated[bool, Query(description="Explain each score (top 3 reasons). "
                                               "false skips that work.")] = True,
    allow_past: Annotated[bool, Query(description="Score an as_of before the model's "
                                                  "training as-of (a deliberate backfill; "
                                                  "422 otherwise, as churnlens score "
                                                  "without --allow-past).")] = False,
) -> Response:
    """Churn risk of the customers sent, from their purchases up to ``as_of``.

    Purchases after ``as_of`` are ignored. Customers without a purchase occasion
    on or before ``as_of`` are listed in ``unscored``. An ``as_of`` before the model's
    training as-of is refused (422) unless ``allow_past=true``.
    """
    body = await scorer.score(await request.body(), state, reasons, allow_past=allow_past)
    return Response(body, media_type="application/json")
