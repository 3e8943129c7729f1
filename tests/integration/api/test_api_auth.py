"""API keys over real HTTP: 401 without a known key, 403 for too small a scope, public docs
and probes, and query tokens for the browser's EventSource and WebSocket."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from pydantic import SecretStr
from websockets.exceptions import InvalidStatus

from pivot_api.observability import JsonFormatter

from .api_platform import Platform, serve_http

pytestmark = pytest.mark.integration

READ = "pvt_read_" + "r" * 32
WRITE = "pvt_write_" + "w" * 32
ADMIN = "pvt_admin_" + "a" * 32
SESSIONS = "/api/v1/training/sessions"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The platform's app with keys on, under a real uvicorn on loopback."""
    keys = f"viewer:read:{READ},ci:write:{WRITE},ops:admin:{ADMIN}"
    settings = platform.app.state.settings.model_copy(
        update={"auth_enabled": True, "api_keys": SecretStr(keys), "stream_heartbeat_s": 0.2}
    )
    async with serve_http(settings) as (_, base), httpx.AsyncClient(base_url=base) as http:
        yield http


async def create_session(api: httpx.AsyncClient) -> str:
    resp = await api.post(SESSIONS, json={"config_path": "train.yaml"}, headers=bearer(WRITE))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["session_id"])


def assert_envelope(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"]
    return dict(error)


async def test_no_key_is_401_with_a_bearer_challenge(api: httpx.AsyncClient) -> None:
    resp = await api.get(SESSIONS)
    assert_envelope(resp, 401, "UNAUTHORIZED")
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="pivot"'


async def test_a_wrong_key_is_401_in_any_header(api: httpx.AsyncClient) -> None:
    for headers in (bearer("pvt_" + "x" * 40), {"X-API-Key": "pvt_" + "x" * 40}):
        resp = await api.get(SESSIONS, headers=headers)
        assert_envelope(resp, 401, "UNAUTHORIZED")
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert_envelope(await api.get(SESSIONS, headers={"Authorization": READ}), 401, "UNAUTHORIZED")


async def test_a_read_key_reads_but_cannot_write(api: httpx.AsyncClient) -> None:
    assert (await api.get(SESSIONS, headers={"X-API-Key": READ})).status_code == 200
    resp = await api.post(SESSIONS, json={"config_path": "train.yaml"}, headers=bearer(READ))
    error = assert_envelope(resp, 403, "FORBIDDEN")
    assert error["details"] == {"scope": "read", "required_scope": "write"}
    assert "viewer" in error["message"]


async def test_a_write_key_writes_and_admin_implies_write(api: httpx.AsyncClient) -> None:
    sid = await create_session(api)
    start = await api.post(f"{SESSIONS}/{sid}/start", headers={"X-API-Key": ADMIN})
    assert start.status_code == 200, start.text


async def test_webhooks_need_an_admin_key(api: httpx.AsyncClient) -> None:
    body = {"url": "https://example.com/hook", "events": ["training_completed"]}
    for key in (READ, WRITE):
        for resp in (
            await api.get("/api/v1/webhooks", headers=bearer(key)),
            await api.post("/api/v1/webhooks", json=body, headers=bearer(key)),
        ):
            error = assert_envelope(resp, 403, "FORBIDDEN")
            assert error["details"]["required_scope"] == "admin"
    assert (await api.get("/api/v1/webhooks", headers=bearer(ADMIN))).status_code not in (401, 403)


async def test_health_metrics_docs_and_openapi_are_public(api: httpx.AsyncClient) -> None:
    for path in ("/api/v1/health", "/metrics", "/docs", "/redoc", "/api/v1/openapi.json"):
        resp = await api.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
    doc = (await api.get("/api/v1/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert {"apiKeyHeader": []} in doc["security"]


async def test_a_query_token_opens_sse_for_reads_but_never_writes(api: httpx.AsyncClient) -> None:
    sid = await create_session(api)
    url = f"/api/v1/sse/training/{sid}"
    assert_envelope(await api.get(url), 401, "UNAUTHORIZED")
    async with api.stream("GET", url, params={"access_token": READ}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
    # A token in a URL leaks into proxy logs: it does not authorize a write.
    resp = await api.post(f"{SESSIONS}/{sid}/start", params={"access_token": ADMIN})
    assert_envelope(resp, 401, "UNAUTHORIZED")


async def test_a_websocket_needs_a_key_and_takes_a_query_token(api: httpx.AsyncClient) -> None:
    sid = await create_session(api)
    url = str(api.base_url).replace("http://", "ws://") + f"/api/v1/ws/training/{sid}"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}")["error"]["code"] == "UNAUTHORIZED"
    for connect in (
        websockets.connect(f"{url}?access_token={READ}"),
        websockets.connect(url, additional_headers=bearer(READ)),
    ):
        async with connect as ws:
            message = json.loads(await ws.recv())
            assert message["type"] in {"heartbeat", "status", "metrics"}


async def test_the_access_log_names_the_key_and_never_shows_it(api: httpx.AsyncClient) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pivot_api.access")
    logger.addHandler(handler)
    try:
        await api.get(SESSIONS, headers={"X-API-Key": WRITE, "X-Request-ID": "who-1"})
        await api.get(SESSIONS, params={"access_token": READ}, headers={"X-Request-ID": "who-2"})
        await api.get(SESSIONS, headers={"X-Request-ID": "who-3"})
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    lines = {e.get("request_id"): e for e in map(json.loads, text.splitlines())}
    assert lines["who-1"]["api_key"] == "ci" and lines["who-2"]["api_key"] == "viewer"
    assert "api_key" not in lines["who-3"] and lines["who-3"]["status"] == 401
    assert WRITE not in text and READ not in text


async def test_head_on_a_list_route_needs_the_read_scope_and_has_no_body(
    api: httpx.AsyncClient,
) -> None:
    sid = await create_session(api)
    assert_envelope(await api.get(SESSIONS), 401, "UNAUTHORIZED")
    head = await api.head(SESSIONS)
    assert head.status_code == 401 and head.content == b""
    # A list, and one session (answered by pivot_api.fastpath).
    for path, headers in [(SESSIONS, {"X-API-Key": READ}), (f"{SESSIONS}/{sid}", bearer(READ))]:
        got = await api.get(path, headers=headers)
        head = await api.head(path, headers=headers)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == got.headers["content-length"]
    assert (await api.head(f"{SESSIONS}/sess-nosuch", headers=bearer(READ))).status_code == 404
    head = await api.head(SESSIONS, params={"access_token": READ})
    assert head.status_code == 200


async def test_head_on_a_live_stream_answers_at_once(api: httpx.AsyncClient) -> None:
    sid = await create_session(api)
    head = await api.head(f"/api/v1/sse/training/{sid}", headers=bearer(READ), timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/event-stream")
    # The server is not left streaming to nobody.
    assert (await api.get(SESSIONS, headers=bearer(READ))).status_code == 200


async def test_a_query_token_on_a_write_is_refused_with_the_way_to_send_it(
    api: httpx.AsyncClient,
) -> None:
    sid = await create_session(api)
    resp = await api.post(f"{SESSIONS}/{sid}/start", params={"access_token": ADMIN})
    error = assert_envelope(resp, 401, "UNAUTHORIZED")
    assert "only for reads and streams" in error["message"]
    assert "Authorization or X-API-Key header" in error["message"]
