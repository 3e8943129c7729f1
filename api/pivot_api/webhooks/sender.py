"""POSTing signed event bodies to receivers, to the address the SSRF check resolved."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from pivot_api import __version__
from pivot_api.settings import Settings
from pivot_api.webhooks.signing import signed_headers
from pivot_api.webhooks.ssrf import Allowlist, Target, UnsafeURLError, check_url

# Bytes of a receiver's answer read (and logged) at most.
_MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def gone(self) -> bool:
        return self.status_code == 410


class Sender:
    """POSTs signed bodies to checked addresses. One keep-alive client per receiver origin
    (scheme, host name, port), so a TLS connection is never reused for another name."""

    def __init__(self, settings: Settings, *, max_clients: int = 256) -> None:
        self.allow = Allowlist.parse(settings.webhook_allowlist)
        self.dns_timeout_s = settings.webhook_dns_timeout_s
        self.total_s = settings.webhook_timeout_s
        self.timeout = httpx.Timeout(
            settings.webhook_timeout_s, connect=settings.webhook_connect_timeout_s
        )
        self.max_clients = max_clients
        self._clients: OrderedDict[tuple[str, str, int], httpx.AsyncClient] = OrderedDict()

    async def check(self, url: str) -> Target:
        return await check_url(url, self.allow, timeout_s=self.dns_timeout_s)

    def _client(self, target: Target) -> httpx.AsyncClient:
        key = (target.scheme, target.host, target.port)
        client = self._clients.pop(key, None)
        if client is None:
            client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,  # a redirect could point anywhere: never followed
                trust_env=False,  # no proxy from the environment: we connect to what we checked
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
            )
            while len(self._clients) >= self.max_clients:
                _, old = self._clients.popitem(last=False)
                asyncio.get_running_loop().create_task(old.aclose())
        self._clients[key] = client
        return client

    async def send(self, url: str, secret: str, msg_id: str, body: bytes) -> Attempt:
        start = time.perf_counter()

        def done(ok: bool, code: int | None, error: str | None) -> Attempt:
            return Attempt(ok, code, error, round((time.perf_counter() - start) * 1000, 2))

        try:
            # Checked before every attempt (DNS may have changed since registration), and
            # the connection goes to the address checked, not to a second lookup.
            target = await self.check(url)
        except UnsafeURLError as exc:
            return done(False, None, f"refused: {exc}")
        headers = signed_headers(secret, msg_id, int(time.time()), body)
        headers |= {
            "content-type": "application/json",
            "user-agent": f"pivot-webhooks/{__version__}",
            "host": target.host_header(),
        }
        client = self._client(target)
        try:
            async with (
                asyncio.timeout(self.total_s),
                client.stream(
                    "POST",
                    target.connect_url(),
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": target.host},
                ) as resp,
            ):
                read = 0
                async for chunk in resp.aiter_raw():
                    read += len(chunk)
                    if read >= _MAX_RESPONSE_BYTES:
                        break
                code = resp.status_code
        except TimeoutError:
            return done(False, None, f"timed out after {self.total_s:g}s")
        except httpx.HTTPError as exc:
            return done(False, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= code < 300:
            return done(True, code, None)
        if 300 <= code < 400:
            return done(False, code, f"HTTP {code}: redirects are not followed")
        return done(False, code, f"HTTP {code}")

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()
