"""Notifications are made from the platform event bus by a consumer group read in every
worker, so each event becomes one notification however many workers run."""

from __future__ import annotations

from typing import Any

from pivot_api.events import EventConsumer
from pivot_api.notifications.service import NotificationStore

GROUP = "notifications"


def notification_consumer(store: NotificationStore, **options: Any) -> EventConsumer:
    return EventConsumer(store.redis, store.keys, GROUP, store.handle, **options)
