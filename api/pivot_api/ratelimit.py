"""Per-client-IP rate limits shared by every worker and replica through Redis.

Built on `limits` (moving window: exact, one Redis list per client and limit, so "the 101st
request within any 60 seconds" is refused, not only within a calendar minute). The defaults
are the reference's: 100 a minute and 1000 an hour (`PIVOT_RATE_LIMITS`).

Every limited response carries X-RateLimit-Limit / -Remaining / -Reset (unix seconds) of the
limit closest to running out; a refused one is 429 with Retry-After and the error envelope.
If Redis cannot be reached the limiter fails open: requests pass without the headers, and
Redis is not asked again for a few seconds, so an outage costs no latency.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pivot_api.errors import deny

log = logging.getLogger(__name__)


def parse_limits(text: str) -> list[RateLimitItem]:
    """'100/minute;1000/hour' (the `limits` notation: also '5 per second', '10/2 minutes')."""
    try:
        items = parse_many(text)
    except ValueError as exc:
        raise ValueError(f"invalid rate limits {text!r}: {exc}") from None
    if not items:
        raise ValueError(f"invalid rate limits {text!r}: no limit in it")
    return list(items)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # unix time when the window has room again

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(max(self.remaining, 0)).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset)).encode()),
        ]

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.reset - now))


class RateLimiter:
    """Hits every limit for one client, in order, stopping at the first that is used up."""

    def __init__(
        self, redis_url: str, items: list[RateLimitItem], *, key_prefix: str, timeout_s: float
    ) -> None:
        self.items = items
        # Its own client with short timeouts: a hung Redis must not hold requests for the
        # request pool's 10 s.
        self.redis = Redis.from_url(
            redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=key_prefix,
            wrap_exceptions=True,
            connection_pool=self.redis.connection_pool,  # type: ignore[arg-type]
        )
        self.strategy = MovingWindowRateLimiter(storage)

    async def check(self, client: str) -> Verdict:
        refused: RateLimitItem | None = None
        for item in self.items:
            if not await self.strategy.hit(item, client):
                refused = item
                break
        stats = await asyncio.gather(
            *(self.strategy.get_window_stats(item, client) for item in self.items)
        )
        verdicts = [
            Verdict(refused is None, item.amount, s.remaining, s.reset_time)
            for item, s in zip(self.items, stats, strict=True)
        ]
        if refused is not None:
            return verdicts[self.items.index(refused)]
        return min(verdicts, key=lambda v: (v.remaining, v.limit))

    async def aclose(self) -> None:
        await self.redis.aclose()


def client_address(scope: Scope, trusted_proxies: int) -> str:
    """The peer address; with N trusted proxies in front, the address the outermost of them
    saw (N-th from the right in X-Forwarded-For), which a client cannot forge."""
    peer = scope.get("client")
    address = peer[0] if peer else "unknown"
    if trusted_proxies <= 0:
        return address
    forwarded: list[str] = []
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            forwarded += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    if len(forwarded) >= trusted_proxies:
        return forwarded[-trusted_proxies]
    return forwarded[0] if forwarded else address


class RateLimitMiddleware:
    """Pure ASGI: headers are added to the response start, bodies and streams pass through."""

    # After a Redis failure, requests pass unchecked this long before Redis is tried again.
    retry_after_failure_s = 5.0

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        public_paths: frozenset[str],
        trusted_proxies: int = 0,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.public_paths = public_paths
        self.trusted_proxies = trusted_proxies
        self._skip_until = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        verdict = await self._check(client_address(scope, self.trusted_proxies))
        if verdict is None:
            await self.app(scope, receive, send)
            return
        if not verdict.allowed:
            retry = verdict.retry_after(time.time())
            headers = {k.decode(): v.decode() for k, v in verdict.headers()}
            headers["Retry-After"] = str(retry)
            await deny(
                scope,
                receive,
                send,
                429,
                "RATE_LIMITED",
                f"rate limit of {verdict.limit} requests exceeded; retry in {retry} s",
                {"limit": verdict.limit, "retry_after_s": retry},
                headers=headers,
            )
            return
        extra = verdict.headers()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _check(self, client: str) -> Verdict | None:
        if time.monotonic() < self._skip_until:
            return None
        try:
            return await self.limiter.check(client)
        except Exception as exc:
            # Fail open: losing the limiter must not take the API down with it.
            self._skip_until = time.monotonic() + self.retry_after_failure_s
            log.warning(
                "rate limiting is off for %.0f s: Redis failed: %r",
                self.retry_after_failure_s,
                exc,
            )
            return None
