"""One error hierarchy for the API, rendered once as the reference's error envelope.

{"error": {"code": "NOT_FOUND", "message": "...", "details": {...}}}
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)


class PivotError(Exception):
    """A failure the API reports to its caller; subclasses fix the code and HTTP status."""

    status_code = 500
    code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}  # e.g. Retry-After on a 503


class BadRequestError(PivotError):
    status_code = 400
    code = "BAD_REQUEST"


class NotFoundError(PivotError):
    status_code = 404
    code = "NOT_FOUND"


class ConflictError(PivotError):
    status_code = 409
    code = "CONFLICT"


class ValidationError(PivotError):
    status_code = 422
    code = "VALIDATION_ERROR"


class PayloadTooLargeError(PivotError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class ServiceUnavailableError(PivotError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"


class UpstreamError(PivotError):
    """A backing service (Kubernetes, Redis, S3) answered with something we cannot use."""

    status_code = 502
    code = "UPSTREAM_ERROR"


_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


def envelope(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(status_code=status, content=body)


def field_of(loc: tuple[Any, ...] | list[Any]) -> tuple[str, str | None]:
    """A pydantic error location as (dotted field, where): ("body", "config", "epochs") ->
    ("config.epochs", "body")."""
    parts = list(loc)
    where = parts.pop(0) if parts and parts[0] in {"body", "query", "path", "header"} else None
    if where in {"query", "path", "header"}:
        # A parameter is one name; what may follow is a union member's tag
        # ("constrained-int"), which is no field.
        parts = parts[:1]
    return ".".join(str(p) for p in parts) or (where or ""), where


async def _pivot_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PivotError)
    response = envelope(exc.status_code, exc.code, exc.message, exc.details)
    response.headers.update(exc.headers)
    return response


def _json_invalid(err: dict[str, Any]) -> JSONResponse:
    """A body that is not JSON: FastAPI puts the character offset where a field goes
    (("body", 16)); say what is wrong and where, and name the body as the field."""
    loc = list(err.get("loc", ()))
    position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    reason = str((err.get("ctx") or {}).get("error") or "JSON decode error")
    message = f"request body is not valid JSON: {reason}"
    if position is not None:
        message += f" (at character {position})"
    details: dict[str, Any] = {"field": "body", "location": "body", "reason": reason}
    if position is not None:
        details["position"] = position
    details["errors"] = [{"field": "body", "location": "body", "message": message}]
    return envelope(422, "VALIDATION_ERROR", message, details)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    if raw and raw[0].get("type") == "json_invalid":
        return _json_invalid(raw[0])
    errors = []
    for err in raw:
        field, where = field_of(err.get("loc", ()))
        errors.append({"field": field, "location": where, "message": err.get("msg", "")})
    first = errors[0] if errors else {"field": "", "location": None, "message": "invalid request"}
    message = str(first["message"])
    if first["field"]:
        message = f"{first['field']}: {message}"
    details = {"field": first["field"], "location": first["location"], "errors": errors}
    return envelope(422, "VALIDATION_ERROR", message, details)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    fallback = "ERROR" if exc.status_code < 500 else "INTERNAL_ERROR"
    code = _STATUS_CODES.get(exc.status_code, fallback)
    response = envelope(exc.status_code, code, str(exc.detail), getattr(exc, "details", None))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log, never to the client.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return envelope(500, "INTERNAL_ERROR", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PivotError, _pivot_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def deny(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """The envelope from ASGI middleware, before any route runs. A WebSocket is refused with
    the same HTTP response where the server supports it (uvicorn does), else closed with 1008."""
    response = envelope(status, code, message, details)
    if headers:
        response.headers.update(headers)
    extensions = scope.get("extensions") or {}
    if scope["type"] == "websocket" and "websocket.http.response" not in extensions:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    await response(scope, receive, send)
