"""The platform event bus, the leader lease and lifecycle events, against a real Redis and
the Kubernetes API emulator."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from redis.asyncio import Redis

from pivot_api.background import LeaderLease
from pivot_api.events import (
    TRAINING_COMPLETED,
    TRAINING_PREEMPTED,
    TRAINING_RESUMED,
    TRAINING_STARTED,
    EventConsumer,
    PlatformEvent,
    publish,
    publish_transition,
)
from pivot_schema.keys import ApiKeys

from .api_platform import Platform

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_server: Any) -> Any:
    r = Redis.from_url(redis_server.url)
    yield r
    await r.aclose()


@pytest.fixture
def keys() -> ApiKeys:
    return ApiKeys("ev-" + secrets.token_hex(4))


async def bus(redis: Redis, keys: ApiKeys) -> list[PlatformEvent]:
    return [PlatformEvent.from_fields(i.decode(), f) for i, f in await redis.xrange(keys.events)]


async def test_a_transition_is_published_once_however_many_observers_see_it(
    redis: Redis, keys: ApiKeys
) -> None:
    results = await asyncio.gather(
        *(
            publish_transition(
                redis, keys, kind="t", subject="s1", state="done", type_="x", data={"n": i}
            )
            for i in range(8)
        )
    )
    assert sum(r is not None for r in results) == 1
    assert [e.type for e in await bus(redis, keys)] == ["x"]
    # Recorded silently: no event, but the state is taken.
    assert (
        await publish_transition(redis, keys, kind="t", subject="s2", state="a", type_=None) is None
    )
    assert await redis.hget(keys.transitions("t"), "s2") == b"a"
    assert (
        await publish_transition(redis, keys, kind="t", subject="s2", state="a", type_="y") is None
    )
    assert len(await bus(redis, keys)) == 1


async def test_consumer_group_handles_each_event_once_and_retries_a_failed_one(
    redis: Redis, keys: ApiKeys
) -> None:
    seen: list[tuple[str, str]] = []
    failures = {"left": 1}

    def handler_for(name: str) -> Any:
        async def handle(event: PlatformEvent) -> None:
            if event.data.get("n") == 3 and failures["left"]:
                failures["left"] -= 1
                raise RuntimeError("receiver down")
            seen.append((name, event.event_id))

        return handle

    a = EventConsumer(redis, keys, "g", handler_for("a"), block_ms=50, retry_after_ms=100)
    b = EventConsumer(redis, keys, "g", handler_for("b"), block_ms=50, retry_after_ms=100)
    await a.ensure_group()
    published = [await publish(redis, keys, "x", {"n": n}) for n in range(6)]
    for _ in range(40):
        await asyncio.gather(a.step(), b.step())
        if len(seen) == 6:
            break
        await asyncio.sleep(0.02)
    assert sorted(e for _, e in seen) == sorted(p.event_id for p in published)
    pending = await redis.xpending(keys.events, "g")
    assert pending["pending"] == 0


async def test_only_one_lease_holder_runs_the_job_and_another_takes_over(
    redis: Redis, keys: ApiKeys
) -> None:
    running: list[str] = []

    def job(name: str) -> Any:
        async def run() -> None:
            running.append(name)
            try:
                await asyncio.sleep(3600)
            finally:
                running.remove(name)

        return run

    leases = [LeaderLease(redis, keys.leader("j"), ttl_s=0.3) for _ in range(3)]
    tasks = [asyncio.create_task(lease.run(job(f"w{i}"), "j")) for i, lease in enumerate(leases)]
    try:
        for _ in range(100):
            if running:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # several renewals: still exactly one
        assert len(running) == 1
        leader = int(running[0][1:])
        tasks[leader].cancel()  # the leader's worker shuts down: it hands over at once
        for _ in range(100):
            if running and running[0] != f"w{leader}":
                break
            await asyncio.sleep(0.02)
        assert len(running) == 1 and running[0] != f"w{leader}"
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_lifecycle_events_follow_the_crs_phase(platform: Platform) -> None:
    keys: ApiKeys = platform.app.state.api_keys
    sid = str((await platform.create())["session_id"])

    async def events_of(session: str, count: int) -> list[PlatformEvent]:
        for _ in range(300):
            got = [
                e for e in await bus(platform.redis, keys) if e.data.get("session_id") == session
            ]
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        return got

    resp = await platform.http.post(f"/api/v1/training/sessions/{sid}/start")
    assert resp.status_code == 200, resp.text
    await platform.patch_status(sid, {"phase": "Running"})
    await events_of(sid, 1)
    await platform.patch_status(sid, {"phase": "Running", "preemptions": 1})
    assert [e.type for e in await events_of(sid, 2)] == [TRAINING_STARTED, TRAINING_PREEMPTED]
    await platform.patch_status(sid, {"phase": "Pending", "preemptions": 1})
    await asyncio.sleep(0.3)
    await platform.patch_status(sid, {"phase": "Running", "preemptions": 1})
    assert [e.type for e in await events_of(sid, 3)][-1] == TRAINING_RESUMED
    await platform.patch_status(
        sid, {"phase": "Completed", "latestMetrics": {"val_froc": 0.8}, "preemptions": 1}
    )
    got = await events_of(sid, 4)
    assert [e.type for e in got] == [
        TRAINING_STARTED,
        TRAINING_PREEMPTED,
        TRAINING_RESUMED,
        TRAINING_COMPLETED,
    ]
    assert got[-1].data["final_metrics"] == {"val_froc": 0.8}
    assert got[-1].data["previous_status"] == "running"
    await asyncio.sleep(0.5)  # more scans: nothing published twice
    assert len([e for e in await bus(platform.redis, keys) if e.data["session_id"] == sid]) == 4
