"""Notifications: the platform events a person wants to read (a session finished, failed or
was preempted, an alert fired or cleared, a system event), kept in Redis.

Made by a consumer group on the platform bus, so each event becomes one notification however
many workers run; the notification id comes from the event id, so a redelivered event (a
worker died before acknowledging it) overwrites nothing and adds nothing.

Redis layout (built by `pivot_schema.keys.ApiKeys`):
    notification_index      zset  ids by creation time
    notification(<id>)      hash  one notification
    notifications_unread    set   ids not yet read
"""

from __future__ import annotations

import json
import logging
import time

from redis.asyncio import Redis

from pivot_api.errors import NotFoundError
from pivot_api.events import (
    ALERT_RESOLVED,
    ALERT_TRIGGERED,
    SYSTEM_EVENT,
    TRAINING_COMPLETED,
    TRAINING_FAILED,
    TRAINING_PREEMPTED,
    TRAINING_RESUMED,
    TRAINING_STOPPED,
    PlatformEvent,
)
from pivot_api.notifications.schemas import Notification, NotificationList
from pivot_api.redis_util import text
from pivot_schema.keys import ApiKeys

log = logging.getLogger(__name__)

_TRAINING = {
    TRAINING_COMPLETED: ("high", "completed"),
    TRAINING_FAILED: ("high", "failed"),
    TRAINING_STOPPED: ("medium", "stopped"),
    TRAINING_PREEMPTED: ("medium", "preempted"),
    TRAINING_RESUMED: ("low", "resumed"),
}
_SEVERITY_PRIORITY = {"critical": "high", "high": "high", "medium": "medium", "low": "low"}
_TRAINING_DATA = (
    "session_id",
    "session_name",
    "status",
    "tags",
    "epoch",
    "total_epochs",
    "message",
    "final_metrics",
    "preemptions",
)
_ALERT_DATA = (
    "alert_id",
    "rule_id",
    "rule_name",
    "severity",
    "metric",
    "condition",
    "value",
    "threshold",
    "session_id",
    "subject",
    "status",
    "action",
)


def notification_for(event: PlatformEvent) -> Notification | None:
    """The notification an event makes, or None for events nobody needs to read about
    (a session starting is what its owner just did)."""
    d = event.data
    notif_id = "notif_" + event.event_id.removeprefix("evt_")
    created = event.timestamp
    if event.type in _TRAINING:
        priority, verb = _TRAINING[event.type]
        session = d.get("session_id") or "?"
        message = f"Training session {session} {verb}"
        if event.type == TRAINING_FAILED and d.get("message"):
            message += f": {d['message']}"
        data = {k: d[k] for k in _TRAINING_DATA if d.get(k) is not None}
        data.setdefault("final_metrics", {})
        return Notification(
            id=notif_id,
            type="training",
            priority=priority,  # type: ignore[arg-type]
            message=message,
            data=data,
            created_at=created,
            event_type=event.type,
        )
    if event.type in (ALERT_TRIGGERED, ALERT_RESOLVED):
        data = {k: d[k] for k in _ALERT_DATA if d.get(k) is not None}
        name = d.get("rule_name") or d.get("rule_id") or "alert"
        if event.type == ALERT_TRIGGERED:
            priority = _SEVERITY_PRIORITY.get(str(d.get("severity")), "medium")
            message = f"Alert {name}: {d.get('message') or 'triggered'}"
        else:
            priority = "low"
            message = f"Alert {name} resolved"
        return Notification(
            id=notif_id,
            type="alert",
            priority=priority,  # type: ignore[arg-type]
            message=message,
            data=data,
            created_at=created,
            event_type=event.type,
        )
    if event.type == SYSTEM_EVENT:
        priority = str(d.get("priority") or "medium")
        return Notification(
            id=notif_id,
            type="system",
            priority=priority if priority in ("low", "medium", "high") else "medium",  # type: ignore[arg-type]
            message=str(d.get("message") or "system event"),
            data=d,
            created_at=created,
            event_type=event.type,
        )
    return None


class NotificationStore:
    def __init__(self, redis: Redis, keys: ApiKeys, *, max_notifications: int = 10_000) -> None:
        self.redis = redis
        self.keys = keys
        self.max_notifications = max_notifications
        self.index_key = keys.notification_index
        self.unread_key = keys.notifications_unread
        self.record_key = keys.notification

    async def handle(self, event: PlatformEvent) -> None:
        notification = notification_for(event)
        if notification is not None:
            await self.add(notification)

    async def add(self, n: Notification) -> bool:
        """Store a notification; False if one with its id is already stored."""
        if not await self.redis.zadd(self.index_key, {n.id: time.time()}, nx=True):
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.record_key(n.id),
            mapping={
                "id": n.id,
                "type": n.type,
                "priority": n.priority,
                "message": n.message,
                "data": json.dumps(n.data, default=str),
                "created_at": n.created_at,
                "event_type": n.event_type or "",
            },
        )
        pipe.sadd(self.unread_key, n.id)
        await pipe.execute()
        await self._trim()
        return True

    async def _trim(self) -> None:
        extra = await self.redis.zcard(self.index_key) - self.max_notifications
        if extra > 0:
            await self._delete(
                [text(i) for i in await self.redis.zrange(self.index_key, 0, extra - 1)]
            )

    async def _delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(*(self.record_key(i) for i in chunk))
            pipe.zrem(self.index_key, *chunk)
            pipe.srem(self.unread_key, *chunk)
            await pipe.execute()

    async def _load(self, ids: list[str]) -> list[Notification]:
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.record_key(i))
        pipe.smismember(self.unread_key, ids)
        *raws, unread = await pipe.execute()
        out = []
        for raw, is_unread in zip(raws, unread, strict=True):
            f = {text(k): text(v) for k, v in raw.items()}
            if "id" not in f:
                continue  # trimmed or cleared between the index read and this one
            try:
                data = json.loads(f.get("data") or "{}")
            except ValueError:
                data = {}
            out.append(
                Notification(
                    id=f["id"],
                    type=f["type"],  # type: ignore[arg-type]
                    priority=f["priority"],  # type: ignore[arg-type]
                    message=f.get("message", ""),
                    data=data if isinstance(data, dict) else {},
                    read=not is_unread,
                    created_at=f.get("created_at", ""),
                    event_type=f.get("event_type") or None,
                )
            )
        return out

    async def list(
        self, *, type_: str | None, priority: str | None, unread: bool | None, limit: int
    ) -> NotificationList:
        """Newest first. `unread=True`: unread ones only; `False`: read ones only."""
        found: list[Notification] = []
        start = 0
        page = 500
        while len(found) < limit:
            ids = [
                text(i) for i in await self.redis.zrevrange(self.index_key, start, start + page - 1)
            ]
            if not ids:
                break
            start += page
            for n in await self._load(ids):
                if type_ is not None and n.type != type_:
                    continue
                if priority is not None and n.priority != priority:
                    continue
                if unread is not None and n.read == unread:
                    continue
                found.append(n)
                if len(found) >= limit:
                    break
        return NotificationList(
            notifications=found,
            unread_count=await self.redis.scard(self.unread_key),  # type: ignore[misc]
        )

    async def mark_read(self, notif_id: str) -> Notification:
        if not notif_id.startswith("notif_") or not await self.redis.exists(
            self.record_key(notif_id)
        ):
            raise NotFoundError(
                f"notification not found: {notif_id}", {"notification_id": notif_id}
            )
        await self.redis.srem(self.unread_key, notif_id)  # type: ignore[misc]
        found = await self._load([notif_id])
        if not found:  # cleared in between
            raise NotFoundError(
                f"notification not found: {notif_id}", {"notification_id": notif_id}
            )
        return found[0]

    async def clear(self) -> int:
        ids = [text(i) for i in await self.redis.zrange(self.index_key, 0, -1)]
        await self._delete(ids)
        return len(ids)
