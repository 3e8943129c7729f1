"""HEAD on every GET route: the GET's status and headers, no body (RFC 9110, 9.3.2).

FastAPI's routes answer only the methods they name, so `HEAD /api/v1/training/sessions`
was a 405. This pure ASGI middleware runs the GET instead and sends its status and headers
(Content-Length included) with an empty body. The GET is cut short once its headers are
out: a live stream (SSE) or a checkpoint download is not produced just to be thrown away.
API keys and rate limits, outside it, see the HEAD: it needs the read scope, as GET does.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _HeadDone(OSError):
    """Raised into the GET's next send: its response is complete as far as HEAD goes.
    An OSError, which is how a send to a client that has left fails."""


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        started = done = False

        async def head_receive() -> Message:
            if started:
                # The response has begun: a streaming GET that watches for the client
                # leaving (Starlette's StreamingResponse does) stops here.
                return {"type": "http.disconnect"}
            return await receive()

        async def head_send(message: Message) -> None:
            nonlocal started, done
            if message["type"] == "http.response.start":
                started = True
                await send(message)
            elif message["type"] in ("http.response.body", "http.response.pathsend"):
                if done:
                    raise _HeadDone("HEAD: the response is complete")
                done = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                if message.get("more_body", False):
                    raise _HeadDone("HEAD: the response is complete")
            else:
                await send(message)

        # A copy: the server reads the method from its own scope (a HEAD response has no
        # body, not even a chunked one's end).
        inner = {**scope, "method": "GET"}
        try:
            await self.app(inner, head_receive, head_send)
        except (OSError, ClientDisconnect):
            if not done:
                raise
        finally:
            # What the router put in it (the matched route) for the middleware outside.
            scope.update({k: v for k, v in inner.items() if k != "method"})
