"""Webhooks: registrations, signed durable delivery, the delivery log and dead letters.

Flow: the platform event bus → `fan_out` (a consumer group, run in every worker) → one
outbox per webhook in Redis → `run_scheduler` (one worker, the leader) → the receiver.

- Signing is Standard Webhooks (https://www.standardwebhooks.com): `webhook-id` is the
  event's id (the same on every retry, so receivers can de-duplicate), `webhook-timestamp`
  the attempt's unix seconds, `webhook-signature` `v1,<base64 HMAC-SHA256 of
  "{id}.{timestamp}.{body}">`. A `whsec_<base64>` secret signs with its decoded bytes (the
  spec's form, what the API generates); any other secret a user gives signs with its UTF-8
  bytes.
- An outbox is a sorted set ordered by the bus entry id, so an endpoint gets events in the
  order they happened even though several workers fan out concurrently; enqueueing is
  idempotent on the event id (a bus entry handled twice is enqueued once).
- Head-of-line: the scheduler delivers an endpoint's first event until it is acknowledged
  with a 2xx or dead-lettered, and only then the next. A failure schedules the endpoint again
  after exponential backoff with full jitter. Only the leader delivers, so an endpoint is
  worked by one worker at a time: each event reaches a receiver that answers 2xx once,
  unless the leader dies between the receiver's 2xx and recording it (then it is sent again
  with the same `webhook-id`).
- 410 Gone from a receiver disables its webhook (events stay in its outbox); other 4xx/5xx,
  timeouts, refused connections and redirects (never followed) are retried.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import httpx
from redis.asyncio import Redis

from pivot_api import __version__
from pivot_api.errors import ConflictError, NotFoundError, ValidationError
from pivot_api.services.platform_events import ApiKeys, PlatformEvent, utcnow_iso
from pivot_api.services.ssrf import Allowlist, Target, UnsafeURLError, check_url
from pivot_api.settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_TEST = "webhook_test"
SECRET_PREFIX = "whsec_"
ACTIVE = "active"
DISABLED = "disabled"
# Bytes of a receiver's answer read (and logged) at most.
_MAX_RESPONSE_BYTES = 64 * 1024
# How long an event id is remembered per webhook to keep enqueueing idempotent; bus entries
# are re-handled within seconds of a failure, so a day is ample.
_SEEN_TTL_MS = 24 * 3600 * 1000


# -- signing --------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: whsec_ secrets are base64, others are used as given."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        if not key:
            raise ValueError("empty secret")
        return key
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def event_body(type_: str, timestamp: str, data: dict[str, Any]) -> bytes:
    payload = {"type": type_, "timestamp": timestamp, "data": data}
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
    return random.uniform(0, min(max_s, base_s * 2 ** min(attempt - 1, 60)))


# -- sending --------------------------------------------------------------------------------


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


# -- Redis layout and scripts ---------------------------------------------------------------


@dataclass(frozen=True)
class WebhookKeys:
    keys: ApiKeys

    @property
    def records(self) -> str:  # hash: webhook id -> record JSON
        return self.keys.key("webhooks", "records")

    @property
    def due(self) -> str:  # sorted set: webhook id -> unix time its outbox is due
        return self.keys.key("webhooks", "due")

    @property
    def wake(self) -> str:  # list the scheduler blocks on: something was enqueued
        return self.keys.key("webhooks", "wake")

    def of(self, webhook_id: str, part: str) -> str:
        # outbox (zset: bus order), payloads (hash: event id -> body), attempts (hash),
        # seen (zset: event id -> enqueued ms), log (list), dead (hash), dead_order (zset)
        return self.keys.key("webhooks", webhook_id, part)

    def all_of(self, webhook_id: str) -> list[str]:
        parts = ("outbox", "payloads", "attempts", "seen", "log", "dead", "dead_order")
        return [self.of(webhook_id, p) for p in parts]


# KEYS: records seen payloads outbox due wake
# ARGV: webhook id, event id, now ms, seen cutoff ms, body, score, member, now s
_ENQUEUE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[2]) == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[7])
-- Wake the scheduler only for an endpoint it had no reason to look at: one already due
-- (being delivered) or backing off takes the new event in its turn.
if redis.call('ZADD', KEYS[5], 'NX', ARGV[8], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[6], '1')
  redis.call('LTRIM', KEYS[6], 0, 0)
end
return 1
"""

# The head is done (delivered, or dead-lettered when ARGV[5] is not empty), logged.
# KEYS: outbox payloads attempts due dead dead_order log records
# ARGV: member, event id, webhook id, now s, dead-letter JSON, dead-letter cap, log entry,
#       log cap
_FINISH = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('HEXISTS', KEYS[8], ARGV[3]) == 0 then return 0 end  -- deleted meanwhile
redis.call('LPUSH', KEYS[7], ARGV[7])
redis.call('LTRIM', KEYS[7], 0, tonumber(ARGV[8]) - 1)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[2], ARGV[5])
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[2])
  local over = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[6])
  if over > 0 then
    local old = redis.call('ZRANGE', KEYS[6], 0, over - 1)
    redis.call('ZREM', KEYS[6], unpack(old))
    redis.call('HDEL', KEYS[5], unpack(old))
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[4], ARGV[3]) end
return 1
"""

# The endpoint's record and first event, counting the attempt about to be made, in one trip:
# {} (no such webhook), {record} (empty outbox), {record, member, score} (no payload), or
# {record, member, score, body, attempt}.
# KEYS: records outbox payloads attempts; ARGV: webhook id
_HEAD = """
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return {} end
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #head == 0 then return {rec} end
local eid = string.match(head[1], '|(.*)$')
local body = redis.call('HGET', KEYS[3], eid)
if not body then return {rec, head[1], head[2]} end
return {rec, head[1], head[2], body, redis.call('HINCRBY', KEYS[4], eid, 1)}
"""

# Unschedule an endpoint whose outbox is empty (atomically: an enqueue may race it).
# KEYS: outbox due; ARGV: webhook id
_IDLE = """
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) return 1 end
return 0
"""

# A dead letter back into the outbox at its original place in bus order.
# KEYS: dead dead_order payloads attempts outbox due wake records
# ARGV: event id, body, score, member, webhook id, now s
_REDELIVER = """
if redis.call('HEXISTS', KEYS[8], ARGV[5]) == 0 then return 0 end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[6], 'NX', ARGV[6], ARGV[5])
redis.call('LPUSH', KEYS[7], '1')
redis.call('LTRIM', KEYS[7], 0, 0)
return 1
"""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def order_of(stream_id: str, event_id: str) -> tuple[int, str]:
    """(score, member) that sort an outbox in bus order: the entry's milliseconds, then
    its sequence number (zero-padded, so members compare as numbers)."""
    ms, _, seq = stream_id.partition("-")
    try:
        score, seq_n = int(ms), int(seq or 0)
    except ValueError:
        score, seq_n = int(time.time() * 1000), 0
    return score, f"{seq_n:012d}|{event_id}"


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "secret"}


# -- the service ----------------------------------------------------------------------------


class WebhookService:
    def __init__(self, redis: Redis, keys: ApiKeys, settings: Settings) -> None:
        self.redis = redis
        self.k = WebhookKeys(keys)
        self.settings = settings
        self.sender = Sender(settings)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._kick = asyncio.Event()

    async def _eval(self, script: str, keys: list[str], *args: Any) -> Any:
        return await cast(Awaitable[Any], self.redis.eval(script, len(keys), *keys, *args))

    # -- registrations ----------------------------------------------------------------------

    async def create(
        self, url: str, events: list[str], secret: str | None
    ) -> tuple[dict[str, Any], str | None]:
        """The new webhook's public record, and its secret if the API generated it."""
        try:
            await self.sender.check(url)
        except UnsafeURLError as exc:
            raise ValidationError(str(exc), {"field": "url", "location": "body"}) from None
        if secret is not None:
            try:
                secret_key(secret)
            except (binascii.Error, ValueError):
                raise ValidationError(
                    "secret: a whsec_ secret must be base64 after the prefix",
                    {"field": "secret", "location": "body"},
                ) from None
        if await self.redis.hlen(self.k.records) >= self.settings.webhook_max_count:
            raise ConflictError(
                f"at most {self.settings.webhook_max_count} webhooks may be registered"
            )
        generated = new_secret() if secret is None else None
        record: dict[str, Any] = {
            "webhook_id": "webhook_" + secrets.token_hex(8),
            "url": url,
            "events": list(dict.fromkeys(events)),
            "created_at": utcnow_iso(),
            "status": ACTIVE,
            "disabled_reason": None,
            "secret": secret if secret is not None else generated,
        }
        await self.redis.hset(self.k.records, record["webhook_id"], json.dumps(record))
        return _public(record), generated

    async def _record(self, webhook_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.k.records, webhook_id)
        return json.loads(raw) if raw else None

    async def record(self, webhook_id: str) -> dict[str, Any]:
        record = await self._record(webhook_id)
        if record is None:
            raise NotFoundError(f"webhook {webhook_id} not found", {"webhook_id": webhook_id})
        return record

    async def get(self, webhook_id: str) -> dict[str, Any]:
        return _public(await self.record(webhook_id))

    async def _all(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.k.records)
        records = [json.loads(v) for v in raw.values()]
        return sorted(records, key=lambda r: (r["created_at"], r["webhook_id"]))

    async def list_all(self) -> list[dict[str, Any]]:
        return [_public(r) for r in await self._all()]

    async def delete(self, webhook_id: str) -> None:
        if not await self.redis.hdel(self.k.records, webhook_id):
            raise NotFoundError(f"webhook {webhook_id} not found", {"webhook_id": webhook_id})
        await self.redis.zrem(self.k.due, webhook_id)
        await self.redis.delete(*self.k.all_of(webhook_id))

    async def set_status(self, webhook_id: str, status: str, reason: str | None = None) -> None:
        record = await self.record(webhook_id)
        record["status"] = status
        record["disabled_reason"] = reason if status == DISABLED else None
        # Only if it still exists: a concurrent delete wins.
        if await self.redis.hexists(self.k.records, webhook_id):
            await self.redis.hset(self.k.records, webhook_id, json.dumps(record))
        if status == ACTIVE:
            await self.redis.zadd(self.k.due, {webhook_id: time.time()}, nx=True)
            await self._wake()

    async def update(self, webhook_id: str, status: str) -> dict[str, Any]:
        await self.set_status(webhook_id, status, "disabled by a user")
        return await self.get(webhook_id)

    async def _wake(self) -> None:
        await self.redis.lpush(self.k.wake, "1")
        await self.redis.ltrim(self.k.wake, 0, 0)

    # -- test, log, dead letters ------------------------------------------------------------

    async def test(self, webhook_id: str) -> Attempt:
        record = await self.record(webhook_id)
        event_id = "evt_" + secrets.token_hex(12)
        data = {"webhook_id": webhook_id, "message": "a test event from PIVOT"}
        body = event_body(WEBHOOK_TEST, utcnow_iso(), data)
        result = await self.sender.send(record["url"], record["secret"], event_id, body)
        await self._log(webhook_id, event_id, WEBHOOK_TEST, 1, result, "test")
        return result

    async def _log(
        self,
        webhook_id: str,
        event_id: str,
        type_: str,
        attempt: int,
        result: Attempt,
        outcome: str,
        next_attempt_at: float | None = None,
    ) -> None:
        entry = _log_entry(event_id, type_, attempt, result, outcome, next_attempt_at)
        key = self.k.of(webhook_id, "log")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, json.dumps(entry))
            pipe.ltrim(key, 0, self.settings.webhook_log_size - 1)
            await pipe.execute()

    async def deliveries(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        await self.record(webhook_id)
        raw = await self.redis.lrange(self.k.of(webhook_id, "log"), 0, limit - 1)
        return [json.loads(r) for r in raw]

    async def pending(self, webhook_id: str) -> int:
        return int(await self.redis.zcard(self.k.of(webhook_id, "outbox")))

    async def dead_letters(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        await self.record(webhook_id)
        ids = await self.redis.zrange(self.k.of(webhook_id, "dead_order"), 0, limit - 1)
        if not ids:
            return []
        raw = await self.redis.hmget(self.k.of(webhook_id, "dead"), [_s(i) for i in ids])
        out = []
        for item in raw:
            if item:
                letter = json.loads(item)
                out.append(
                    {k: v for k, v in letter.items() if k not in {"body", "score", "member"}}
                )
        return out

    async def redeliver(self, webhook_id: str, event_id: str | None) -> int:
        """Put one dead letter (or all of them) back in the outbox; returns how many."""
        record = await self.record(webhook_id)
        if record["status"] != ACTIVE:
            raise ConflictError(
                f"webhook {webhook_id} is disabled; enable it before redelivering",
                {"webhook_id": webhook_id, "reason": record.get("disabled_reason")},
            )
        dead = self.k.of(webhook_id, "dead")
        if event_id is None:
            ids = [
                _s(i) for i in await self.redis.zrange(self.k.of(webhook_id, "dead_order"), 0, -1)
            ]
        else:
            ids = [event_id]
        moved = 0
        for eid in ids:
            raw = await self.redis.hget(dead, eid)
            if raw is None:
                continue
            letter = json.loads(raw)
            moved += int(
                await self._eval(
                    _REDELIVER,
                    [
                        dead,
                        self.k.of(webhook_id, "dead_order"),
                        self.k.of(webhook_id, "payloads"),
                        self.k.of(webhook_id, "attempts"),
                        self.k.of(webhook_id, "outbox"),
                        self.k.due,
                        self.k.wake,
                        self.k.records,
                    ],
                    eid,
                    letter["body"],
                    letter["score"],
                    letter["member"],
                    webhook_id,
                    time.time(),
                )
            )
        if event_id is not None and not moved:
            raise NotFoundError(
                f"no dead letter {event_id} for webhook {webhook_id}",
                {"webhook_id": webhook_id, "event_id": event_id},
            )
        return moved

    # -- fan-out (every worker) -------------------------------------------------------------

    async def fan_out(self, event: PlatformEvent) -> None:
        """Enqueue the event for every active webhook subscribed to its type."""
        hooks = [
            r
            for r in await self._all()
            if r["status"] == ACTIVE and (event.type in r["events"] or "*" in r["events"])
        ]
        if not hooks:
            return
        body = event_body(event.type, event.timestamp, event.data).decode()
        score, member = order_of(event.stream_id, event.event_id)
        now_ms = int(time.time() * 1000)
        for hook in hooks:
            wid = hook["webhook_id"]
            await self._eval(
                _ENQUEUE,
                [
                    self.k.records,
                    self.k.of(wid, "seen"),
                    self.k.of(wid, "payloads"),
                    self.k.of(wid, "outbox"),
                    self.k.due,
                    self.k.wake,
                ],
                wid,
                event.event_id,
                now_ms,
                now_ms - _SEEN_TTL_MS,
                body,
                score,
                member,
                now_ms / 1000,
            )

    # -- delivery (the leader) --------------------------------------------------------------

    async def run_scheduler(self) -> None:
        """Start a delivery task for every due endpoint that has none; sleep until the next
        is due, an enqueue wakes us, or a task ends."""
        waker = asyncio.create_task(self._waker())
        sem = asyncio.Semaphore(self.settings.webhook_concurrency)
        try:
            while True:
                now = time.time()
                due = await self.redis.zrangebyscore(self.k.due, "-inf", now, start=0, num=1000)
                for raw in due:
                    wid = _s(raw)
                    if wid not in self._running:
                        self._running[wid] = asyncio.create_task(self._work(wid, sem))
                wait = self.settings.webhook_poll_s
                nxt = await self.redis.zrange(self.k.due, 0, 0, withscores=True)
                if nxt and float(nxt[0][1]) > now:
                    wait = min(wait, float(nxt[0][1]) - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), max(wait, 0.001))
                self._kick.clear()
        finally:
            waker.cancel()
            tasks = [waker, *self._running.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._running.clear()

    async def _waker(self) -> None:
        """Turn enqueues made by any worker into a local wake-up of the scheduler."""
        timeout = max(self.settings.webhook_poll_s, 0.1)
        while True:
            try:
                if await self.redis.blpop([self.k.wake], timeout=timeout):
                    self._kick.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the scheduler still polls
                log.debug("webhook waker: %s", exc)
                await asyncio.sleep(timeout)

    async def _work(self, wid: str, sem: asyncio.Semaphore) -> None:
        try:
            while await self._deliver_head(wid, sem):
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            # The endpoint stays due: the scheduler starts it again.
            log.exception("webhook %s: delivery failed", wid)
            await asyncio.sleep(self.settings.webhook_poll_s)
        finally:
            self._running.pop(wid, None)
            self._kick.set()

    async def _deliver_head(self, wid: str, sem: asyncio.Semaphore) -> bool:
        """Try the endpoint's first event; True if the next one may go now."""
        outbox = self.k.of(wid, "outbox")
        keys = [self.k.records, outbox, self.k.of(wid, "payloads"), self.k.of(wid, "attempts")]
        head = await self._eval(_HEAD, keys, wid)
        record = json.loads(head[0]) if head else None
        if record is None or record["status"] != ACTIVE:
            await self.redis.zrem(self.k.due, wid)
            return False
        if len(head) == 1:
            return not await self._eval(_IDLE, [outbox, self.k.due], wid)
        member, score = _s(head[1]), int(float(head[2]))
        event_id = member.partition("|")[2]
        if len(head) < 5:  # nothing to send (should not happen): drop the entry
            await self.redis.zrem(outbox, member)
            return True
        body, attempt = _s(head[3]), int(head[4])
        async with sem:
            result = await self.sender.send(
                record["url"], record["secret"], event_id, body.encode()
            )
        try:
            type_ = str(json.loads(body).get("type", ""))
        except ValueError:
            type_ = ""
        if result.ok:
            return await self._finish(wid, member, event_id, type_, attempt, result, None)
        if result.gone:
            await self._log(wid, event_id, type_, attempt, result, "disabled")
            await self.redis.hdel(self.k.of(wid, "attempts"), event_id)
            await self.set_status(wid, DISABLED, "the receiver answered 410 Gone")
            return False
        if attempt >= self.settings.webhook_max_attempts:
            letter = {
                "event_id": event_id,
                "type": type_,
                "attempts": attempt,
                "last_status_code": result.status_code,
                "last_error": result.error,
                "dead_lettered_at": utcnow_iso(),
                "body": body,
                "score": score,
                "member": member,
            }
            return await self._finish(wid, member, event_id, type_, attempt, result, letter)
        delay = backoff_s(
            attempt, self.settings.webhook_retry_base_s, self.settings.webhook_retry_max_delay_s
        )
        at = time.time() + delay
        if await self.redis.hexists(self.k.records, wid):  # not deleted meanwhile
            await self._log(wid, event_id, type_, attempt, result, "retrying", at)
            await self.redis.zadd(self.k.due, {wid: at})
        return False

    async def _finish(
        self,
        wid: str,
        member: str,
        event_id: str,
        type_: str,
        attempt: int,
        result: Attempt,
        letter: dict[str, Any] | None,
    ) -> bool:
        """Take the head off the outbox, logged (and dead-lettered if `letter`); False if
        the webhook was deleted meanwhile."""
        outcome = "dead_lettered" if letter else "delivered"
        entry = _log_entry(event_id, type_, attempt, result, outcome, None)
        done = await self._eval(
            _FINISH,
            [
                self.k.of(wid, "outbox"),
                self.k.of(wid, "payloads"),
                self.k.of(wid, "attempts"),
                self.k.due,
                self.k.of(wid, "dead"),
                self.k.of(wid, "dead_order"),
                self.k.of(wid, "log"),
                self.k.records,
            ],
            member,
            event_id,
            wid,
            time.time(),
            json.dumps(letter) if letter else "",
            self.settings.webhook_dead_letter_size,
            json.dumps(entry),
            self.settings.webhook_log_size,
        )
        return bool(done)

    async def aclose(self) -> None:
        await self.sender.aclose()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _log_entry(
    event_id: str,
    type_: str,
    attempt: int,
    result: Attempt,
    outcome: str,
    next_attempt_at: float | None,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "attempt": attempt,
        "outcome": outcome,
        "status_code": result.status_code,
        "error": result.error,
        "duration_ms": result.duration_ms,
        "attempted_at": utcnow_iso(),
        "next_attempt_at": _iso(next_attempt_at) if next_attempt_at else None,
    }
