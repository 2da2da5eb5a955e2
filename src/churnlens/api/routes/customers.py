"""``GET /customers/{customer_id}``: one customer of the scored base; ``.../purchases``:
their purchase history."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from churnlens._io import json_ready
from churnlens.api.deps import E401, CurrentState, Reads, Responses, secured
from churnlens.api.schemas import ErrorDetail, PurchaseHistoryOut, StoredCustomer
from churnlens.api.state import ServingState

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


@router.get("/customers/{customer_id}/purchases", response_model=PurchaseHistoryOut,
            responses=_E404)
async def purchases(customer_id: str, state: CurrentState, reads: Reads) -> Response:
    """The customer's purchases up to the scoring date, netted per day (the transactions
    the score was computed from)."""
    if customer_id not in state.index:
        raise HTTPException(404, detail=f"customer {customer_id[:80]!r} is not in the "
                                        "scored base")
    body = await reads.run(_purchase_days, state, customer_id)
    return Response(body, media_type="application/json")


def _purchase_days(state: ServingState, customer_id: str) -> bytes:
    """``PurchaseHistoryOut`` of a customer of the base, as JSON bytes (read thread)."""
    tx = state.transactions
    stored_id = state.scores["customer_id"].iloc[state.index[customer_id]]
    mine = tx.loc[tx["customer_id"] == stored_id, ["timestamp", "amount"]]
    mine = mine.loc[mine["timestamp"].dt.date <= state.as_of]
    days = (mine.groupby(mine["timestamp"].dt.date, sort=True)["amount"]
            .agg(["sum", "size"]))
    payload = {"customer_id": json_ready(stored_id), "as_of": state.as_of.isoformat(),
               "days": [{"day": day.isoformat(), "amount": round(float(total), 6),
                         "transactions": int(count)}
                        for day, total, count in zip(days.index, days["sum"], days["size"],
                                                     strict=True)]}
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
