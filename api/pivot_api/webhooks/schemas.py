"""Bodies of the webhook routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The event types a webhook may subscribe to (pivot_api.events), or "*".
WebhookEvent = Literal[
    "training_started",
    "training_completed",
    "training_failed",
    "training_stopped",
    "training_preempted",
    "training_resumed",
    "alert_triggered",
    "alert_resolved",
    "system_event",
    "*",
]
WebhookStatus = Literal["active", "disabled"]


def _drop_null(schema: dict[str, Any]) -> None:
    """Optional request fields are absent-or-valued, not nullable (as for sessions)."""
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            del prop["anyOf"]
            prop.update(rest[0])
            prop.pop("default", None)


class CreateWebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_drop_null)

    url: str = Field(
        min_length=8,
        max_length=2048,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://",
        description="Where events are POSTed: http(s), not to a loopback, link-local, "
        "private or metadata address unless the server's allowlist permits it.",
    )
    events: list[WebhookEvent] = Field(min_length=1, max_length=16)
    secret: str | None = Field(
        default=None,
        min_length=8,
        max_length=256,
        description="Signing secret: whsec_<base64> (Standard Webhooks) or any string, used "
        "as its UTF-8 bytes. Omitted: one is generated and returned once.",
    )


class UpdateWebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: WebhookStatus


class Webhook(BaseModel):
    webhook_id: str
    url: str
    events: list[str]
    created_at: str
    status: WebhookStatus
    # Why a disabled webhook was disabled (a user, or a receiver's 410 Gone).
    disabled_reason: str | None = None


class WebhookCreated(Webhook):
    # The generated secret, shown this once (null when the request gave one).
    secret: str | None = None


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class WebhookTestResult(BaseModel):
    success: bool
    status_code: int | None = None
    response_time_ms: float
    error: str | None = None


class WebhookDelivery(BaseModel):
    event_id: str
    type: str
    attempt: int
    # delivered | retrying | dead_lettered | disabled (the receiver said 410) | test
    outcome: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: float
    attempted_at: str
    next_attempt_at: str | None = None


class WebhookDeliveryList(BaseModel):
    webhook_id: str
    # Events waiting in the outbox (the head is being delivered or retried).
    pending: int
    deliveries: list[WebhookDelivery]


class WebhookDeadLetter(BaseModel):
    event_id: str
    type: str
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    dead_lettered_at: str


class WebhookDeadLetterList(BaseModel):
    webhook_id: str
    dead_letters: list[WebhookDeadLetter]


class WebhookRedelivered(BaseModel):
    webhook_id: str
    redelivered: int
