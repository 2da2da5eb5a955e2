"""``GET /customers/{customer_id}``: one customer of the scored base."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from churnlens.api.deps import E401, CurrentState, Responses, secured
from churnlens.api.schemas import ErrorDetail, StoredCustomer

_E404: Responses = {404: {"model": ErrorDetail, "description": "Unknown customer."}}

router = APIRouter(tags=["scoring"], dependencies=secured, responses=E401)


@router.get("/customers/{customer_id}", response_model=StoredCustomer, responses=_E404)
async def customer(customer_id: str, state: CurrentState) -> Response:
    """The stored score and features of one customer of the base."""
    stored = state.customer(customer_id)
    if stored is None:
        raise HTTPException(404, detail=f"customer {customer_id[:80]!r} is not in the "
                                        "scored base")
    body = json.dumps(stored, allow_nan=False, separators=(",", ":")).encode()
    return Response(body, media_type="application/json")
