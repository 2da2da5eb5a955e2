"""The web page's sign-in: ``GET /sign-in``, ``POST /session``, ``POST /session/sign-out``.

When API keys are configured (``$CHURNLENS_API_KEYS``), the web page is read with a
session cookie instead of the ``X-API-Key`` header: the sign-in form sends a key once,
``POST /session`` checks it (every key compared in constant time) and answers with the
cookie ``churnlens_session``: an opaque random token held server-side for
:data:`~churnlens.api.deps.SESSION_TTL_SECONDS` (8 hours), never the key;
``HttpOnly``, ``SameSite=Strict``, ``Path=/``, and ``Secure`` when the request came over
TLS (``https``, behind a proxy as uvicorn reports it). A client that fails
:data:`~churnlens.api.deps.SIGN_IN_ATTEMPTS` times in a minute is refused (429) until
the minute has passed; a refusal never says whether a key exists. Sign-in and sign-out
refuse (403) a request whose ``Origin`` (else ``Referer``) names another site.

Without keys the page is open: the sign-in form sends the visitor to the page.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from churnlens.api.deps import (
    SESSION_COOKIE,
    SESSION_TTL_SECONDS,
    SIGN_IN_PATH,
    Responses,
    api_keys,
    matching_key,
    same_origin,
    session_store,
    sign_in_limiter,
)
from churnlens.api.schemas import ErrorDetail

__all__ = ["SIGN_IN_FAILED", "router"]

SIGN_IN_FAILED = "sign-in failed: that key is not accepted here"
_CROSS_SITE = ("sign-in refused: the form was sent from another site (its Origin or "
               "Referer header). Suggestion: open the sign-in page of this server itself.")
_MAX_KEY_CHARS = 1_000
# The sign-in page holds no data, loads nothing but its own style sheet, sends its form
# only here and cannot be framed (clickjacking).
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
_E_SESSION: Responses = {
    401: {"model": ErrorDetail, "description": "The key is not accepted."},
    403: {"model": ErrorDetail, "description": "Sent from another site (Origin)."},
    415: {"model": ErrorDetail, "description": "Neither JSON nor an HTML form."},
    429: {"model": ErrorDetail, "description": "Too many failed sign-ins from this "
                                               "client; retry after Retry-After seconds."},
}

_CSS = """\
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b2430;
background:#f4f6f8}
main{width:min(24rem,calc(100vw - 2rem));background:#fff;border:1px solid #d8dee4;
border-radius:8px;padding:1.5rem}
h1{font-size:1.25rem;margin:0 0 .25rem}
p{margin:.25rem 0 1rem;color:#4a5563}
label{display:block;font-weight:600;margin-bottom:.25rem}
input{width:100%;font:inherit;padding:.5rem;border:1px solid #9aa5b1;border-radius:4px}
button{margin-top:1rem;width:100%;font:inherit;font-weight:600;padding:.5rem;border:0;
border-radius:4px;background:#1f5fbf;color:#fff;cursor:pointer}
button:focus,input:focus{outline:2px solid #1f5fbf;outline-offset:2px}
.error{color:#a1260d;background:#fdecea;border-radius:4px;padding:.5rem}
"""

# Not in the OpenAPI document: the page's own sign-in (docs/web.md), not an API for
# scripts, which send X-API-Key.
router = APIRouter(tags=["session"], include_in_schema=False)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _page(request: Request, message: str | None = None, status_code: int = 200,
          headers: dict[str, str] | None = None) -> HTMLResponse:
    """The sign-in form (nothing else: no data, no link into the page)."""
    root = html.escape(_root(request), quote=True)
    error = (f'<p class="error" role="alert">{html.escape(message)}</p>' if message else "")
    body = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in - churnlens</title>
<link rel="stylesheet" href="{root}{SIGN_IN_PATH}.css">
</head>
<body>
<main>
<h1>churnlens</h1>
<p>Sign in with an API key of this server.</p>
{error}<form method="post" action="{root}/session">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required
 autofocus maxlength="{_MAX_KEY_CHARS}">
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
"""
    return HTMLResponse(body, status_code=status_code, headers={**_PAGE_HEADERS,
                                                                **(headers or {})})


@router.get(SIGN_IN_PATH, include_in_schema=False)
async def sign_in_page(request: Request) -> Response:
    """The sign-in form; without keys configured, the page itself (it is open)."""
    if not api_keys():
        return RedirectResponse(f"{_root(request)}/", status_code=303)
    return _page(request)


@router.get(f"{SIGN_IN_PATH}.css", include_in_schema=False)
async def sign_in_style() -> Response:
    """The sign-in form's style sheet (needs no key: it holds no data)."""
    return Response(_CSS, media_type="text/css",
                    headers={"Cache-Control": "public, max-age=3600"})


def _is_form(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/x-www-form-urlencoded"


def _crossed(request: Request) -> bool:
    """Sent by a page of another site: an ``Origin`` or ``Referer`` that is not ours.

    Browsers send ``Origin`` with every form and ``fetch`` POST; a client without
    either (curl, a script) is no cross-site form.
    """
    has_origin = "origin" in request.headers or "referer" in request.headers
    return has_origin and not same_origin(request)


async def _submitted_key(request: Request) -> str | None:
    """The ``key`` of the form or the JSON body, or None (missing, malformed)."""
    body = await request.body()
    try:
        if _is_form(request):
            values = parse_qs(body.decode("utf-8"), max_num_fields=10).get("key", [])
            key: Any = values[0] if len(values) == 1 else None
        else:
            document = json.loads(body) if body else None
            key = document.get("key") if isinstance(document, dict) else None
    except (UnicodeDecodeError, ValueError):
        return None
    return key if isinstance(key, str) and 0 < len(key) <= _MAX_KEY_CHARS else None


def _refused(request: Request, message: str, status_code: int,
             headers: dict[str, str] | None = None) -> Response:
    if _is_form(request):
        return _page(request, message, status_code, headers)
    return JSONResponse({"detail": message}, status_code=status_code,
                        headers={"Cache-Control": "no-store", **(headers or {})})


@router.post("/session", responses=_E_SESSION)
async def sign_in(request: Request) -> Response:
    """Exchange an API key (form field or JSON ``{"key": ...}``) for a session cookie.

    A form is answered with a redirect to the page (303), JSON with
    ``{"signed_in": true, "expires_in_seconds": ...}``; a refusal does not say whether
    the key exists. Scripts need no session: they send ``X-API-Key``.
    """
    if _crossed(request):
        return _refused(request, _CROSS_SITE, 403)
    root = _root(request)
    keys = api_keys()
    if not keys:  # the page is open: nothing to sign in to
        if _is_form(request):
            return RedirectResponse(f"{root}/", status_code=303)
        return JSONResponse({"signed_in": True, "expires_in_seconds": None},
                            headers={"Cache-Control": "no-store"})
    client = request.client.host if request.client else "unknown"
    limiter = sign_in_limiter(request.app)
    # checked and counted in one step before the body is read (sign-ins sent in
    # parallel cannot all pass the check first); taken back when the key is right
    wait = limiter.attempt(client)
    if wait is not None:  # (the key is not even looked at)
        return _refused(request, f"too many failed sign-ins from this address; try again "
                                 f"in {wait} seconds", 429, {"Retry-After": str(wait)})
    key = matching_key(await _submitted_key(request), keys)
    if key is None:
        return _refused(request, SIGN_IN_FAILED, 401)
    limiter.succeeded(client)
    token = session_store(request.app).open(key)
    answer: Response
    if _is_form(request):
        answer = RedirectResponse(f"{root}/", status_code=303,
                                  headers={"Cache-Control": "no-store"})
    else:
        answer = JSONResponse({"signed_in": True, "expires_in_seconds": SESSION_TTL_SECONDS},
                              headers={"Cache-Control": "no-store"})
    answer.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL_SECONDS, path="/",
                      secure=request.url.scheme == "https", httponly=True,
                      samesite="strict")
    return answer


async def _sign_out(request: Request) -> Response:
    if _crossed(request):
        return _refused(request, _CROSS_SITE, 403)
    session_store(request.app).close(request.cookies.get(SESSION_COOKIE))
    answer: Response
    if _is_form(request):
        answer = RedirectResponse(f"{_root(request)}{SIGN_IN_PATH}", status_code=303,
                                  headers={"Cache-Control": "no-store"})
    else:
        answer = JSONResponse({"signed_in": False}, headers={"Cache-Control": "no-store"})
    answer.delete_cookie(SESSION_COOKIE, path="/", secure=request.url.scheme == "https",
                         httponly=True, samesite="strict")
    return answer


@router.post("/session/sign-out", responses=_E_SESSION)
async def sign_out(request: Request) -> Response:
    """End the session of the cookie sent (server-side too) and clear the cookie.

    A form is answered with a redirect to the sign-in form (303), JSON with
    ``{"signed_in": false}``.
    """
    return await _sign_out(request)


@router.delete("/session", responses=_E_SESSION)
async def end_session(request: Request) -> Response:
    """The same as ``POST /session/sign-out``."""
    return await _sign_out(request)


