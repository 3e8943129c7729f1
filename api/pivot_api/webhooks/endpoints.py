"""Webhooks: register, list, inspect, test, and recover what could not be delivered."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from pivot_api.deps import Webhooks
from pivot_api.schemas import ErrorResponse, MessageResponse
from pivot_api.webhooks.schemas import (
    CreateWebhookRequest,
    UpdateWebhookRequest,
    Webhook,
    WebhookCreated,
    WebhookDeadLetter,
    WebhookDeadLetterList,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookList,
    WebhookRedelivered,
    WebhookTestResult,
)

WebhookId = Annotated[str, Path(min_length=1, max_length=64)]

router = APIRouter(
    prefix="/webhooks",
    tags=["webhooks"],
    responses={422: {"model": ErrorResponse, "description": "Validation error"}},
)

Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: Responses = {404: {"model": ErrorResponse, "description": "No such webhook"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses={409: {"model": ErrorResponse, "description": "Too many webhooks"}},
)
async def create_webhook(body: CreateWebhookRequest, webhooks: Webhooks) -> WebhookCreated:
    """Register a receiver. Its URL is checked against the SSRF rules now and before every
    delivery. Without a `secret`, one is generated and returned in this response only."""
    record, generated = await webhooks.create(body.url, list(body.events), body.secret)
    return WebhookCreated(**record, secret=generated)


@router.get("", response_model=WebhookList)
async def list_webhooks(webhooks: Webhooks) -> WebhookList:
    return WebhookList(webhooks=[Webhook(**r) for r in await webhooks.list_all()])


@router.get("/{webhook_id}", response_model=Webhook, responses=_NOT_FOUND)
async def get_webhook(webhook_id: WebhookId, webhooks: Webhooks) -> Webhook:
    return Webhook(**await webhooks.get(webhook_id))


@router.patch("/{webhook_id}", response_model=Webhook, responses=_NOT_FOUND)
async def update_webhook(
    webhook_id: WebhookId, body: UpdateWebhookRequest, webhooks: Webhooks
) -> Webhook:
    """Enable or disable a webhook. Enabling one resumes delivery of its outbox."""
    return Webhook(**await webhooks.update(webhook_id, body.status))


@router.delete("/{webhook_id}", response_model=MessageResponse, responses=_NOT_FOUND)
async def delete_webhook(webhook_id: WebhookId, webhooks: Webhooks) -> MessageResponse:
    """Remove the webhook with its outbox, delivery log and dead letters."""
    await webhooks.delete(webhook_id)
    return MessageResponse(message=f"webhook {webhook_id} deleted")


@router.post("/{webhook_id}/test", response_model=WebhookTestResult, responses=_NOT_FOUND)
async def test_webhook(webhook_id: WebhookId, webhooks: Webhooks) -> WebhookTestResult:
    """Send a signed `webhook_test` event now and report how the receiver answered; a
    receiver that is down, slow or refused by the SSRF rules gives `success: false`."""
    result = await webhooks.test(webhook_id)
    return WebhookTestResult(
        success=result.ok,
        status_code=result.status_code,
        response_time_ms=result.duration_ms,
        error=result.error,
    )


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveryList, responses=_NOT_FOUND)
async def list_deliveries(
    webhook_id: WebhookId,
    webhooks: Webhooks,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> WebhookDeliveryList:
    """The delivery log, newest attempt first (the last few hundred are kept)."""
    entries = await webhooks.deliveries(webhook_id, limit)
    return WebhookDeliveryList(
        webhook_id=webhook_id,
        pending=await webhooks.pending(webhook_id),
        deliveries=[WebhookDelivery(**e) for e in entries],
    )


@router.get(
    "/{webhook_id}/dead-letters", response_model=WebhookDeadLetterList, responses=_NOT_FOUND
)
async def list_dead_letters(
    webhook_id: WebhookId,
    webhooks: Webhooks,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> WebhookDeadLetterList:
    """Events that ran out of attempts, oldest first."""
    letters = await webhooks.dead_letters(webhook_id, limit)
    return WebhookDeadLetterList(
        webhook_id=webhook_id, dead_letters=[WebhookDeadLetter(**d) for d in letters]
    )


_REDELIVER: Responses = {
    **_NOT_FOUND,
    409: {"model": ErrorResponse, "description": "The webhook is disabled"},
}


@router.post(
    "/{webhook_id}/dead-letters/redeliver",
    response_model=WebhookRedelivered,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_REDELIVER,
)
async def redeliver_all(webhook_id: WebhookId, webhooks: Webhooks) -> WebhookRedelivered:
    """Queue every dead letter again, in the order the events happened."""
    moved = await webhooks.redeliver(webhook_id, None)
    return WebhookRedelivered(webhook_id=webhook_id, redelivered=moved)


@router.post(
    "/{webhook_id}/dead-letters/{event_id}/redeliver",
    response_model=WebhookRedelivered,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_REDELIVER,
)
async def redeliver_one(
    webhook_id: WebhookId,
    event_id: Annotated[str, Path(min_length=1, max_length=128)],
    webhooks: Webhooks,
) -> WebhookRedelivered:
    """Queue one dead letter again (same `webhook-id`, a fresh set of attempts)."""
    moved = await webhooks.redeliver(webhook_id, event_id)
    return WebhookRedelivered(webhook_id=webhook_id, redelivered=moved)
