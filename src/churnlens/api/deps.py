"""Dependencies of the route handlers: the API key check and the served state.

Dependencies are coroutines: cheap, and they must not cost a thread hop each.
"""

from __future__ import annotations

import hmac
import os
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from churnlens.api.reads import ReadQueue
from churnlens.api.schemas import ErrorDetail
from churnlens.api.scoring import ScoreService
from churnlens.api.state import ServingState, StateHolder

__all__ = ["API_KEYS_ENV", "E401", "E415", "CurrentState", "Holder", "Reads", "Responses",
           "Scorer", "api_keys", "check_key", "secured"]

API_KEYS_ENV = "CHURNLENS_API_KEYS"
KEY_DENIED = "missing or invalid X-API-Key header"

_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description=f"One of the keys in ${API_KEYS_ENV} (when set).")

# Documented error answers, for the routes' ``responses``.
Responses = dict[int | str, dict[str, Any]]
E401: Responses = {
    401: {"model": ErrorDetail, "description": "Missing or wrong X-API-Key."}}
E415: Responses = {
    415: {"model": ErrorDetail, "description": "A POST without Content-Type: "
                                               "application/json."}}


def api_keys() -> list[str]:
    """The keys configured in ``$CHURNLENS_API_KEYS`` (comma-separated; none: no check)."""
    return [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]


def check_key(x_api_key: str | None) -> None:
    """Refuse (401) a request without one of the configured keys, if any are configured.

    Every key is compared, always, each in constant time.
    """
    keys = api_keys()
    if not keys:
        return
    supplied = (x_api_key or "").encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied, key.encode())
    if not matched:
        raise HTTPException(status_code=401, detail=KEY_DENIED)


async def _require_key(
    x_api_key: Annotated[str | None, Security(_KEY_HEADER)] = None,
) -> None:
    check_key(x_api_key)


async def _holder(request: Request) -> StateHolder:
    return request.app.state.holder


async def _current_state(request: Request) -> ServingState:
    return request.app.state.holder.state


async def _scorer(request: Request) -> ScoreService:
    return request.app.state.scorer


async def _reads(request: Request) -> ReadQueue:
    return request.app.state.reads


Holder = Annotated[StateHolder, Depends(_holder)]
CurrentState = Annotated[ServingState, Depends(_current_state)]
Scorer = Annotated[ScoreService, Depends(_scorer)]
Reads = Annotated[ReadQueue, Depends(_reads)]
# For a router or a route: every endpoint but /health needs a key.
secured = [Depends(_require_key)]
