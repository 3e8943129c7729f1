"""`GET {prefix}/training/sessions/{session_id}` answered without FastAPI's router.

It is the hottest read (dashboards poll it), and its body is already one cached bytes object
per resourceVersion (`SessionService.get_json`), so what a request cost was FastAPI: matching
the path against every included router, solving the `Sessions` dependency, building a Request
and a Response, two AsyncExitStacks (about two thirds of the server CPU per GET). This
middleware sits innermost, after observability, rate limit and API keys, so all of those still
apply; it answers that one route itself and hands everything else to the router.

What a client sees is the route's answer byte for byte: the same body and headers, errors
rendered by the app's own exception handler, the route object in the scope (so the metrics
label it by template). The route stays in the router, for the OpenAPI document and for the
requests this path leaves to it: anything it is unsure of (HEAD, a root_path, FastAPI's own
OpenTelemetry on, dependency overrides, the service not up) goes the normal way.
tests/integration/api/test_api_session_fastpath.py pins it to the router's answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from pivot_api.errors import PivotError
from pivot_api.observability import ROUTE_LABEL
from pivot_api.sessions.service import SessionService

_JSON = b"application/json"


class SessionReadFastPath:
    """Pure ASGI: answers GET of one session by id, passes every other request on."""

    def __init__(self, app: ASGIApp, *, prefix: str, route: APIRoute) -> None:
        self.app = app
        self.route = route
        self.endpoint = route.endpoint
        # "/api/v1" + "/training/sessions/{session_id}" -> "/api/v1/training/sessions/"
        self.label = prefix + route.path
        self.base = self.label.removesuffix("{session_id}")
        if self.base == self.label or route.methods != {"GET"}:
            raise ValueError(f"not a GET of one session by id: {self.label}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            not path.startswith(self.base)
            or scope["type"] != "http"
            or scope["method"] != "GET"
            or scope.get("root_path")
            or "fastapi.telemetry" in scope
        ):
            await self.app(scope, receive, send)
            return
        session_id = path[len(self.base) :]
        app = scope["app"]
        service = getattr(app.state, "sessions", None)
        if (
            not session_id
            or "/" in session_id
            or not isinstance(service, SessionService)
            or app.dependency_overrides
        ):
            await self.app(scope, receive, send)
            return
        # What the router leaves in the scope for the middlewares around it, and the metrics
        # label the observability middleware would work out from the route and the path.
        scope[ROUTE_LABEL] = self.label
        scope["route"] = self.route
        scope["endpoint"] = self.endpoint
        scope["path_params"] = {"session_id": session_id}
        try:
            body = await service.get_json(session_id)
        except PivotError as exc:
            handler = _handler_for(app.exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        # Response(body, media_type="application/json") as the route returns it.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)],
            }
        )
        await send({"type": "http.response.body", "body": body})


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _handler_for(handlers: dict[Any, Any], exc: Exception) -> Handler | None:
    """The handler Starlette's ExceptionMiddleware would pick: the nearest class in the MRO."""
    for cls in type(exc).__mro__:
        if cls in handlers:
            handler: Handler = handlers[cls]
            return handler
    return None


def session_route(routes: list[Any], endpoint: Callable[..., Any]) -> APIRoute:
    """The APIRoute of `endpoint` among a router's routes."""
    for route in routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            return route
    raise LookupError(f"no route for {endpoint.__qualname__}")
