"""The FastAPI app: routers, middleware, exception handlers and lifespan, wired."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from churnlens._version import __version__
from churnlens.api.deps import API_KEYS_ENV
from churnlens.api.errors import RequestGuard, add_exception_handlers, allowed_hosts_from_env
from churnlens.api.fast_score import FastScoreAPI
from churnlens.api.limits import ApiLimits
from churnlens.api.reads import ReadQueue
from churnlens.api.routes import ROUTERS
from churnlens.api.schemas import ScoreRequest
from churnlens.api.scoring import ScoreService
from churnlens.api.state import ServingState, StateHolder

__all__ = ["create_app"]

DESCRIPTION = (
    "Churn risk paired with the customer retention rate that actually happened. Send the "
    f"API key in the X-API-Key header when the server has keys (${API_KEYS_ENV}). No "
    "endpoint reads a file or a model URI from a request."
)


def create_app(
    state_loader: Callable[[], ServingState],
    *,
    initial: ServingState | None = None,
    limits: ApiLimits | None = None,
) -> FastAPI:
    """Build the FastAPI app.

    Parameters
    ----------
    state_loader
        Builds a fresh :class:`~churnlens.api.state.ServingState` (at start-up and on
        every ``POST /reload``).
    initial
        A state already loaded (skips the start-up load).
    limits
        Request size limits (default :class:`~churnlens.api.limits.ApiLimits`).

    Returns
    -------
    fastapi.FastAPI
        The app; ``app.state.holder`` holds the served state, ``app.state.scorer`` the
        ``POST /score`` service, ``app.state.batcher`` its micro-batcher and
        ``app.state.reads`` the read thread of the bulk reads.
    """
    limits = limits or ApiLimits()
    scorer = ScoreService(limits)
    reads = ReadQueue(busy=scorer.busy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        scorer.close()
        reads.close()

    app = FastScoreAPI(title="churnlens", version=__version__, description=DESCRIPTION,
                       lifespan=lifespan)
    app.state.holder = StateHolder(state_loader, initial)
    app.state.scorer = scorer
    app.state.batcher = scorer.batcher
    app.state.reads = reads
    app.guard = RequestGuard(limits.body_bytes(), allowed_hosts_from_env())
    add_exception_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.enable_fast_score()

    def openapi() -> dict[str, Any]:
        # POST /score reads its body itself, so its request schema is added here.
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
