"""The platform event bus: one Redis Stream of what happened (training lifecycle, alerts,
system), which notifications and webhook deliveries consume.

Producers append with `publish`, or with `publish_transition` when several workers may
observe the same change: that one appends only if the subject's recorded state differs,
atomically in Redis, so a change is published once however many observers saw it.
Consumers read with a consumer group (`EventConsumer`), so each event is handled once per
group across all workers, acknowledged only after it was handled, and claimed by another
worker if the one handling it died.

Every key lives under `pivot_schema.keys.ApiKeys(namespace)`: one Redis can serve several
installs (and tests) without their alerts, webhooks or events meeting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from pivot_api.redis_util import flat, reraise_cancellation, script, text, utcnow_iso
from pivot_schema.keys import ApiKeys

log = logging.getLogger(__name__)

# Event types (webhook `events` and notification sources use these names).
TRAINING_STARTED = "training_started"
TRAINING_COMPLETED = "training_completed"
TRAINING_FAILED = "training_failed"
TRAINING_STOPPED = "training_stopped"
TRAINING_PREEMPTED = "training_preempted"
TRAINING_RESUMED = "training_resumed"
ALERT_TRIGGERED = "alert_triggered"
ALERT_RESOLVED = "alert_resolved"
SYSTEM_EVENT = "system_event"
EVENT_TYPES = frozenset(
    {
        TRAINING_STARTED,
        TRAINING_COMPLETED,
        TRAINING_FAILED,
        TRAINING_STOPPED,
        TRAINING_PREEMPTED,
        TRAINING_RESUMED,
        ALERT_TRIGGERED,
        ALERT_RESOLVED,
        SYSTEM_EVENT,
    }
)

# The bus keeps about this many events; consumers far behind lose the oldest.
STREAM_MAXLEN = 100_000


@dataclass(frozen=True)
class PlatformEvent:
    type: str
    data: dict[str, Any]
    # Stable across retries and redeliveries (Standard Webhooks' webhook-id).
    event_id: str
    timestamp: str
    # The bus entry id; empty for an event not read from the bus.
    stream_id: str = ""

    def fields(self) -> dict[str, str]:
        return {
            "type": self.type,
            "event_id": self.event_id,
            "timestamp": self.timestamp,
            "data": json.dumps(self.data, separators=(",", ":"), default=str),
        }

    @classmethod
    def from_fields(cls, stream_id: str, raw: dict[Any, Any]) -> PlatformEvent:
        f = {text(k): text(v) for k, v in raw.items()}
        try:
            data = json.loads(f.get("data") or "{}")
        except ValueError:
            data = {}
        return cls(
            type=f.get("type", ""),
            data=data if isinstance(data, dict) else {"value": data},
            event_id=f.get("event_id") or f"evt_{stream_id}",
            timestamp=f.get("timestamp", ""),
            stream_id=stream_id,
        )


def new_event(type_: str, data: dict[str, Any]) -> PlatformEvent:
    return PlatformEvent(type_, data, f"evt_{secrets.token_hex(12)}", utcnow_iso())


async def publish(redis: Redis, keys: ApiKeys, type_: str, data: dict[str, Any]) -> PlatformEvent:
    event = new_event(type_, data)
    stream_id = await redis.xadd(
        keys.events,
        event.fields(),  # type: ignore[arg-type]
        maxlen=STREAM_MAXLEN,
        approximate=True,
    )
    return PlatformEvent(event.type, event.data, event.event_id, event.timestamp, text(stream_id))


# Append the event only if the subject's recorded state is not already `state`.
_TRANSITION = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return false end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then return false end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
"""


async def publish_transition(
    redis: Redis,
    keys: ApiKeys,
    *,
    kind: str,
    subject: str,
    state: str,
    type_: str | None,
    data: dict[str, Any] | None = None,
) -> PlatformEvent | None:
    """Record `subject`'s new `state` and publish `type_` if the state changed.

    `type_=None` records the state silently (first sighting of an old session). Returns
    the published event, or None when another observer had already recorded this state.
    """
    event = new_event(type_ or "", data or {})
    stream_id = await script(redis, _TRANSITION)(
        keys=[keys.transitions(kind), keys.events],
        args=[subject, state, type_ or "", str(STREAM_MAXLEN), *flat(event.fields())],
    )
    if not stream_id:
        return None
    return PlatformEvent(event.type, event.data, event.event_id, event.timestamp, text(stream_id))


async def forget_transitions(redis: Redis, keys: ApiKeys, kind: str, subjects: list[str]) -> None:
    if subjects:
        await redis.hdel(keys.transitions(kind), *subjects)


Handler = Callable[[PlatformEvent], Awaitable[None]]


@dataclass
class EventConsumer:
    """Reads the bus as one member of a consumer group and hands each event to `handler`.

    An event is acknowledged after its handler returns; if the handler raises, the event
    stays pending and is retried (by this worker after `retry_after_ms`, or by any other
    worker of the group if this one died). A group created now starts at the bus's end:
    events from before a feature was switched on are not replayed.
    """

    redis: Redis
    keys: ApiKeys
    group: str
    handler: Handler
    consumer: str = field(default_factory=lambda: f"c-{secrets.token_hex(6)}")
    block_ms: int = 1000
    batch: int = 100
    retry_after_ms: int = 5000

    async def ensure_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self.redis.xgroup_create(self.keys.events, self.group, id="$", mkstream=True)

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self.ensure_group()
                while True:
                    await self.step()
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                reraise_cancellation()
                log.warning("event consumer %s: %s; retrying in %.1fs", self.group, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def step(self) -> int:
        """Handle what is due now: stale pending events first, then new ones. Returns how
        many events were handled."""
        handled = 0
        # Events another (dead) consumer took but never acknowledged, or our own retries.
        claimed = await self.redis.xautoclaim(
            self.keys.events,
            self.group,
            self.consumer,
            min_idle_time=self.retry_after_ms,
            start_id="0-0",
            count=self.batch,
        )
        entries: list[Any] = list(claimed[1]) if claimed else []
        for stream_id, raw in entries:
            if raw is not None:
                handled += await self._handle(text(stream_id), raw)
        reply: Any
        try:
            reply = await self.redis.xreadgroup(
                self.group,
                self.consumer,
                {self.keys.events: ">"},
                count=self.batch,
                block=self.block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return handled
        for _, items in reply or []:
            for stream_id, raw in items:
                handled += await self._handle(text(stream_id), raw)
        return handled

    async def _handle(self, stream_id: str, raw: dict[Any, Any]) -> int:
        event = PlatformEvent.from_fields(stream_id, raw)
        try:
            await self.handler(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            reraise_cancellation()
            log.exception("event consumer %s: handling %s failed", self.group, stream_id)
            return 0
        await self.redis.xack(self.keys.events, self.group, stream_id)
        return 1
