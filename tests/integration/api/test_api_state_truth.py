"""One truth for a session's state: what a write answers is what every later read shows, and
no worker shows a state older than one another worker has already shown."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.waiting import eventually

from .api_platform import Platform, PlatformFactory

pytestmark = pytest.mark.integration


async def _until(platform: Platform, sid: str, status: str, within_s: float = 10.0) -> None:
    async def read() -> dict[str, Any] | None:
        body = (await platform.http.get(f"/api/v1/training/sessions/{sid}")).json()
        return body if body["status"] == status else None

    await eventually(read, within=within_s, what=f"{sid} to read {status}", interval=0.02)


async def _listed(platform: Platform, sid: str) -> dict[str, Any]:
    body = (await platform.http.get("/api/v1/training/sessions", params={"limit": 500})).json()
    return next(s for s in body["sessions"] if s["session_id"] == sid)


async def test_a_session_stopped_right_after_its_start_reads_stopped_with_the_stop_time(
    platform: Platform,
) -> None:
    # No operator runs here: the CR is suspended again before anything saw it run, which is
    # the window a quick start-stop of a real platform hits.
    sid = str((await platform.create())["session_id"])
    started = (await platform.http.post(f"/api/v1/training/sessions/{sid}/start")).json()
    stopped = (await platform.http.post(f"/api/v1/training/sessions/{sid}/stop")).json()
    assert stopped["status"] == "stopped"
    got = (await platform.http.get(f"/api/v1/training/sessions/{sid}")).json()
    assert got["status"] == "stopped"
    assert got["stopped_at"] == stopped["stopped_at"]
    assert got["started_at"] == started["started_at"]
    assert (await _listed(platform, sid))["status"] == "stopped"
    by_status = await platform.http.get("/api/v1/training/sessions", params={"status": "stopped"})
    assert sid in [s["session_id"] for s in by_status.json()["sessions"]]
    # And it can be started again, as any stopped session.
    again = await platform.http.post(f"/api/v1/training/sessions/{sid}/start")
    assert again.status_code == 200, again.text


async def test_a_worker_whose_watch_is_behind_catches_up_before_it_answers(
    platform_factory: PlatformFactory,
) -> None:
    async with (
        platform_factory(read_catch_up_s=0.3) as ahead,
        platform_factory(read_catch_up_s=0.3) as behind,
    ):
        sid = str((await ahead.create())["session_id"])
        assert (await ahead.http.post(f"/api/v1/training/sessions/{sid}/start")).status_code == 200
        await ahead.patch_status(sid, {"phase": "Running", "currentEpoch": 2})
        await _until(ahead, sid, "running")
        await _until(behind, sid, "running")
        # The second worker's watch stalls (a slow connection, a busy event loop) while the
        # operator writes the end of the session, and a client reads it from the first.
        await behind.app.state.session_cache.stop()
        await ahead.patch_status(
            sid,
            {
                "phase": "Completed",
                "currentEpoch": 3,
                "latestMetrics": {"val_loss": 0.125},
            },
        )
        await _until(ahead, sid, "completed")
        got = (await behind.http.get(f"/api/v1/training/sessions/{sid}")).json()
        assert (got["status"], got["current_epoch"], got["latest_metrics"]) == (
            "completed",
            3,
            {"val_loss": 0.125},
        )
        listed = await _listed(behind, sid)
        assert (listed["status"], listed["current_epoch"]) == ("completed", 3)


async def test_a_write_on_one_worker_is_seen_by_the_next_read_on_another(
    platform_factory: PlatformFactory,
) -> None:
    async with platform_factory() as one, platform_factory() as two:
        await two.http.get("/api/v1/training/sessions")  # its cache is synced
        await two.app.state.session_cache.stop()  # and then stalls
        sid = str((await one.create())["session_id"])
        await one.http.post(f"/api/v1/training/sessions/{sid}/start")
        stopped = (await one.http.post(f"/api/v1/training/sessions/{sid}/stop")).json()
        got = (await two.http.get(f"/api/v1/training/sessions/{sid}")).json()
        assert (got["status"], got["stopped_at"]) == ("stopped", stopped["stopped_at"])
        assert (await _listed(two, sid))["status"] == "stopped"
