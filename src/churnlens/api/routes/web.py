"""``GET /``: the web page for marketing (issue 18), and its script and style sheet.

The page is static: one HTML document, one script and one style sheet, written by hand
and shipped inside the package (``api/static/web/``; no CDN, no build step, no
third-party code). Every number it shows it reads from the JSON API with ``fetch()``
(``/retention``, ``/retention/series``, ``/retention/outlook``, ``/at-risk``,
``/customers/{id}``, ``/model``...), so the page and the API never disagree. Its views
are hash routes of the one document: ``#/`` (overview), ``#/at-risk``,
``#/customer/{id}`` and ``#/model``.

Access (issue 18, item 5): when API keys are configured, the page and its files answer
only a signed-in browser (``deps.page_secured``: otherwise a redirect to ``/sign-in``),
and every data URL behind them keeps the API's own rule (a key or the session cookie);
the page then shows a sign-out button. A Content-Security-Policy keeps the page to its
own origin (no inline script, no remote anything).
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from churnlens.api.deps import api_keys, page_secured

__all__ = ["WEB_ASSETS", "WEB_DIR", "router"]

WEB_DIR = Path(__file__).resolve().parents[1] / "static" / "web"
# The files served under /web/ (nothing else of the folder is reachable).
WEB_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on a
    # POST (Fetch standard), and the sign-out form's POST must show its origin
    "Referrer-Policy": "same-origin",
    # a new version of the package serves new files: always revalidate
    "Cache-Control": "no-cache",
}

# where index.html gets the sign-out button when the server has keys
_SIGN_OUT_SLOT = b"<!--sign-out-->"
_SIGN_OUT = (b'<form class="sign-out" method="post" action="/session/sign-out">'
             b'<button type="submit">Sign out</button></form>')

router = APIRouter(tags=["web"], include_in_schema=False, dependencies=page_secured)


@functools.cache
def _read(name: str) -> bytes:
    return (WEB_DIR / name).read_bytes()


@router.get("/", include_in_schema=False)
async def page() -> Response:
    """The web page (overview, at-risk list, customers, model: hash routes)."""
    body = _read("index.html").replace(_SIGN_OUT_SLOT, _SIGN_OUT if api_keys() else b"")
    return Response(body, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/web/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    """The page's script, style sheet and icon."""
    media_type = WEB_ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, detail="not found")
    return Response(_read(name), media_type=media_type, headers=_HEADERS)
