"""The FastAPI app: routers, middleware, exception handlers and lifespan, wired."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

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

__all__ = ["DOCS_ASSETS_URL", "SWAGGER_UI_VERSION", "create_app"]

# Swagger UI ships inside the package (static/swagger-ui/, its licence and provenance in
# the README there): FastAPI's own /docs loads it from a CDN, a blank page offline.
SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_UI_DIR = Path(__file__).with_name("static") / "swagger-ui"
DOCS_ASSETS_URL = "/docs/assets"

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

    # docs_url=None, redoc_url=None: /docs is added by _add_docs, with local assets; ReDoc
    # (a second page over the same schema, also from a CDN) is not served.
    app = FastScoreAPI(title="churnlens", version=__version__, description=DESCRIPTION,
                       lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.holder = StateHolder(state_loader, initial)
    app.state.scorer = scorer
    app.state.batcher = scorer.batcher
    app.state.reads = reads
    app.guard = RequestGuard(limits.body_bytes(), allowed_hosts_from_env())
    add_exception_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.enable_fast_score()
    _add_docs(app)

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


def _add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) with its JavaScript, CSS and icon served by the app itself.

    FastAPI's recipe for self-hosted docs assets. Like FastAPI's own ``/docs`` and
    ``/openapi.json``, these pages need no API key (they show the schema, no data); the
    request guards (Host, body size) apply to them as to every request.
    """
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=SWAGGER_UI_DIR), name="docs-assets")
    redirect_url = app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + str(app.openapi_url),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    if redirect_url:
        @app.get(redirect_url, include_in_schema=False)
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()
