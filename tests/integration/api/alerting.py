"""Shared by the alert and notification tests: the platform with alert rules evaluated every
0.1 s, a running session, metric records written as the trainer writes them, and polling
with a deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from pivot_schema import keys as schema_keys
from tests.support.waiting import eventually

from .api_platform import Platform, PlatformFactory

T = TypeVar("T")

INTERVAL_S = 0.1


@pytest.fixture
async def alerting(platform_factory: PlatformFactory) -> AsyncIterator[Platform]:
    """The API evaluating rules every INTERVAL_S."""
    async with platform_factory(alert_interval_s=INTERVAL_S) as p:
        yield p


async def until(
    probe: Callable[[], Awaitable[T]], *, within_s: float = 15.0, what: str = "condition"
) -> T:
    """Alerts are evaluated every INTERVAL_S; `within_s` leaves room on a loaded machine."""
    return await eventually(probe, within=within_s, what=what)


async def running_session(platform: Platform, **body: Any) -> str:
    """A session started through the API whose CR says Running, as the operator would."""
    sid = str((await platform.create(**body))["session_id"])
    resp = await platform.http.post(f"/api/v1/training/sessions/{sid}/start")
    assert resp.status_code == 200, resp.text
    await platform.patch_status(sid, {"phase": "Running"})

    async def seen_running() -> bool:
        resp = await platform.http.get(f"/api/v1/training/sessions/{sid}")
        return bool(resp.json()["status"] == "running")

    await until(seen_running, what=f"{sid} running")
    return sid


async def write_epoch(platform: Platform, sid: str, epoch: int, **metrics: float) -> None:
    """One epoch record in the session's metrics stream, exactly as the trainer writes it
    (a NaN becomes null)."""
    record = schema_keys.epoch_record(epoch, metrics)
    await platform.redis.xadd(schema_keys.metrics_stream(sid), schema_keys.encode_record(record))  # type: ignore[arg-type]
