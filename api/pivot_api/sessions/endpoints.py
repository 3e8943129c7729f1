from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from pivot_api.deps import Metrics, Sessions
from pivot_api.metrics.schemas import SessionMetrics
from pivot_api.schemas import ErrorResponse
from pivot_api.sessions.schemas import (
    CreateSessionRequest,
    CreateSessionResponse,
    SessionDetail,
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
