"""Dependencies: services built from what the lifespan put on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pivot_api.errors import ServiceUnavailableError
from pivot_api.services.health import HealthService
from pivot_api.services.metrics import MetricsService
from pivot_api.services.sessions import SessionService


def _state(request: Request, name: str) -> object:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise ServiceUnavailableError(f"the API is not ready: {name} is not available")
    return value


def session_service(request: Request) -> SessionService:
    service = _state(request, "sessions")
    assert isinstance(service, SessionService)
    return service


def metrics_service(request: Request) -> MetricsService:
    service = _state(request, "metrics")
    assert isinstance(service, MetricsService)
    return service


def health_service(request: Request) -> HealthService:
    service = _state(request, "health")
    assert isinstance(service, HealthService)
    return service


Sessions = Annotated[SessionService, Depends(session_service)]
Metrics = Annotated[MetricsService, Depends(metrics_service)]
Health = Annotated[HealthService, Depends(health_service)]
