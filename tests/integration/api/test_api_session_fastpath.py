"""GET of one session by id is answered before FastAPI's router (pivot_api.fastpath): pinned to
what the router answers for the same requests, byte for byte, with keys, rate limits, metrics
and the OpenAPI document as they are for every other route."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from pivot_api.fastpath import SessionReadFastPath
from pivot_api.observability import ROUTE_LABEL
from pivot_api.settings import Settings
from tests.support.waiting import eventually

from .api_platform import Platform, serve

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/training/sessions"
ROUTE = "/api/v1/training/sessions/{session_id}"
KEY = "pvt_fastpath_" + "k" * 32


class ScopeSpy:
    """Outermost: records whether the fast path answered (it leaves the route label)."""

    def __init__(self, app: ASGIApp, *, seen: list[bool]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.seen.append(ROUTE_LABEL in scope)


@contextlib.asynccontextmanager
async def twin(
    settings: Settings, *, fast: bool, seen: list[bool]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app as create_app makes it, or (fast=False) the same app without the fast path."""

    def customize(app: FastAPI) -> None:
        if not fast:
            fast_path: Any = SessionReadFastPath
            app.user_middleware = [m for m in app.user_middleware if m.cls is not fast_path]
        app.add_middleware(ScopeSpy, seen=seen)

    async with serve(settings, customize) as (app, http):
        yield app, http


@contextlib.asynccontextmanager
async def twins(
    platform: Platform, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, list[bool], list[bool]]]:
    """(fast app, router-only app, which requests each one's fast path answered)."""
    settings = platform.app.state.settings.model_copy(
        update={"background_jobs": False, **overrides}
    )
    fast_seen: list[bool] = []
    slow_seen: list[bool] = []
    async with (
        twin(settings, fast=True, seen=fast_seen) as (_, fast),
        twin(settings, fast=False, seen=slow_seen) as (_, slow),
    ):
        yield fast, slow, fast_seen, slow_seen


def comparable(resp: httpx.Response, *, ignore: tuple[str, ...] = ()) -> tuple[Any, ...]:
    headers = [(k, v) for k, v in resp.headers.multi_items() if k not in ignore]
    return resp.status_code, headers, resp.content


async def synced(http: httpx.AsyncClient, sid: str, **kwargs: Any) -> httpx.Response:
    """GET until this app's watch cache has the session (a miss is read from the API)."""

    async def shown() -> httpx.Response | None:
        resp = await http.get(f"{SESSIONS}/{sid}", **kwargs)
        return resp if resp.status_code != 404 else None

    return await eventually(shown, within=2, what=f"{sid} in the watch cache", interval=0.02)


async def test_the_fast_path_answers_as_the_router_does(platform: Platform) -> None:
    sid = (await platform.create(session_name="fast", tags=["a", "b"]))["session_id"]
    await platform.patch_status(sid, {"phase": "Running", "currentEpoch": 2})
    async with twins(platform) as (fast, slow, fast_seen, slow_seen):
        for http in (fast, slow):
            resp = await synced(http, sid)
            assert resp.status_code == 200
        requests = [
            f"{SESSIONS}/{sid}",  # an existing session
            f"{SESSIONS}/{sid}?unknown=1",  # query parameters the route does not take
            f"{SESSIONS}/sess-nosuchone",  # 404 envelope
            f"{SESSIONS}/Not_A_Valid%20Id",  # 404 envelope, no API read
            f"{SESSIONS}/",  # not the route: left to the router
            f"{SESSIONS}/{sid}/metrics",  # not the route either
        ]
        fast_seen.clear()
        slow_seen.clear()
        for url in requests:
            headers = {"X-Request-ID": "pinned-id-1"}
            got, want = await fast.get(url, headers=headers), await slow.get(url, headers=headers)
            assert comparable(got) == comparable(want), url
        assert fast_seen == [True, True, True, True, False, False]
        assert slow_seen == [False] * len(requests)

        # HEAD and other methods are the router's (405 from it, as before).
        for method in ("HEAD", "PUT", "DELETE"):
            url = f"{SESSIONS}/{sid}"
            headers = {"X-Request-ID": "pinned-id-2"}
            got = await fast.request(method, url, headers=headers)
            want = await slow.request(method, url, headers=headers)
            assert comparable(got) == comparable(want), method

        # A generated request id is on the fast path's answers too.
        resp = await fast.get(f"{SESSIONS}/{sid}")
        assert len(resp.headers["x-request-id"]) == 32
        assert (
            resp.headers["x-request-id"]
            != (await fast.get(f"{SESSIONS}/{sid}")).headers["x-request-id"]
        )
        # The body follows the CR (a new resourceVersion), on both paths alike.
        url = f"{SESSIONS}/{sid}"
        before = resp.content
        await platform.patch_status(sid, {"phase": "Failed", "currentEpoch": 3})
        for http in (fast, slow):

            async def moved(http: httpx.AsyncClient = http) -> bool:
                resp = await http.get(url, headers={"X-Request-ID": "pinned-id-5"})
                return resp.content != before

            await eventually(moved, within=4, what="the body to follow the CR", interval=0.02)
        got, want = await fast.get(url), await slow.get(url)
        assert got.content == want.content and got.json()["current_epoch"] == 3


async def test_keys_apply_to_the_fast_path(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    keys = SecretStr(f"viewer:read:{KEY}")
    async with twins(platform, auth_enabled=True, api_keys=keys) as (fast, slow, seen, _):
        url = f"{SESSIONS}/{sid}"
        for http in (fast, slow):
            assert (await synced(http, sid, headers={"X-API-Key": KEY})).status_code == 200
        cases: list[dict[str, str]] = [
            {},  # 401, a challenge
            {"Authorization": "Bearer pvt_wrong_" + "x" * 32},  # 401, invalid_token
            {"X-API-Key": KEY},  # 200
        ]
        seen.clear()
        for case in cases:
            headers = {"X-Request-ID": "pinned-id-3", **case}
            got, want = await fast.get(url, headers=headers), await slow.get(url, headers=headers)
            assert comparable(got) == comparable(want), case
        assert [r.status_code for r in [await fast.get(url)]] == [401]
        # Refused before the fast path: it answered only the request with the key.
        assert seen == [False, False, True, False]
        # A query token is accepted for reads, as on every GET.
        assert (await fast.get(url, params={"access_token": KEY})).status_code == 200


async def test_rate_limits_apply_to_the_fast_path(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    # Both apps count against the same Redis keys (same namespace, same client address).
    async with twins(platform, rate_limit_enabled=True, rate_limits="7/minute") as (
        fast,
        slow,
        seen,
        _,
    ):
        url = f"{SESSIONS}/{sid}"
        await synced(fast, sid)
        await synced(slow, sid)
        seen.clear()
        headers = {"X-Request-ID": "pinned-id-4"}
        ignore = ("x-ratelimit-remaining",)
        got, want = await fast.get(url, headers=headers), await slow.get(url, headers=headers)
        assert got.status_code == 200
        assert comparable(got, ignore=ignore) == comparable(want, ignore=ignore)
        assert int(got.headers["x-ratelimit-remaining"]) == (
            int(want.headers["x-ratelimit-remaining"]) + 1
        )
        while (resp := await fast.get(url)).status_code == 200:
            pass
        assert resp.status_code == 429 and resp.json()["error"]["code"] == "RATE_LIMITED"
        assert "retry-after" in resp.headers and resp.headers["x-ratelimit-remaining"] == "0"
        assert seen[0] is True and seen[-1] is False  # the refusal came before it


async def test_the_route_and_its_model_stay_in_the_openapi_document(platform: Platform) -> None:
    async with twins(platform) as (fast, slow, _, _):
        got = (await fast.get("/api/v1/openapi.json")).json()
        assert got == (await slow.get("/api/v1/openapi.json")).json()
    get = got["paths"][ROUTE]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SessionDetail"
    }
    assert "404" in get["responses"]
