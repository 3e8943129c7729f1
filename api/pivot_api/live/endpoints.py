"""Live training updates: Server-Sent Events and WebSocket, one session each."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from pivot_api.deps import Feed, Live, live_service
from pivot_api.errors import PivotError
from pivot_api.live.feed import parse_position
from pivot_api.live.service import (
    EVENT_ID_PATTERN,
    HEARTBEAT,
    METRICS,
    Cursor,
    LiveEvent,
    LiveService,
    loss_of,
)
from pivot_api.schemas import ErrorResponse

router = APIRouter(tags=["live"])

EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN)]

# How soon an EventSource reconnects after the connection drops.
_RETRY_MS = 1000


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def sse_frame(event: LiveEvent) -> str:
    if event.kind == HEARTBEAT:
        return ": heartbeat\n\n"
    frame = event.frames.get("sse")
    if frame is None:  # encoded once, whatever the number of clients sharing the event
        head = f"id: {event.id}\n" if event.id is not None else ""
        frame = event.frames["sse"] = f"{head}event: {event.kind}\ndata: {_json(event.data)}\n\n"
    return frame


async def _sse_body(live: LiveService, session_id: str, cursor: Cursor) -> AsyncIterator[str]:
    yield f"retry: {_RETRY_MS}\n\n"
    async for event in live.events(session_id, cursor):
        yield sse_frame(event)


_SSE_EXAMPLE = (
    "retry: 1000\n\n"
    "id: 0-0_1734605405000-0\nevent: status\n"
    'data: {"epoch":1,"timestamp":"2025-12-19T10:30:05Z","session_id":"sess-abc123",'
    '"event":"started","status":"running"}\n\n'
    "id: 1734605460000-0_1734605405000-0\nevent: metrics\n"
    'data: {"epoch":1,"timestamp":"2025-12-19T10:31:00Z","train_loss":0.856,'
    '"val_loss":0.912,"learning_rate":0.001,"loss":0.912}\n\n'
    ": heartbeat\n\n"
)


@router.get(
    "/sse/training/{session_id}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"example": _SSE_EXAMPLE}},
            "description": "Server-Sent Events; `id:` resumes the stream (Last-Event-ID).\n\n"
            "- `metrics`: an epoch record with `epoch` and `loss` "
            "(schema LiveMetricsEvent)\n"
            "- `status`: the session's status (schema LiveStatusEvent); the stream ends "
            "after a final one\n"
            "- `checkpoint`: a checkpoint was saved (the trainer's event: `checkpoint_id`, "
            "`epoch`...)\n\n"
            "Comment lines (`: heartbeat`) keep an idle connection open. The WebSocket "
            "`/ws/training/{session_id}` sends the same events as JSON messages with a "
            "`type`; its `metrics` messages are LiveMetricsMessage.",
        },
        404: {"model": ErrorResponse, "description": "No such session"},
    },
    openapi_extra={
        "x-sse-events": {
            "metrics": {"$ref": "#/components/schemas/LiveMetricsEvent"},
            "status": {"$ref": "#/components/schemas/LiveStatusEvent"},
        },
        "x-websocket": {
            "path": "/ws/training/{session_id}",
            "messages": {
                "metrics": {"$ref": "#/components/schemas/LiveMetricsMessage"},
                "status": {"$ref": "#/components/schemas/LiveStatusEvent"},
            },
        },
    },
)
async def sse_training(
    session_id: str,
    live: Live,
    last_event_id: Annotated[EventId | SkipJsonSchema[None], Header()] = None,
    since: Annotated[EventId | SkipJsonSchema[None], Query()] = None,
) -> StreamingResponse:
    """Training updates as Server-Sent Events. A reconnecting EventSource sends
    Last-Event-ID and continues exactly after the last event it received."""
    field = "Last-Event-ID" if last_event_id is not None else "since"
    cursor = await live.open(session_id, last_event_id or since, field_name=field)
    return StreamingResponse(
        _sse_body(live, session_id, cursor),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


_LIST_SSE_EXAMPLE = (
    "retry: 1000\n\n"
    "event: session\n"
    'data: {"session_id":"sess-abc123","status":"running","current_epoch":3,...}\n\n'
    "id: 48213\nevent: ready\ndata: {\"count\":1}\n\n"
    "id: 48230\nevent: session\n"
    'data: {"session_id":"sess-abc123","status":"running","current_epoch":4,...}\n\n'
    "id: 48251\nevent: deleted\ndata: {\"session_id\":\"sess-old\"}\n\n"
    ": heartbeat\n\n"
)


@router.get(
    "/sse/sessions",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"example": _LIST_SSE_EXAMPLE}},
            "description": "Server-Sent Events of the sessions list.\n\n"
            "- `session`: a session as `GET /training/sessions/{session_id}` shows it now "
            "(schema SessionDetail)\n"
            "- `deleted`: `{\"session_id\"}`, a session that is gone\n"
            "- `ready`: `{\"count\"}`, the snapshot (or the catch-up after Last-Event-ID) "
            "is complete\n"
            "- `reset`: what changed since Last-Event-ID is no longer known here: drop what "
            "you hold; a full snapshot and `ready` follow\n\n"
            "A fresh stream starts with every session (newest first). The last event of "
            "each batch carries `id:` (a Kubernetes resourceVersion); a reconnect with "
            "Last-Event-ID receives only the sessions changed since. Comment lines "
            "(`: heartbeat`) keep an idle connection open.",
        },
        400: {"model": ErrorResponse, "description": "Last-Event-ID is not an id of this stream"},
        503: {"model": ErrorResponse, "description": "Too many live streams on this server"},
    },
    openapi_extra={
        "x-sse-events": {
            "session": {"$ref": "#/components/schemas/SessionDetail"},
            "deleted": {"$ref": "#/components/schemas/SessionDeletedEvent"},
            "ready": {"$ref": "#/components/schemas/SessionsReadyEvent"},
        },
    },
)
async def sse_sessions(
    feed: Feed,
    last_event_id: Annotated[str | SkipJsonSchema[None], Header(max_length=64)] = None,
    since: Annotated[str | SkipJsonSchema[None], Query(max_length=64)] = None,
) -> StreamingResponse:
    """Every session, live: a snapshot, then each change as it happens. For dashboards: no
    list call and no polling; a reconnecting EventSource resumes with Last-Event-ID."""
    field = "Last-Event-ID" if last_event_id is not None else "since"
    position = parse_position(last_event_id or since, field_name=field)
    feed.open()
    return StreamingResponse(
        feed.events(position),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def ws_message(session_id: str, event: LiveEvent) -> dict[str, Any]:
    """The reference's `{epoch, loss}` plus the full record for metrics (LiveMetricsMessage);
    the event's own fields for the others. `id` is what `since` takes to resume."""
    if event.kind == METRICS:
        record = event.data  # the SSE event's data: the record with its `loss`
        metrics = {k: v for k, v in record.items() if k not in ("epoch", "timestamp", "loss")}
        return {
            "type": METRICS,
            "id": event.id,
            "stream_id": event.stream_id,
            "session_id": session_id,
            "epoch": record.get("epoch"),
            "loss": record["loss"] if "loss" in record else loss_of(record),
            "timestamp": record.get("timestamp"),
            "metrics": metrics,
        }
    message = {**event.data, "type": event.kind}
    if event.id is not None:
        message["id"] = event.id
        message["stream_id"] = event.stream_id
    return message


# WebSocket close codes for errors a plain HTTP request would get as 400 and 404.
_CLOSE_CODES = {400: 4400, 404: 4404}


@router.websocket("/ws/training/{session_id}")
async def ws_training(
    websocket: WebSocket,
    session_id: str,
    since: Annotated[str | None, Query(max_length=200)] = None,
) -> None:
    await websocket.accept()
    try:
        live = await live_service(websocket)
        cursor = await live.open(session_id, since, field_name="since")
    except PivotError as exc:
        error = {"code": exc.code, "message": exc.message, "details": exc.details}
        await websocket.send_text(_json({"type": "error", "error": error}))
        await websocket.close(code=_CLOSE_CODES.get(exc.status_code, 1011))
        return

    async def send_all() -> None:
        async for event in live.events(session_id, cursor, kind="websocket"):
            text = event.frames.get("ws")
            if text is None:
                text = event.frames["ws"] = _json(ws_message(session_id, event))
            await websocket.send_text(text)

    async def until_disconnect() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    sender = asyncio.create_task(send_all())
    receiver = asyncio.create_task(until_disconnect())
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Either the stream ended or the client left: stop the other side (and its XREAD).
        for task in (sender, receiver):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if sender in done and sender.exception() is None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1000)
