"""What the dashboard reads beyond the reference: the live sessions list (/sse/sessions),
the configs directory, who a key is, and the dashboard's own files at /ui/."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pivot_schema.crd import GROUP, PLURAL, VERSION
from tests.support.waiting import eventually

from .api_platform import Platform, serve, serve_http
from .test_api_live import SseEvent, sse_events

pytestmark = pytest.mark.integration


class ListStream:
    """One open /sse/sessions stream: events as they come, read in the background."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self.events: list[SseEvent] = []
        self.heartbeats = 0
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for ev in sse_events(self.resp):
            if ev.comment is not None:
                self.heartbeats += 1
            else:
                self.events.append(ev)

    def of(self, kind: str) -> list[SseEvent]:
        return [e for e in self.events if e.event == kind]

    @property
    def last_id(self) -> str:
        ids = [e.id for e in self.events if e.id]
        assert ids, self.events
        return str(ids[-1])

    async def until(self, check: Any, within: float = 10.0) -> None:
        async def probe() -> Any:
            return check() or None

        await eventually(probe, within=within, what=f"stream events {self.events}", interval=0.02)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task


@contextlib.asynccontextmanager
async def list_stream(
    base: str, headers: dict[str, str] | None = None
) -> AsyncIterator[ListStream]:
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("GET", f"{base}/api/v1/sse/sessions", headers=headers) as resp,
    ):
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        stream = ListStream(resp)
        try:
            yield stream
        finally:
            await stream.close()


@pytest.fixture
async def base(platform: Platform) -> AsyncIterator[str]:
    settings = platform.app.state.settings.model_copy(update={"stream_heartbeat_s": 0.2})
    async with serve_http(settings) as (_app, url):
        yield url


def _latest(stream: ListStream, sid: str) -> dict[str, Any] | None:
    for ev in reversed(stream.events):
        if ev.data and ev.data.get("session_id") == sid and ev.event in ("session", "deleted"):
            return {"event": ev.event, **ev.data}
    return None


async def test_list_stream_sends_a_snapshot_then_every_change(
    platform: Platform, base: str
) -> None:
    first = (await platform.create(session_name="first"))["session_id"]
    second = (await platform.create(session_name="second"))["session_id"]
    async with list_stream(base) as stream:
        await stream.until(lambda: stream.of("ready"))
        snapshot = stream.events[: stream.events.index(stream.of("ready")[0])]
        # Newest first, each as GET /training/sessions/{id} shows it.
        assert [e.data["session_id"] for e in snapshot if e.data] == [second, first]
        detail = (await platform.http.get(f"/api/v1/training/sessions/{first}")).json()
        assert snapshot[1].data == detail
        assert stream.of("ready")[0].data == {"count": 2}
        assert stream.of("ready")[0].id  # where a reconnect resumes

        # A change: the session as it is now, with the batch's position as its id.
        started = await platform.http.post(f"/api/v1/training/sessions/{first}/start")
        assert started.status_code == 200, started.text
        await platform.patch_status(first, {"phase": "Running", "currentEpoch": 2})
        await stream.until(lambda: (_latest(stream, first) or {}).get("current_epoch") == 2)
        assert _latest(stream, first)["status"] == "running"  # type: ignore[index]

        third = (await platform.create(session_name="third"))["session_id"]
        await stream.until(lambda: _latest(stream, third) is not None)

        await platform.objects.delete_namespaced_custom_object(
            GROUP, VERSION, platform.namespace, PLURAL, second
        )
        await stream.until(lambda: (_latest(stream, second) or {}).get("event") == "deleted")
        ids = [int(e.id) for e in stream.events if e.id]
        assert ids == sorted(ids)


async def test_list_stream_resumes_with_last_event_id_on_another_worker(
    platform: Platform, base: str
) -> None:
    kept = (await platform.create(session_name="kept"))["session_id"]
    gone = (await platform.create(session_name="gone"))["session_id"]
    # A second API (another worker or replica, with its own cache) runs beside the first.
    settings = platform.app.state.settings.model_copy(update={"stream_heartbeat_s": 0.2})
    async with serve_http(settings) as (_app, other):
        async with list_stream(base) as stream:
            await stream.until(lambda: stream.of("ready"))
            resume_from = stream.last_id

        # While no client listens: one changes, one is deleted, one is created.
        assert (await platform.http.post(f"/api/v1/training/sessions/{kept}/start")).is_success
        await platform.patch_status(kept, {"phase": "Running", "currentEpoch": 3})
        await platform.objects.delete_namespaced_custom_object(
            GROUP, VERSION, platform.namespace, PLURAL, gone
        )
        new = (await platform.create(session_name="new"))["session_id"]

        # The reconnect lands on the other worker: only what changed, then `ready`.
        async with list_stream(other, {"Last-Event-ID": resume_from}) as stream:
            await stream.until(lambda: stream.of("ready"))
            assert not stream.of("reset"), stream.events
            caught_up = {
                e.data["session_id"]: e for e in stream.events if e.data and e.event != "ready"
            }
            assert caught_up[kept].event == "session"
            assert caught_up[kept].data["current_epoch"] == 3  # type: ignore[index]
            assert caught_up[gone].event == "deleted"
            assert caught_up[new].event == "session"
            assert sorted(caught_up) == sorted([kept, gone, new])
            assert stream.of("ready")[0].data == {"count": 3}
            assert int(stream.of("ready")[0].id or 0) >= int(resume_from)


async def test_list_stream_from_an_unknown_position_resets_and_sends_a_snapshot(
    platform: Platform, base: str
) -> None:
    sid = (await platform.create())["session_id"]
    async with list_stream(base, {"Last-Event-ID": "1"}) as stream:
        await stream.until(lambda: stream.of("ready"))
        assert stream.events[0].event == "reset"
        assert [e.data["session_id"] for e in stream.of("session") if e.data] == [sid]
    # Heartbeats keep an idle stream open.
    async with list_stream(base) as stream:
        await stream.until(lambda: stream.heartbeats >= 2)


async def test_list_stream_refuses_a_position_it_never_sent(platform: Platform) -> None:
    for bad in ("abc", "-1", "1" * 30):
        resp = await platform.http.get("/api/v1/sse/sessions", headers={"Last-Event-ID": bad})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["code"] == "BAD_REQUEST"
        assert resp.json()["error"]["details"]["field"] == "Last-Event-ID"


async def test_configs_lists_each_file_as_create_would_check_it(platform: Platform) -> None:
    (platform.configs_dir / "nested").mkdir()
    (platform.configs_dir / "nested" / "small.yml").write_text("epochs: 2\n")
    (platform.configs_dir / "notes.txt").write_text("not a config\n")
    resp = await platform.http.get("/api/v1/configs")
    assert resp.status_code == 200, resp.text
    by_path = {c["config_path"]: c for c in resp.json()["configs"]}
    assert sorted(by_path) == [
        "configs/broken.yaml",
        "configs/garbled.yaml",
        "configs/nested/small.yml",
        "configs/train.yaml",
    ]
    assert by_path["configs/train.yaml"]["config"]["epochs"] == 4
    assert by_path["configs/train.yaml"]["error"] is None
    assert by_path["configs/broken.yaml"]["config"] is None
    assert "epochs" in by_path["configs/broken.yaml"]["error"]
    assert "YAML" in by_path["configs/garbled.yaml"]["error"]
    # Each listed path is what create takes.
    created = await platform.create(config_path="configs/nested/small.yml")
    detail = await platform.http.get(f"/api/v1/training/sessions/{created['session_id']}")
    assert detail.json()["config"]["epochs"] == 2


async def test_whoami_names_the_key_and_its_scope(platform_factory: Any) -> None:
    keys = "ops:admin:pvt_admin_0123456789abcdef,viewer:read:pvt_read_0123456789abcdef"
    async with platform_factory(auth_enabled=True, api_keys=SecretStr(keys)) as p:
        for key, name, scope in (
            ("pvt_admin_0123456789abcdef", "ops", "admin"),
            ("pvt_read_0123456789abcdef", "viewer", "read"),
        ):
            resp = await p.http.get(
                "/api/v1/auth/whoami", headers={"Authorization": f"Bearer {key}"}
            )
            assert resp.json() == {"auth_enabled": True, "name": name, "scope": scope}
        # No key: it says so (a page then asks for one) without a 401; an unknown key is 401.
        resp = await p.http.get("/api/v1/auth/whoami")
        assert resp.json() == {"auth_enabled": True, "name": None, "scope": None}
        resp = await p.http.get(
            "/api/v1/auth/whoami", headers={"Authorization": "Bearer pvt_not_a_key_00000000"}
        )
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "UNAUTHORIZED"
        # Everything else still needs a key.
        assert (await p.http.get("/api/v1/training/sessions")).status_code == 401
        # The dashboard's files need no key: the page asks for one.
        assert (await p.http.get("/ui/")).status_code == 200
        assert (await p.http.get("/")).status_code == 307
    async with platform_factory() as p:
        resp = await p.http.get("/api/v1/auth/whoami")
        assert resp.json() == {"auth_enabled": False, "name": None, "scope": "admin"}


@pytest.fixture
def built_ui(tmp_path: Path) -> Path:
    """A build as Vite lays it out: index.html and content-hashed assets."""
    dist = tmp_path / "ui_dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(
        '<!doctype html><script type="module" src="/ui/assets/index-3f9a1c.js"></script>\n'
    )
    (dist / "assets" / "index-3f9a1c.js").write_text("console.log('pivot');\n" * 200)
    (dist / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    return dist


async def test_ui_serves_hashed_assets_for_a_year_and_every_route_as_the_page(
    platform: Platform, built_ui: Path
) -> None:
    settings = platform.app.state.settings.model_copy(update={"ui_dir": built_ui})
    async with serve(settings) as (_a, http):
        root = await http.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/ui/"

        index = (built_ui / "index.html").read_bytes()
        for route in ("/ui/", "/ui/sessions/sess-abc123", "/ui/compare?ids=a,b", "/ui/alerts"):
            page = await http.get(route)
            assert page.status_code == 200, route
            assert page.content == index
            assert page.headers["cache-control"] == "no-cache"
            assert page.headers["content-type"].startswith("text/html")

        asset = await http.get("/ui/assets/index-3f9a1c.js", headers={"Accept-Encoding": "gzip"})
        assert asset.status_code == 200
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["content-encoding"] == "gzip"
        assert asset.content == (built_ui / "assets" / "index-3f9a1c.js").read_bytes()
        raw = await http.get("/ui/assets/index-3f9a1c.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in raw.headers
        assert raw.content == asset.content

        # Revalidation: the page's ETag answers 304.
        again = await http.get("/ui/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304

        # A missing hashed asset is a 404, never the page; no path leaves the build.
        assert (await http.get("/ui/assets/index-000000.js")).status_code == 404
        for escape in ("/ui/%2e%2e/%2e%2e/pyproject.toml", "/ui/assets/%2e%2e/%2e%2e/x.py"):
            escaped = await http.get(escape)
            assert escaped.content in (index, b"not found\n"), escape

        # The API's own routes are not shadowed.
        assert (await http.get("/api/v1/health")).status_code in (200, 503)
        assert (await http.get("/api/v1/training/sessions")).status_code == 200


async def test_ui_without_a_build_says_how_to_build_it(platform: Platform, tmp_path: Path) -> None:
    settings = platform.app.state.settings.model_copy(update={"ui_dir": tmp_path / "none"})
    async with serve(settings) as (_a, http):
        page = await http.get("/ui/sessions/x")
        assert page.status_code == 200
        assert "npm run build" in page.text


async def test_a_session_shows_its_best_checkpoint_and_conditions(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    assert (await platform.http.get(f"/api/v1/training/sessions/{sid}")).json()[
        "best_checkpoint"
    ] is None
    await platform.patch_status(
        sid,
        {
            "phase": "Running",
            "bestCheckpoint": {
                "id": f"ckpt_{sid}_e00002",
                "epoch": 2,
                "metric": "val_dice",
                "value": 0.81,
            },
            "conditions": [
                {
                    "type": "Schedulable",
                    "status": "True",
                    "reason": "PodScheduled",
                    "message": "bound",
                    "lastTransitionTime": "2026-12-04T12:00:00Z",
                }
            ],
        },
    )

    async def shown() -> dict[str, Any] | None:
        body = (await platform.http.get(f"/api/v1/training/sessions/{sid}")).json()
        return body if body["best_checkpoint"] else None

    body = await eventually(shown, what="the best checkpoint")
    assert body["best_checkpoint"] == {
        "checkpoint_id": f"ckpt_{sid}_e00002",
        "epoch": 2,
        "metric": "val_dice",
        "value": 0.81,
    }
    assert body["conditions"] == [
        {
            "type": "Schedulable",
            "status": "True",
            "reason": "PodScheduled",
            "message": "bound",
            "last_transition_time": "2026-12-04T12:00:00Z",
        }
    ]
