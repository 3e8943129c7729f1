"""A real HTTP receiver for webhook tests: it verifies every request's Standard Webhooks
signature with the `standardwebhooks` package (an implementation independent of ours),
records what it accepted, and can answer with an error status or go down entirely."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook as Verifier

from pivot_local.procs import free_port
from tests.support.waiting import eventually


@dataclass
class Received:
    msg_id: str
    type: str
    data: dict[str, Any]
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Receiver:
    secret: str = ""
    # The status it answers with (2xx: the event is accepted and recorded).
    status: int = 204
    port: int = field(default_factory=lambda: free_port("127.0.0.1"))
    accepted: list[Received] = field(default_factory=list)
    # Every request's webhook-id, accepted or not.
    attempts: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None
    _up_status: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _verifier(self) -> Verifier:
        # whsec_ secrets are base64 (the spec); others sign with their UTF-8 bytes (ours).
        return Verifier(self.secret if self.secret.startswith("whsec_") else self.secret.encode())

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.attempts.append(headers.get("webhook-id", ""))
        try:
            payload = self._verifier().verify(body.decode(), headers)
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=401)
        if not 200 <= self.status < 300:
            return web.Response(status=self.status)
        self.accepted.append(
            Received(
                msg_id=headers["webhook-id"],
                type=payload["type"],
                data=payload["data"],
                body=json.loads(body),
                headers=headers,
            )
        )
        return web.Response(status=self.status)

    async def start(self) -> Receiver:
        if self._runner is None:
            app = web.Application()
            app.router.add_post("/hook", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
        if self._up_status is not None:
            self.status, self._up_status = self._up_status, None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        return self

    async def down(self) -> None:
        """Stop listening: connections are refused until `start` again (and a kept-alive
        connection that outlives the listener gets 503)."""
        self._up_status, self.status = self.status, 503
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def stop(self) -> None:
        await self.down()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout_s: float = 20.0) -> list[Received]:
        async def arrived() -> bool:
            return len(self.accepted) >= count

        await eventually(arrived, within=timeout_s, what=f"{count} deliveries", interval=0.02)
        return self.accepted
