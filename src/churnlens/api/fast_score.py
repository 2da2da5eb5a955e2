"""The plain ``POST /score`` requests answered before FastAPI's machinery.

At 32 concurrent clients, the framework's per-request work (its middleware layers,
routing, generic dependency resolution) was a fifth of the server's CPU.
:class:`FastScoreAPI` answers a ``POST /score`` with a small body (``Content-Length``
up to ``inline_body_bytes``) and no query string but ``reasons`` and ``allow_past``
(``true|false``) at once:
the route's own key check (:func:`churnlens.api.deps.check_key`) and the same
:meth:`ScoreService.score <churnlens.api.scoring.ScoreService.score>` the route
calls. If anything goes wrong before the answer starts (a wrong key, an invalid body,
a scoring error), the request is handed, body included, to the whole app, which
answers it exactly as for any other request (a parity test checks the two paths give
the same answers). Every other request takes the whole app at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.types import Message, Receive, Scope, Send

from churnlens.api.deps import check_key
from churnlens.api.errors import RequestGuard

__all__ = ["FastScoreAPI"]

# The query parameters answered directly (anything else: FastAPI's), and their values.
_FLAGS = {b"true": True, b"false": False}
_SCORE_PARAMETERS = {b"reasons": True, b"allow_past": False}  # (their defaults)
DirectScore = Callable[[Scope, bytes, bool, bool, Send], Awaitable[None]]


class FastScoreAPI(FastAPI):
    """The FastAPI app, with the plain ``POST /score`` requests answered up front."""

    score_direct: DirectScore | None = None
    # Host, body size and content type, checked before anything else (create_app sets it)
    guard: RequestGuard | None = None

    def enable_fast_score(self) -> None:
        """Answer plain ``POST /score`` requests directly (``app.state``: holder, scorer)."""
        self.score_direct = self._score_direct

    async def _score_direct(self, scope: Scope, body: bytes, reasons: bool,
                            allow_past: bool, send: Send) -> None:
        # What FastAPI does for the route: the key check of `secured` (APIKeyHeader
        # reads the first X-API-Key header, as text), the state, the handler.
        key = next((value.decode("latin-1") for name, value in scope["headers"]
                    if name == b"x-api-key"), None)
        check_key(key or None)
        answer = await self.state.scorer.score(body, self.state.holder.state, reasons,
                                               allow_past=allow_past)
        await Response(answer, media_type="application/json")(scope, _no_receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.guard is not None and scope["type"] == "http":
            refused = self.guard.refusal(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
            receive = self.guard.limited(receive, scope)
        if self.score_direct is not None and scope["type"] == "http":
            flags = self._direct_flags(scope)
            if flags is not None:
                received: list[Message] = []
                while True:
                    message = await receive()
                    received.append(message)
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break
                if message["type"] == "http.request":
                    body = b"".join(m.get("body", b"") for m in received)
                    started = False

                    async def sending(event: Message) -> None:
                        nonlocal started
                        started = True
                        await send(event)

                    try:
                        await self.score_direct(scope, body, *flags, sending)
                        return
                    except Exception:
                        if started:
                            raise
                receive = _replay(received, receive)
        await super().__call__(scope, receive, send)

    def _direct_flags(self, scope: Scope) -> tuple[bool, bool] | None:
        """``(reasons, allow_past)`` of a ``POST /score`` answered directly, else None."""
        if scope["method"] != "POST" or scope["path"] != "/score" or scope.get("root_path"):
            return None
        flags = _query_flags(scope.get("query_string", b""))
        if flags is None:
            return None
        limit = self.state.scorer.limits.inline_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                return flags if value.isdigit() and int(value) <= limit else None
        return None


def _query_flags(query: bytes) -> tuple[bool, bool] | None:
    """``reasons`` and ``allow_past`` of a plain query string (``true``/``false`` each,
    at most once), else None (the whole app parses it)."""
    values = dict(_SCORE_PARAMETERS)
    seen: set[bytes] = set()
    for part in query.split(b"&") if query else ():
        name, _, value = part.partition(b"=")
        flag = _FLAGS.get(value)
        if name not in values or name in seen or flag is None:
            return None
        seen.add(name)
        values[name] = flag
    return values[b"reasons"], values[b"allow_past"]


async def _no_receive() -> Message:  # a plain Response never reads the request
    raise RuntimeError("the request was read already")


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that gives ``messages`` again first."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
