from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic.json_schema import SkipJsonSchema

from pivot_api.deps import Notifications
from pivot_api.notifications.schemas import (
    Notification,
    NotificationList,
    NotificationType,
    Priority,
)
from pivot_api.schemas import ErrorResponse, MessageResponse

router = APIRouter(
    prefix="/notifications",
    tags=["notifications"],
    responses={422: {"model": ErrorResponse, "description": "Validation error"}},
)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such notification"}
}


@router.get("", response_model=NotificationList)
async def list_notifications(
    notifications: Notifications,
    type: NotificationType | SkipJsonSchema[None] = None,  # the reference's name
    priority: Priority | SkipJsonSchema[None] = None,
    unread: Annotated[
        bool | SkipJsonSchema[None],
        Query(description="true: unread ones only; false: read ones only."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> NotificationList:
    """Notifications, newest first."""
    return await notifications.list(type_=type, priority=priority, unread=unread, limit=limit)


@router.post("/{notification_id}/read", response_model=Notification, responses=_NOT_FOUND)
async def mark_read(notification_id: str, notifications: Notifications) -> Notification:
    return await notifications.mark_read(notification_id)


@router.delete("", response_model=MessageResponse)
async def clear_notifications(notifications: Notifications) -> MessageResponse:
    cleared = await notifications.clear()
    return MessageResponse(message=f"cleared {cleared} notification(s)")
