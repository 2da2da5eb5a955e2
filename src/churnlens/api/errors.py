"""Error answers of the HTTP API: one 422 format, the sign-in redirect of the web pages,
and the checks before any route (Host, body size, content type)."""

from __future__ import annotations

import ipaddress
import os

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope

from churnlens.exceptions import ChurnlensError

__all__ = ["ALLOWED_HOSTS_ENV", "FORM_POST_BYTES", "FORM_POST_PATHS", "SIGN_IN_PATH",
           "RequestGuard", "SignInRequired", "add_exception_handlers",
           "allowed_hosts_from_env", "unprocessable"]

ALLOWED_HOSTS_ENV = "CHURNLENS_ALLOWED_HOSTS"
# The web page's sign-in form (churnlens.api.routes.session).
SIGN_IN_PATH = "/sign-in"
# The only POSTs that may be an HTML form (application/x-www-form-urlencoded): sign-in
# and sign-out, which check the Origin themselves; every other POST must be JSON.
FORM_POST_PATHS = frozenset({"/session", "/session/sign-out"})
# Their bodies hold one key (at most 1,000 characters): anything larger is refused (413)
# before it is read or parsed, as these paths answer clients without a key.
FORM_POST_BYTES = 16 * 1024
_FORM_TYPE = "application/x-www-form-urlencoded"


class SignInRequired(Exception):  # noqa: N818 (a redirect, not an error)
    """A web page asked for without access: answered with a redirect to the sign-in form.

    Parameters
    ----------
    location
        Where the sign-in form is (``root_path`` included).
    """

    def __init__(self, location: str = SIGN_IN_PATH) -> None:
        super().__init__(location)
        self.location = location


def unprocessable(message: str, loc: tuple[str | int, ...] = ()) -> HTTPException:
    """A 422 in the same shape as FastAPI's validation errors (one format for clients)."""
    return HTTPException(422, detail=[{"loc": list(loc), "msg": message, "type": "value_error"}])


async def _sign_in(request: Request, exc: Exception) -> RedirectResponse:
    location = exc.location if isinstance(exc, SignInRequired) else SIGN_IN_PATH
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


async def _churnlens_error(request: Request, exc: Exception) -> JSONResponse:
    # A ChurnlensError from a library call is about the request's data: a 422.
    return JSONResponse(status_code=422, content={
        "detail": [{"loc": [], "msg": str(exc), "type": "value_error"}]})


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client closed the connection before its body was all sent (a Content-Length
    # longer than the body, a client that gave up): nobody to answer, nothing to log
    # (it was an "Exception in ASGI application" traceback in the server log each time).
    return Response(status_code=400)


def add_exception_handlers(app: FastAPI) -> None:
    """Install the API's exception handlers on ``app``."""
    app.add_exception_handler(ChurnlensError, _churnlens_error)
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(ClientDisconnect, _client_gone)


def allowed_hosts_from_env() -> frozenset[str]:
    """Extra Host names a loopback server answers (``$CHURNLENS_ALLOWED_HOSTS``, comma
    separated, without port), e.g. the name a local reverse proxy forwards."""
    names = os.environ.get(ALLOWED_HOSTS_ENV, "").split(",")
    return frozenset(n.strip().lower() for n in names if n.strip())


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """The name of a Host header, without its port (``[::1]:8000`` -> ``[::1]``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


def _json_content_type(value: str) -> bool:
    """``application/json``, optionally with ``charset=utf-8`` (JSON is UTF-8)."""
    media, *params = (p.strip().lower() for p in value.split(";"))
    if media != "application/json":
        return False
    for param in params:
        name, _, given = param.partition("=")
        if name.strip() != "charset" or given.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


def _form_content_type(value: str) -> bool:
    """``application/x-www-form-urlencoded`` (an HTML form's POST), parameters allowed."""
    return value.split(";")[0].strip().lower() == _FORM_TYPE


class RequestGuard:
    """The checks every request passes before any route sees it (answers in microseconds).

    - **Host** (400): on a loopback address (127.0.0.0/8, ::1) the ``Host`` header must
      be a loopback name, ``localhost``, a loopback address or ``[::1]`` (port
      optional), or a name of ``$CHURNLENS_ALLOWED_HOSTS``: a web page that rebinds its
      own domain name to 127.0.0.1 (DNS rebinding) sends its own name and is refused.
    - **Body size** (413): a declared ``Content-Length`` over ``max_body_bytes`` is
      refused before a byte of the body is read; a body without one is counted as it
      arrives (:meth:`limited`), so memory stays flat whatever is sent. The sign-in and
      sign-out bodies (:data:`FORM_POST_PATHS`, open to clients without a key) are
      limited to :data:`FORM_POST_BYTES`.
    - **Content encoding** (415): a body with a ``Content-Encoding`` other than
      ``identity`` (gzip, deflate...) is refused: bodies are read as sent, never
      decompressed (a compressed body would be parsed as garbage, and an expanded one
      would escape the size limit).
    - **Content type** (415): a ``POST`` must say ``Content-Type: application/json``
      (``; charset=utf-8`` allowed). A web page can send other types without asking
      the browser's permission first (no CORS preflight); JSON it cannot. The sign-in
      and sign-out forms (:data:`FORM_POST_PATHS`) may also be
      ``application/x-www-form-urlencoded``: they check the ``Origin`` themselves. A
      request with more than one ``Content-Type`` header is refused too (the check and
      the route would read different ones).

    Parameters
    ----------
    max_body_bytes
        The largest request body accepted.
    allowed_hosts
        Extra Host names accepted on a loopback address.
    """

    def __init__(self, max_body_bytes: int, allowed_hosts: frozenset[str] = frozenset()
                 ) -> None:
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = allowed_hosts
        self.too_large = f"request body over {max_body_bytes:,} bytes"

    def refusal(self, scope: Scope) -> JSONResponse | None:
        """The answer refusing this request, or None when it may go on."""
        host = content_type = length = encoding = None
        content_types = 0
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"content-type":
                content_types += 1
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = value
            elif name == b"content-encoding" and value.strip().lower() != b"identity":
                encoding = value.decode("latin-1")
        server = scope.get("server")
        if (host is not None and server and _is_loopback_address(str(server[0]))
                and not self._loopback_name(_host_name(host))):
            return JSONResponse({"detail": (
                f"Host {host[:100]!r} is not a loopback name: this server listens on a "
                "loopback address and answers only localhost, 127.0.0.1 or [::1] (a guard "
                "against DNS rebinding). Suggestion: call http://127.0.0.1:PORT, or list "
                f"the name in ${ALLOWED_HOSTS_ENV}.")}, status_code=400)
        # (an invalid Content-Length is the server's to refuse: it never gets here)
        limit = self.body_limit(scope)
        if length is not None and length.isdigit() and int(length) > limit:
            return JSONResponse({"detail": self._too_large(limit)}, status_code=413)
        if encoding is not None:
            return JSONResponse({"detail": (
                f"Content-Encoding {encoding[:100]!r} is not supported: request bodies are "
                "read as sent, never decompressed. Suggestion: send the body uncompressed "
                "(no Content-Encoding header).")}, status_code=415)
        if content_types > 1:
            return JSONResponse({"detail": (
                f"{content_types} Content-Type headers: a request has one. Suggestion: send "
                "the header Content-Type: application/json once.")}, status_code=415)
        if (scope["method"] == "POST" and not _json_content_type(content_type or "")
                and not (scope["path"] in FORM_POST_PATHS
                         and _form_content_type(content_type or ""))):
            got = "none" if content_type is None else repr(content_type[:100])
            return JSONResponse({"detail": (
                f"POST bodies must be JSON: Content-Type application/json (optionally with "
                f"; charset=utf-8), got {got}. Suggestion: send the header "
                "Content-Type: application/json.")}, status_code=415)
        return None

    def _loopback_name(self, name: str) -> bool:
        return (name == "localhost" or _is_loopback_address(name)
                or name in self.allowed_hosts)

    def body_limit(self, scope: Scope) -> int:
        """The largest body accepted for this request (:data:`FORM_POST_BYTES` for the
        sign-in and sign-out forms, ``max_body_bytes`` otherwise)."""
        if scope["path"] in FORM_POST_PATHS:
            return min(FORM_POST_BYTES, self.max_body_bytes)
        return self.max_body_bytes

    def _too_large(self, limit: int) -> str:
        return self.too_large if limit == self.max_body_bytes else (
            f"request body over {limit:,} bytes")

    def limited(self, receive: Receive, scope: Scope | None = None) -> Receive:
        """``receive`` that counts the body as it arrives: 413 once over the limit (of
        ``scope``'s path: :meth:`body_limit`; ``max_body_bytes`` without one)."""
        seen = 0
        limit = self.max_body_bytes if scope is None else self.body_limit(scope)

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, detail=self._too_large(limit))
            return message

        return counted
