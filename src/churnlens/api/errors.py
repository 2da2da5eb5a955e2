"""Error answers of the HTTP API: one 422 format, and the request body size limit."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from churnlens.exceptions import ChurnlensError

__all__ = ["BodyLimit", "add_exception_handlers", "unprocessable"]


def unprocessable(message: str, loc: tuple[str | int, ...] = ()) -> HTTPException:
    """A 422 in the same shape as FastAPI's validation errors (one format for clients)."""
    return HTTPException(422, detail=[{"loc": list(loc), "msg": message, "type": "value_error"}])


async def _churnlens_error(request: Request, exc: Exception) -> JSONResponse:
    # A ChurnlensError from a library call is about the request's data: a 422.
    return JSONResponse(status_code=422, content={
        "detail": [{"loc": [], "msg": str(exc), "type": "value_error"}]})


def add_exception_handlers(app: FastAPI) -> None:
    """Install the API's exception handlers on ``app``."""
    app.add_exception_handler(ChurnlensError, _churnlens_error)


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = JSONResponse(
                    {"detail": f"request body over {self.max_bytes:,} bytes"}, status_code=413)
                await response(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, detail=f"request body over {self.max_bytes:,} bytes")
            return message

        await self.app(scope, limited, send)
