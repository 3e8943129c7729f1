"""Bodies of the notification routes (the reference's Notification model)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

NotificationType = Literal["training", "alert", "system"]
Priority = Literal["low", "medium", "high"]


class Notification(BaseModel):
    id: str
    type: NotificationType
    priority: Priority
    message: str
    data: dict[str, Any]
    read: bool = False
    created_at: str
    # The platform event it was made from (the webhook-id of the same event's delivery).
    event_type: str | None = None


class NotificationList(BaseModel):
    notifications: list[Notification]
    # Unread notifications in store, whatever the filters.
    unread_count: int
