"""Dependencies: services built from what the lifespan put on app.state.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread,
a thread hop per request that cost more than the rest of a GET session together."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from pivot_api.errors import ServiceUnavailableError
from pivot_api.services.checkpoints import CheckpointService
from pivot_api.services.health import HealthService
from pivot_api.services.live import LiveService
from pivot_api.services.metrics import MetricsService
from pivot_api.services.resources import ResourceService
from pivot_api.services.sessions import SessionService


def _state(request: HTTPConnection, name: str) -> object:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise ServiceUnavailableError(f"the API is not ready: {name} is not available")
    return value


async def session_service(request: HTTPConnection) -> SessionService:
    service = _state(request, "sessions")
    assert isinstance(service, SessionService)
    return service


async def metrics_service(request: HTTPConnection) -> MetricsService:
    service = _state(request, "metrics")
    assert isinstance(service, MetricsService)
    return service


async def checkpoint_service(request: HTTPConnection) -> CheckpointService:
    service = _state(request, "checkpoints")
    assert isinstance(service, CheckpointService)
    return service


async def live_service(request: HTTPConnection) -> LiveService:
    service = _state(request, "live")
    assert isinstance(service, LiveService)
    return service


async def resource_service(request: HTTPConnection) -> ResourceService:
    service = _state(request, "resources")
    assert isinstance(service, ResourceService)
    return service


async def health_service(request: HTTPConnection) -> HealthService:
    service = _state(request, "health")
    assert isinstance(service, HealthService)
    return service


Sessions = Annotated[SessionService, Depends(session_service)]
Metrics = Annotated[MetricsService, Depends(metrics_service)]
Health = Annotated[HealthService, Depends(health_service)]
Checkpoints = Annotated[CheckpointService, Depends(checkpoint_service)]
Live = Annotated[LiveService, Depends(live_service)]
Resources = Annotated[ResourceService, Depends(resource_service)]
