"""Webhooks in Redis: registrations, one outbox per webhook, the delivery log and dead letters.

Flow: the platform event bus → `fan_out` (a consumer group, run in every worker) → one
outbox per webhook in Redis → the delivery scheduler (pivot_api.webhooks.tasks, one worker:
the leader) → the receiver (pivot_api.webhooks.sender, signed by pivot_api.webhooks.signing).

- An outbox is a sorted set ordered by the bus entry id, so an endpoint gets events in the
  order they happened even though several workers fan out concurrently; enqueueing is
  idempotent on the event id (a bus entry handled twice is enqueued once).
- Every change that touches more than one key is one Lua script, so a delete, a redelivery
  and a delivery racing each other leave the keys consistent. The keys are built in
  `pivot_schema.keys.ApiKeys`.
"""

from __future__ import annotations

import binascii
import json
import secrets
import time
from typing import Any

from redis.asyncio import Redis

from pivot_api.errors import ConflictError, NotFoundError, ValidationError
from pivot_api.events import PlatformEvent
from pivot_api.redis_util import iso_ms, script, text, utcnow_iso
from pivot_api.settings import Settings
from pivot_api.webhooks.sender import Attempt, Sender
from pivot_api.webhooks.signing import event_body, new_secret, secret_key
from pivot_api.webhooks.ssrf import UnsafeURLError
from pivot_schema.keys import ApiKeys

WEBHOOK_TEST = "webhook_test"
ACTIVE = "active"
DISABLED = "disabled"
# How long an event id is remembered per webhook to keep enqueueing idempotent; bus entries
# are re-handled within seconds of a failure, so a day is ample.
_SEEN_TTL_MS = 24 * 3600 * 1000

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


def log_entry(
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
        "next_attempt_at": iso_ms(next_attempt_at) if next_attempt_at else None,
    }


class WebhookService:
    def __init__(self, redis: Redis, keys: ApiKeys, settings: Settings) -> None:
        self.redis = redis
        self.k = keys
        self.settings = settings
        self.sender = Sender(settings)

    async def _run(self, source: str, keys: list[str], *args: Any) -> Any:
        return await script(self.redis, source)(keys=keys, args=args)

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
        if await self.redis.hlen(self.k.webhook_records) >= self.settings.webhook_max_count:
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
        await self.redis.hset(self.k.webhook_records, record["webhook_id"], json.dumps(record))
        return _public(record), generated

    async def _record(self, webhook_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.k.webhook_records, webhook_id)
        return json.loads(raw) if raw else None

    async def record(self, webhook_id: str) -> dict[str, Any]:
        record = await self._record(webhook_id)
        if record is None:
            raise NotFoundError(f"webhook {webhook_id} not found", {"webhook_id": webhook_id})
        return record

    async def get(self, webhook_id: str) -> dict[str, Any]:
        return _public(await self.record(webhook_id))

    async def _all(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.k.webhook_records)
        records = [json.loads(v) for v in raw.values()]
        return sorted(records, key=lambda r: (r["created_at"], r["webhook_id"]))

    async def list_all(self) -> list[dict[str, Any]]:
        return [_public(r) for r in await self._all()]

    async def delete(self, webhook_id: str) -> None:
        if not await self.redis.hdel(self.k.webhook_records, webhook_id):
            raise NotFoundError(f"webhook {webhook_id} not found", {"webhook_id": webhook_id})
        await self.redis.zrem(self.k.webhooks_due, webhook_id)
        await self.redis.delete(*self.k.webhook_keys(webhook_id))

    async def set_status(self, webhook_id: str, status: str, reason: str | None = None) -> None:
        record = await self.record(webhook_id)
        record["status"] = status
        record["disabled_reason"] = reason if status == DISABLED else None
        # Only if it still exists: a concurrent delete wins.
        if await self.redis.hexists(self.k.webhook_records, webhook_id):
            await self.redis.hset(self.k.webhook_records, webhook_id, json.dumps(record))
        if status == ACTIVE:
            await self.redis.zadd(self.k.webhooks_due, {webhook_id: time.time()}, nx=True)
            await self._wake()

    async def update(self, webhook_id: str, status: str) -> dict[str, Any]:
        await self.set_status(webhook_id, status, "disabled by a user")
        return await self.get(webhook_id)

    async def _wake(self) -> None:
        await self.redis.lpush(self.k.webhooks_wake, "1")
        await self.redis.ltrim(self.k.webhooks_wake, 0, 0)

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
        entry = log_entry(event_id, type_, attempt, result, outcome, next_attempt_at)
        key = self.k.webhook(webhook_id, "log")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, json.dumps(entry))
            pipe.ltrim(key, 0, self.settings.webhook_log_size - 1)
            await pipe.execute()

    async def deliveries(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        await self.record(webhook_id)
        raw = await self.redis.lrange(self.k.webhook(webhook_id, "log"), 0, limit - 1)
        return [json.loads(r) for r in raw]

    async def pending(self, webhook_id: str) -> int:
        return int(await self.redis.zcard(self.k.webhook(webhook_id, "outbox")))

    async def dead_letters(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        await self.record(webhook_id)
        ids = await self.redis.zrange(self.k.webhook(webhook_id, "dead_order"), 0, limit - 1)
        if not ids:
            return []
        raw = await self.redis.hmget(self.k.webhook(webhook_id, "dead"), [text(i) for i in ids])
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
        dead = self.k.webhook(webhook_id, "dead")
        if event_id is None:
            ids = [
                text(i)
                for i in await self.redis.zrange(self.k.webhook(webhook_id, "dead_order"), 0, -1)
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
                await self._run(
                    _REDELIVER,
                    [
                        dead,
                        self.k.webhook(webhook_id, "dead_order"),
                        self.k.webhook(webhook_id, "payloads"),
                        self.k.webhook(webhook_id, "attempts"),
                        self.k.webhook(webhook_id, "outbox"),
                        self.k.webhooks_due,
                        self.k.webhooks_wake,
                        self.k.webhook_records,
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
            await self._run(
                _ENQUEUE,
                [
                    self.k.webhook_records,
                    self.k.webhook(wid, "seen"),
                    self.k.webhook(wid, "payloads"),
                    self.k.webhook(wid, "outbox"),
                    self.k.webhooks_due,
                    self.k.webhooks_wake,
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

    # -- what the delivery scheduler reads and writes -----------------------------------------

    async def due(self, now: float) -> list[str]:
        """Webhooks whose outbox is due by `now`."""
        due = await self.redis.zrangebyscore(self.k.webhooks_due, "-inf", now, start=0, num=1000)
        return [text(w) for w in due]

    async def next_due(self) -> float | None:
        """When the first outbox is due (None: none is scheduled)."""
        nxt = await self.redis.zrange(self.k.webhooks_due, 0, 0, withscores=True)
        return float(nxt[0][1]) if nxt else None

    async def wait_wake(self, timeout_s: float) -> bool:
        """Block until something was enqueued by any worker (True) or the timeout passed."""
        return bool(await self.redis.blpop([self.k.webhooks_wake], timeout=timeout_s))

    async def head(self, wid: str) -> list[Any]:
        """The endpoint's record and first event, counting the attempt about to be made:
        [] (no such webhook), [record] (empty outbox), [record, member, score] (no
        payload), or [record, member, score, body, attempt]."""
        keys = [
            self.k.webhook_records,
            self.k.webhook(wid, "outbox"),
            self.k.webhook(wid, "payloads"),
            self.k.webhook(wid, "attempts"),
        ]
        return list(await self._run(_HEAD, keys, wid) or [])

    async def unschedule(self, wid: str) -> None:
        await self.redis.zrem(self.k.webhooks_due, wid)

    async def unschedule_if_idle(self, wid: str) -> bool:
        """Unschedule the endpoint if its outbox is empty; True if it was."""
        keys = [self.k.webhook(wid, "outbox"), self.k.webhooks_due]
        return bool(await self._run(_IDLE, keys, wid))

    async def drop(self, wid: str, member: str) -> None:
        await self.redis.zrem(self.k.webhook(wid, "outbox"), member)

    async def gone(
        self, wid: str, event_id: str, type_: str, attempt: int, result: Attempt
    ) -> None:
        """The receiver answered 410 Gone: disable the webhook (its events stay queued)."""
        await self._log(wid, event_id, type_, attempt, result, "disabled")
        await self.redis.hdel(self.k.webhook(wid, "attempts"), event_id)
        await self.set_status(wid, DISABLED, "the receiver answered 410 Gone")

    async def retry_at(
        self, wid: str, event_id: str, type_: str, attempt: int, result: Attempt, at: float
    ) -> None:
        if await self.redis.hexists(self.k.webhook_records, wid):  # not deleted meanwhile
            await self._log(wid, event_id, type_, attempt, result, "retrying", at)
            await self.redis.zadd(self.k.webhooks_due, {wid: at})

    async def finish(
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
        entry = log_entry(event_id, type_, attempt, result, outcome, None)
        done = await self._run(
            _FINISH,
            [
                self.k.webhook(wid, "outbox"),
                self.k.webhook(wid, "payloads"),
                self.k.webhook(wid, "attempts"),
                self.k.webhooks_due,
                self.k.webhook(wid, "dead"),
                self.k.webhook(wid, "dead_order"),
                self.k.webhook(wid, "log"),
                self.k.webhook_records,
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
