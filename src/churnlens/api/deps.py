"""Dependencies of the route handlers: access (API key or session), the served state.

Access, when API keys are configured (``$CHURNLENS_API_KEYS``): a request is let in by
one of the keys in its ``X-API-Key`` header (the JSON API) or by a valid session cookie
(the web page: ``POST /session`` exchanges a key for one, see
:mod:`churnlens.api.routes.session`). Sessions are opaque random tokens
(:func:`secrets.token_urlsafe`) held server-side with an expiry (:class:`SessionStore`),
never the key itself. A request authenticated by its cookie that changes state (``POST``,
``PUT``, ``PATCH``, ``DELETE``) must also come from the page's own origin (``Origin``,
else ``Referer``; 403 otherwise): the cookie is ``SameSite=Strict`` already, this is the
second lock. Without keys everything is open (``churnlens serve`` then binds to a
loopback address only).

Dependencies are coroutines: cheap, and they must not cost a thread hop each.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from churnlens.api.errors import SIGN_IN_PATH, SignInRequired
from churnlens.api.reads import ReadQueue
from churnlens.api.schemas import ErrorDetail
from churnlens.api.scoring import ScoreService
from churnlens.api.state import ServingState, StateHolder

__all__ = ["API_KEYS_ENV", "CROSS_ORIGIN", "E401", "E415", "KEY_DENIED", "SESSION_COOKIE",
           "SESSION_TTL_SECONDS", "SIGN_IN_ATTEMPTS", "SIGN_IN_PATH",
           "SIGN_IN_WINDOW_SECONDS", "CurrentState", "Holder", "Reads", "Responses",
           "Scorer", "SessionStore", "SignInLimiter", "access",
           "api_keys", "check_key", "matching_key", "page_secured", "same_origin",
           "secured", "session_store", "sign_in_limiter", "signed_in"]

API_KEYS_ENV = "CHURNLENS_API_KEYS"
KEY_DENIED = "missing or invalid X-API-Key header"
CROSS_ORIGIN = ("cross-origin request refused: a request signed in by the session cookie "
                "that changes state must come from this server's own page (its Origin or "
                "Referer header names another origin, or neither is sent). Suggestion: "
                "send the X-API-Key header instead of the cookie from scripts.")
SESSION_COOKIE = "churnlens_session"
# How long a session lasts after sign-in (no sliding renewal: sign in again after it).
SESSION_TTL_SECONDS = 8 * 3600
# Failed sign-ins allowed per client address in SIGN_IN_WINDOW_SECONDS; beyond, 429.
SIGN_IN_ATTEMPTS = 5
SIGN_IN_WINDOW_SECONDS = 60
# Sessions (and clients of the sign-in limiter) held at most: the oldest go first.
_MAX_SESSIONS = 10_000
_MAX_CLIENTS = 10_000
_MAX_TOKEN_CHARS = 200
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

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


def matching_key(supplied: str | None, keys: list[str]) -> str | None:
    """The configured key equal to ``supplied``, or None.

    Every key is compared, always, each in constant time (:func:`hmac.compare_digest`),
    so the answer's timing says nothing of which key matched or how much of one did.
    """
    given = (supplied or "").encode()
    found: str | None = None
    for key in keys:
        if hmac.compare_digest(given, key.encode()) and found is None:
            found = key
    return found


def check_key(x_api_key: str | None) -> None:
    """Refuse (401) a request without one of the configured keys, if any are configured.

    Every key is compared, always, each in constant time.
    """
    keys = api_keys()
    if keys and matching_key(x_api_key, keys) is None:
        raise HTTPException(status_code=401, detail=KEY_DENIED)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class SessionStore:
    """Sessions of the web page: opaque random tokens, held server-side with an expiry.

    Only a SHA-256 digest of each token is kept (a copy of this memory opens no session),
    with the digest of the key it was opened with: a session ends when its key is no
    longer configured, when it expires, or when it is closed (sign-out).

    Parameters
    ----------
    ttl_seconds
        Lifetime of a session from its sign-in.
    max_sessions
        Sessions held at most; the oldest is dropped to open one more.
    clock
        Seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, ttl_seconds: float = SESSION_TTL_SECONDS, *,
                 max_sessions: int = _MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_sessions = max_sessions
        self.clock = clock
        # token digest -> (expires at, key digest), oldest first (one lifetime for all)
        self._sessions: collections.OrderedDict[bytes, tuple[float, bytes]] = (
            collections.OrderedDict())
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, key: str) -> str:
        """A new session for a client that showed ``key``: its token (for the cookie)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            while self._sessions:  # expired ones first (the oldest are at the front)
                first = next(iter(self._sessions.values()))
                if first[0] > now and len(self._sessions) < self.max_sessions:
                    break
                self._sessions.popitem(last=False)
            self._sessions[_digest(token)] = (now + self.ttl_seconds, _digest(key))
        return token

    def valid(self, token: str | None, keys: list[str]) -> bool:
        """Whether ``token`` names an open, unexpired session of a key still in ``keys``."""
        if not token or len(token) > _MAX_TOKEN_CHARS:
            return False
        digest = _digest(token)
        with self._lock:
            entry = self._sessions.get(digest)
            if entry is not None and self.clock() >= entry[0]:
                del self._sessions[digest]
                entry = None
        if entry is None:
            return False
        key_digest = entry[1]
        return any([hmac.compare_digest(key_digest, _digest(k)) for k in keys])

    def close(self, token: str | None) -> bool:
        """End the session of ``token`` (sign-out); whether there was one."""
        if not token or len(token) > _MAX_TOKEN_CHARS:
            return False
        with self._lock:
            return self._sessions.pop(_digest(token), None) is not None


class SignInLimiter:
    """Failed sign-ins per client address: at most ``attempts`` in ``window_seconds``.

    Once a client has failed that often, every sign-in from it is refused (429, without
    looking at the key) until its oldest failure leaves the window.

    Parameters
    ----------
    attempts
        Failures allowed in the window.
    window_seconds
        The sliding window.
    clock
        Seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, attempts: int = SIGN_IN_ATTEMPTS,
                 window_seconds: float = SIGN_IN_WINDOW_SECONDS, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window_seconds = window_seconds
        self.clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict())
        self._lock = threading.Lock()

    def attempt(self, client: str) -> int | None:
        """Check and count one sign-in attempt of ``client`` in one step.

        Returns the seconds to wait (the attempt is refused and not counted), or None:
        the attempt is counted as a failure at once, before the key is read, so sign-ins
        sent in parallel cannot all pass the check before any failure is counted; call
        :meth:`succeeded` when the key was right.
        """
        now = self.clock()
        with self._lock:
            failures = self._failures.pop(client, None) or collections.deque()
            while failures and failures[0] <= now - self.window_seconds:
                failures.popleft()
            wait = None
            if len(failures) >= self.attempts:
                wait = max(1, int(failures[0] + self.window_seconds - now + 0.999))
            else:
                failures.append(now)
            if failures:
                self._failures[client] = failures  # most recent last
            while len(self._failures) > _MAX_CLIENTS:
                self._failures.popitem(last=False)
            return wait

    def succeeded(self, client: str) -> None:
        """Take back the attempt :meth:`attempt` counted: the key was right."""
        with self._lock:
            failures = self._failures.get(client)
            if failures:
                failures.pop()
                if not failures:
                    del self._failures[client]


def session_store(app: Any) -> SessionStore:
    """The app's :class:`SessionStore` (created on first use, in ``app.state.sessions``)."""
    store = getattr(app.state, "sessions", None)
    if store is None:
        store = app.state.sessions = SessionStore()
    return store


def sign_in_limiter(app: Any) -> SignInLimiter:
    """The app's :class:`SignInLimiter` (created on first use, ``app.state``)."""
    limiter = getattr(app.state, "sign_in_limiter", None)
    if limiter is None:
        limiter = app.state.sign_in_limiter = SignInLimiter()
    return limiter


def access(request: Request) -> Literal["open", "key", "session"] | None:
    """How this request is let in: ``open`` (no keys configured), ``key`` (a valid
    ``X-API-Key``), ``session`` (a valid session cookie), or None (it is not)."""
    keys = api_keys()
    if not keys:
        return "open"
    if matching_key(request.headers.get("x-api-key"), keys) is not None:
        return "key"
    if session_store(request.app).valid(request.cookies.get(SESSION_COOKIE), keys):
        return "session"
    return None


def signed_in(request: Request) -> bool:
    """Whether this request may read data (a key, a session, or no keys configured)."""
    return access(request) is not None


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (else ``Referer``) is this server's own origin.

    The server's origin is the request's scheme (``https`` behind a TLS proxy only as
    uvicorn reports it: ``X-Forwarded-Proto`` from ``$FORWARDED_ALLOW_IPS``, by default
    127.0.0.1) and its ``Host`` header. A request with neither header is not.
    """
    host = request.headers.get("host", "").strip().lower()
    if not host:
        return False
    own = f"{request.url.scheme}://{host}"
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.strip().lower() == own
    referer = request.headers.get("referer")
    if referer is None:
        return False
    parts = urlsplit(referer.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() == own


async def _require_key(
    request: Request,
    x_api_key: Annotated[str | None, Security(_KEY_HEADER)] = None,
) -> None:
    # (x_api_key: declared for the OpenAPI document; `access` reads the same header)
    how = access(request)
    if how is None:
        raise HTTPException(status_code=401, detail=KEY_DENIED)
    if how == "session" and request.method in _UNSAFE_METHODS and not same_origin(request):
        raise HTTPException(status_code=403, detail=CROSS_ORIGIN)


async def _require_page_access(request: Request) -> None:
    if not signed_in(request):
        raise SignInRequired(request.scope.get("root_path", "").rstrip("/") + SIGN_IN_PATH)


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
# For a router or a route: every data endpoint but /health needs a key or a session
# (and a same-origin request when a session changes state).
secured = [Depends(_require_key)]
# For the web app's pages: without access, a redirect (303) to the sign-in page.
page_secured = [Depends(_require_page_access)]
