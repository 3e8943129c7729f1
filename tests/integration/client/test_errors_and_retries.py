"""Error classes and retries for answers the platform cannot give yet (401, 403, 429, 503),
against a small real HTTP server that gives them. Delays are recorded, not waited out."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pivot_client import (
    APIConnectionError,
    AsyncPIVOTClient,
    AuthenticationError,
    InternalServerError,
    PermissionDeniedError,
    PIVOTClient,
    RateLimitError,
)
from pivot_client._base import SSEDecoder, retry_after_seconds

from .servers import Reply, ScriptedAPI, error

SESSION = {"session_id": "sess-abc", "status": "running", "total_epochs": 3, "config": {}}


@pytest.fixture()
def delays() -> list[float]:
    return []


def client_for(api: ScriptedAPI, delays: list[float], **kwargs: object) -> PIVOTClient:
    client = PIVOTClient(api.url, **kwargs)  # type: ignore[arg-type]
    client._sleep = delays.append
    return client


def test_api_key_from_env_is_sent_as_bearer_and_401_is_authentication_error(
    monkeypatch: pytest.MonkeyPatch, delays: list[float]
) -> None:
    monkeypatch.setenv("PIVOT_API_KEY", "pk-test")
    with (
        ScriptedAPI([error(401, "UNAUTHORIZED", "invalid API key")]) as api,
        client_for(api, delays) as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        client.get_session("sess-abc")
    assert api.seen[0].headers["Authorization"] == "Bearer pk-test"
    assert caught.value.code == "UNAUTHORIZED"
    assert caught.value.message == "invalid API key"
    assert delays == []  # 401 is not retried


def test_403_is_permission_denied(delays: list[float]) -> None:
    with (
        ScriptedAPI([error(403, "FORBIDDEN", "no")]) as api,
        client_for(api, delays) as client,
        pytest.raises(PermissionDeniedError),
    ):
        client.health()


def test_url_from_env_gets_the_api_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedAPI([Reply(200, SESSION)]) as api:
        monkeypatch.setenv("PIVOT_URL", api.url)
        with PIVOTClient() as client:
            assert client.get_session("sess-abc")["status"] == "running"
    assert api.seen[0].path == "/api/v1/training/sessions/sess-abc"


def test_429_is_retried_after_the_servers_retry_after(delays: list[float]) -> None:
    replies = [error(429, "RATE_LIMITED", "slow down", **{"Retry-After": "7"}), Reply(200, SESSION)]
    with ScriptedAPI(replies) as api, client_for(api, delays) as client:
        session = client.get_session("sess-abc")
    assert session.status == "running"
    assert delays == [7.0]
    assert len(api.seen) == 2


def test_retries_are_bounded_then_rate_limit_error(delays: list[float]) -> None:
    replies = [error(429, "RATE_LIMITED", "slow down", **{"Retry-After": "1"})]
    with (
        ScriptedAPI(replies) as api,
        client_for(api, delays, max_retries=3) as client,
        pytest.raises(RateLimitError) as caught,
    ):
        client.list_sessions_page()
    assert caught.value.status_code == 429
    assert len(api.seen) == 4 and delays == [1.0, 1.0, 1.0]


def test_503_without_retry_after_backs_off_exponentially(delays: list[float]) -> None:
    replies = [error(503, "SERVICE_UNAVAILABLE", "redis down")] * 2 + [Reply(200, SESSION)]
    with ScriptedAPI(replies) as api, client_for(api, delays) as client:
        client.get_session("sess-abc")
    assert len(delays) == 2 and 0 < delays[0] < delays[1]


def test_post_is_not_repeated_after_the_server_saw_it(delays: list[float]) -> None:
    replies = [error(429, "RATE_LIMITED", "slow down", **{"Retry-After": "1"})]
    with (
        ScriptedAPI(replies) as api,
        client_for(api, delays) as client,
        pytest.raises(RateLimitError),
    ):
        client.start_training("sess-abc")
    assert len(api.seen) == 1 and delays == []


def test_post_is_retried_when_it_never_connected(delays: list[float]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    client = PIVOTClient(f"http://127.0.0.1:{port}", max_retries=2)
    client._sleep = delays.append
    with client, pytest.raises(APIConnectionError):
        client.create_session(config={"epochs": 1})
    assert len(delays) == 2


def test_error_without_envelope_keeps_the_text(delays: list[float]) -> None:
    with (
        ScriptedAPI([Reply(500, "<html>bad gateway</html>")]) as api,
        client_for(api, delays) as client,
        pytest.raises(InternalServerError) as caught,
    ):
        client.get_session("x")
    assert "bad gateway" in caught.value.message


async def test_async_client_honours_retry_after() -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    replies = [
        error(429, "RATE_LIMITED", "slow", **{"retry-after-ms": "1500"}),
        Reply(200, SESSION),
    ]
    with ScriptedAPI(replies) as api:
        async with AsyncPIVOTClient(api.url) as client:
            client._sleep = record
            session = await client.get_session("sess-abc")
    assert session.session_id == "sess-abc" and delays == [1.5]


def test_retry_after_as_http_date_is_understood() -> None:
    import httpx

    assert retry_after_seconds(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0
    assert retry_after_seconds(httpx.Headers({})) is None


def test_sse_decoder_dispatches_only_complete_events() -> None:
    decoder = SSEDecoder()
    lines = ["retry: 1000", "", ": heartbeat", "", "id: 1-0_0-0", "event: metrics"]
    lines += ['data: {"epoch": 1}', "", "id: 2-0_0-0", "event: metrics", 'data: {"ep']
    events = [e for e in map(decoder.decode, lines) if e is not None]
    # The retry-only frame carries no data and is kept for its reconnect delay.
    assert [(e.event, e.id, e.data) for e in events if e.data] == [
        ("metrics", "1-0_0-0", '{"epoch": 1}')
    ]


@pytest.fixture()
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PIVOT_URL", raising=False)
    monkeypatch.delenv("PIVOT_API_KEY", raising=False)
    yield


def test_defaults_without_env(no_env: None) -> None:
    with PIVOTClient() as client:
        assert client.base_url == "http://localhost:8000/api/v1"
        assert client.api_key is None
