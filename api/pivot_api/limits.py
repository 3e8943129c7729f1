"""The request body limit: a body over `max_bytes` is refused with 413 in the error envelope.

Enforced as the body is read, not after: a declared Content-Length over the limit is refused
before a byte is read, and a chunked body is cut off at the first chunk that passes it, so a
50 MB JSON body costs neither its memory nor its parse. Checkpoint uploads stream to S3 and
have their own, larger limit (Settings.checkpoint_max_upload_bytes): they are exempt.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pivot_api.errors import deny
from pivot_api.settings import Settings

_CODE = "PAYLOAD_TOO_LARGE"


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes the limit: FastAPI lets an HTTPException
    out of its body parsing as is, and the app's handler renders it as the envelope."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _message(max_bytes))
        self.details = {"max_bytes": max_bytes}


def _message(max_bytes: int) -> str:
    return f"request body is larger than {max_bytes} bytes"


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, exempt: Callable[[Scope], bool] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt or (lambda _scope: False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt(scope):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        details = {"max_bytes": limit}
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await deny(scope, receive, send, 413, _CODE, _message(limit), details)
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except BodyTooLarge:
            # Read outside FastAPI's body parsing (another middleware, a raw route).
            if started:
                raise
            await deny(scope, receive, send, 413, _CODE, _message(limit), details)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def install_body_limit(app: FastAPI, settings: Settings) -> None:
    """Bodies up to settings.max_body_bytes; checkpoint uploads and predictions (their own
    limits) exempt."""
    prefix = settings.api_prefix.rstrip("/")
    upload = prefix + "/checkpoints"
    models = prefix + "/models/"

    def exempt(scope: Scope) -> bool:
        if scope.get("method") != "POST":
            return False
        path = str(scope.get("path"))
        return path == upload or (path.startswith(models) and path.endswith("/predict"))

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, exempt=exempt)
