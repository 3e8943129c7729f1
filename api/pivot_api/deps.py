"""Dependencies: services built from what the lifespan put on app.state.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread,
a thread hop per request that cost more than the rest of a GET session together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends
from starlette.requests import HTTPConnection

from pivot_api.alerts.service import AlertStore
from pivot_api.checkpoints.service import CheckpointService
from pivot_api.errors import ServiceUnavailableError
from pivot_api.health.service import HealthService
from pivot_api.live.feed import SessionFeed
from pivot_api.live.service import LiveService
from pivot_api.metrics.service import MetricsService
from pivot_api.models.service import ModelService
from pivot_api.monitor.service import ResourceService
from pivot_api.notifications.service import NotificationStore
from pivot_api.sessions.pods import SessionPods
from pivot_api.sessions.service import SessionService
from pivot_api.webhooks.service import WebhookService

S = TypeVar("S")


def state_service(name: str, kind: type[S]) -> Callable[[HTTPConnection], Awaitable[S]]:
    """A dependency returning `app.state.<name>`; 503 while it is not there (startup,
    shutdown, or a backing service the lifespan could not reach)."""

    async def dependency(request: HTTPConnection) -> S:
        service = getattr(request.app.state, name, None)
        if not isinstance(service, kind):
            raise ServiceUnavailableError(f"the API is not ready: {name} is not available")
        return service

    dependency.__name__ = f"{name}_service"
    return dependency


live_service = state_service("live", LiveService)

Sessions = Annotated[SessionService, Depends(state_service("sessions", SessionService))]
Pods = Annotated[SessionPods, Depends(state_service("pods", SessionPods))]
Models = Annotated[ModelService, Depends(state_service("models", ModelService))]
Metrics = Annotated[MetricsService, Depends(state_service("metrics", MetricsService))]
Health = Annotated[HealthService, Depends(state_service("health", HealthService))]
Checkpoints = Annotated[CheckpointService, Depends(state_service("checkpoints", CheckpointService))]
Live = Annotated[LiveService, Depends(live_service)]
Feed = Annotated[SessionFeed, Depends(state_service("feed", SessionFeed))]
Resources = Annotated[ResourceService, Depends(state_service("resources", ResourceService))]
Alerts = Annotated[AlertStore, Depends(state_service("alerts", AlertStore))]
Notifications = Annotated[
    NotificationStore, Depends(state_service("notifications", NotificationStore))
]
Webhooks = Annotated[WebhookService, Depends(state_service("webhooks", WebhookService))]
