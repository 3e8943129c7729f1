from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from pivot_api.deps import Metrics, Pods, Sessions
from pivot_api.metrics.schemas import SessionMetrics
from pivot_api.schemas import ErrorResponse
from pivot_api.sessions.configs import list_configs
from pivot_api.sessions.schemas import (
    ConfigFile,
    ConfigList,
    CreateSessionRequest,
    CreateSessionResponse,
    SessionDetail,
    SessionEvents,
    SessionList,
    StartSessionResponse,
    StopSessionResponse,
)
from pivot_schema.crd import SessionStatus

router = APIRouter(
    prefix="/training/sessions",
    tags=["training"],
    responses={422: {"model": ErrorResponse, "description": "Validation error"}},
)

Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: Responses = {404: {"model": ErrorResponse, "description": "No such session"}}
_CONFLICT: Responses = {
    409: {"model": ErrorResponse, "description": "Not allowed in the current status"}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreateSessionResponse,
    responses={
        404: {"model": ErrorResponse, "description": "config_path not found"},
        413: {"model": ErrorResponse, "description": "Body over PIVOT_MAX_BODY_BYTES"},
    },
)
async def create_session(body: CreateSessionRequest, sessions: Sessions) -> CreateSessionResponse:
    """Create a session (suspended) from a config file or an inline config, and where it runs
    (resources, node_selector, tolerations, replicas). The config is checked as the trainer
    checks it: what it would refuse is a 422 naming the field (`config.optimizer`)."""
    return await sessions.create(body)


@router.get("", response_model=SessionList)
async def list_sessions(
    sessions: Sessions,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: SessionStatus | SkipJsonSchema[None] = None,
) -> SessionList:
    """Sessions, newest first."""
    return await sessions.list(limit=limit, offset=offset, status=status)


@router.get("/{session_id}", response_model=SessionDetail, responses=_NOT_FOUND)
async def get_session(session_id: str, sessions: Sessions) -> Response:
    # The hottest read: the body is serialised once per resourceVersion of the CR, and
    # returned as is (no response-model re-validation per request).
    return Response(await sessions.get_json(session_id), media_type="application/json")


@router.post(
    "/{session_id}/start",
    response_model=StartSessionResponse,
    responses={**_NOT_FOUND, **_CONFLICT},
)
async def start_session(session_id: str, sessions: Sessions) -> StartSessionResponse:
    return await sessions.start(session_id)


@router.post(
    "/{session_id}/stop",
    response_model=StopSessionResponse,
    responses={**_NOT_FOUND, **_CONFLICT},
)
async def stop_session(session_id: str, sessions: Sessions) -> StopSessionResponse:
    return await sessions.stop(session_id)


@router.get("/{session_id}/metrics", response_model=SessionMetrics, responses=_NOT_FOUND)
async def session_metrics(
    session_id: str,
    metrics: Metrics,
    metric_name: Annotated[
        Annotated[str, Field(min_length=1)] | SkipJsonSchema[None], Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> SessionMetrics:
    """The latest `limit` epoch records, oldest first."""
    return await metrics.records(session_id, metric_name=metric_name, limit=limit)


@router.get("/{session_id}/events", response_model=SessionEvents, responses=_NOT_FOUND)
async def session_events(session_id: str, pods: Pods) -> SessionEvents:
    """The Kubernetes Events of the session and of its pods (what `kubectl describe` shows:
    scheduling, retries, evictions...), oldest first."""
    return await pods.events(session_id)


_LOG_EXAMPLE = "epoch 1/3 train_loss=0.8123 val_loss=0.7710 (2.1s)\n"


@router.get(
    "/{session_id}/logs",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/plain": {"example": _LOG_EXAMPLE}},
            "description": "The trainer's log (pods/log). With `follow=true` the response "
            "goes on as lines are written, through a retried attempt's new pod, and ends "
            "once the session has ended. With `rank=all` every line starts with "
            "`[rank N] `. Empty when no trainer pod has started yet (unless followed: "
            "then it waits for one).",
        },
        **_NOT_FOUND,
    },
)
async def session_logs(
    session_id: str,
    pods: Pods,
    follow: bool = False,
    tail: Annotated[
        Annotated[int, Field(ge=0, le=100_000)] | SkipJsonSchema[None],
        Query(description="Only the last N lines (of each rank's current pod)."),
    ] = None,
    rank: Annotated[
        str,
        Query(
            pattern=r"^(all|[0-9]{1,4})$",
            description="Which trainer of a multi-pod session: its rank, or `all`.",
        ),
    ] = "0",
) -> StreamingResponse:
    """The trainer's log, whole or its last `tail` lines, or live with `follow=true`."""
    await pods.open_logs(session_id)
    body = pods.logs(
        session_id, rank=None if rank == "all" else int(rank), tail=tail, follow=follow
    )
    return StreamingResponse(
        body,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


configs_router = APIRouter(prefix="/configs", tags=["configs"])


@configs_router.get("", response_model=ConfigList)
async def get_configs(request: Request) -> ConfigList:
    """The training configs a session can be created from (`config_path`), each checked as
    `create` would check it."""
    found = await asyncio.to_thread(list_configs, request.app.state.settings.configs_dir)
    return ConfigList(
        configs=[ConfigFile(config_path=p, config=c, error=e) for p, c, e in found]
    )
