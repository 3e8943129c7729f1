"""Rate limits as the reference has them, shared through Redis by every worker: headers on
every response, 429 with Retry-After and the envelope past the limit, fail open without Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pivot_api.settings import Settings
from pivot_local.procs import free_port, wait_until_serving

from .api_platform import Platform, serve

pytestmark = pytest.mark.integration

KEY = "pvt_ratelimit_" + "k" * 32
SESSIONS = "/api/v1/training/sessions"
HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.fixture
def four_workers(
    kubeconfig: str,
    namespace: str,
    configs_dir: Path,
    redis_server: Any,
    s3_server: Any,
    tmp_path: Path,
) -> Iterator[tuple[str, Path]]:
    """`uvicorn pivot_api.app:app --workers 4` with the default limits and keys on, its
    access log in a file. Yields the base URL and the log."""
    port = free_port("127.0.0.1")
    env = dict(
        os.environ,
        PIVOT_KUBECONFIG=kubeconfig,
        PIVOT_NAMESPACE=namespace,  # the limiter's Redis keys are per namespace: per test
        PIVOT_CONFIGS_DIR=str(configs_dir),
        PIVOT_REDIS_URL=redis_server.url,
        PIVOT_S3_ENDPOINT=s3_server.endpoint,
        PIVOT_S3_BUCKET=s3_server.bucket,
        PIVOT_S3_ACCESS_KEY=s3_server.access_key,
        PIVOT_S3_SECRET_KEY=s3_server.secret_key,
        PIVOT_AUTH_ENABLED="true",
        PIVOT_API_KEYS=f"test:read:{KEY}",
        PIVOT_RATE_LIMIT_ENABLED="true",
        PIVOT_RATE_LIMITS="100/minute;1000/hour",
        PIVOT_BACKGROUND_JOBS="false",
    )
    log = tmp_path / "uvicorn.log"
    cmd = [sys.executable, "-m", "uvicorn", "pivot_api.app:app", "--workers", "4"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(f"{base}/api/v1/health", proc, timeout=60, what="uvicorn", log=log)
    try:
        yield base, log
    finally:
        proc.terminate()
        proc.wait(15)


def remaining(resp: httpx.Response) -> int:
    return int(resp.headers["X-RateLimit-Remaining"])


async def test_the_101st_request_in_a_minute_is_429_across_four_workers(
    four_workers: tuple[str, Path],
) -> None:
    base, log = four_workers
    started = time.time()
    seen: list[int] = []
    # Fresh connections, so uvicorn's workers share the requests between them.
    clients = [httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}) for _ in range(8)]
    try:
        for i in range(100):
            resp = await clients[i % len(clients)].get(SESSIONS)
            assert resp.status_code == 200, (i, resp.text)
            assert resp.headers["X-RateLimit-Limit"] == "100"
            assert started <= int(resp.headers["X-RateLimit-Reset"]) <= time.time() + 61
            seen.append(remaining(resp))
            if i % 10 == 9:  # a new connection now and then lands on another worker
                await clients[i % len(clients)].aclose()
                clients[i % len(clients)] = httpx.AsyncClient(
                    base_url=base, headers={"X-API-Key": KEY}
                )
        assert seen == list(range(99, -1, -1))
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}) as http:
            refused = await http.get(SESSIONS)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "RATE_LIMITED"
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert remaining(refused) == 0
            # Refused before the key check: guessing keys is limited too.
            assert (await http.get(SESSIONS, headers={"X-API-Key": "x" * 20})).status_code == 429
            assert (await http.get("/api/v1/health")).status_code == 200  # probes are exempt
            assert "X-RateLimit-Limit" not in (await http.get("/metrics")).headers
    finally:
        for client in clients:
            await client.aclose()
    # Several workers answered (each writes its own startup lines), and uvicorn's access
    # log never shows a query token.
    async with httpx.AsyncClient(base_url=base) as http:
        await http.get("/api/v1/health", params={"access_token": "SECRET-TOKEN-123"})
    await asyncio.sleep(0.5)
    text = log.read_text()
    assert text.count("Application startup complete") == 4
    assert "SECRET-TOKEN-123" not in text and "access_token=[redacted]" in text


@pytest.fixture
def limited(platform: Platform) -> Any:
    def settings(**update: Any) -> Settings:
        base: Settings = platform.app.state.settings
        return base.model_copy(update={"rate_limit_enabled": True, **update})

    return settings


async def test_the_hourly_limit_counts_too_and_headers_show_the_tightest(limited: Any) -> None:
    async with serve(limited(rate_limits="100/minute;12/hour")) as (_, http):
        first = await http.get(SESSIONS)
        assert first.headers["X-RateLimit-Limit"] == "12" and remaining(first) == 11
        assert int(first.headers["X-RateLimit-Reset"]) >= time.time() + 3590
        for _ in range(11):
            assert (await http.get(SESSIONS)).status_code == 200
        refused = await http.get(SESSIONS)
        assert refused.status_code == 429 and refused.headers["X-RateLimit-Limit"] == "12"
        assert 3590 <= int(refused.headers["Retry-After"]) <= 3600


async def test_every_response_carries_the_headers_errors_included(limited: Any) -> None:
    keys = SecretStr(f"t:read:{KEY}")
    async with serve(limited(rate_limits="3/minute", auth_enabled=True, api_keys=keys)) as (
        _,
        http,
    ):
        responses = [
            await http.get(SESSIONS),  # 401
            await http.get(f"{SESSIONS}/sess-nope", headers={"X-API-Key": KEY}),  # 404
            await http.post(SESSIONS, json={}, headers={"X-API-Key": KEY}),  # 403
        ]
        assert [r.status_code for r in responses] == [401, 404, 403]
        assert [remaining(r) for r in responses] == [2, 1, 0]
        for resp in responses:
            assert all(h in resp.headers for h in HEADERS) and "error" in resp.json()


async def test_forwarded_for_counts_only_with_trusted_proxies(limited: Any) -> None:
    def via(ip: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip}

    async with serve(limited(rate_limits="2/minute")) as (_, http):
        for ip in ("1.1.1.1", "2.2.2.2"):
            await http.get(SESSIONS, headers=via(ip))
        # Ignored: both came from the same peer, whose budget is now spent.
        assert (await http.get(SESSIONS, headers=via("3.3.3.3"))).status_code == 429
    async with serve(limited(rate_limits="2/minute", rate_limit_trusted_proxies=1)) as (_, http):
        for _ in range(2):
            assert (await http.get(SESSIONS, headers=via("4.4.4.4"))).status_code == 200
        assert (await http.get(SESSIONS, headers=via("4.4.4.4"))).status_code == 429
        assert (await http.get(SESSIONS, headers=via("9.9.9.9, 5.5.5.5"))).status_code == 200


async def test_without_redis_the_limiter_fails_open(limited: Any) -> None:
    dead = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"
    async with serve(limited(redis_url=dead, rate_limit_timeout_s=0.2)) as (app, http):
        for _ in range(3):
            resp = await http.get(SESSIONS)
            assert resp.status_code == 200, resp.text
            assert "X-RateLimit-Limit" not in resp.headers
        assert app.state.rate_limiter is not None
