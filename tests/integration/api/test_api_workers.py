"""The API as deployed: uvicorn with several workers, each with its own watch cache."""

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

from pivot_local.procs import free_port, wait_until_serving

from .api_platform import Platform, platform_settings, serve

pytestmark = pytest.mark.integration


@pytest.fixture
def uvicorn_api(
    kubeconfig: str,
    namespace: str,
    configs_dir: Path,
    redis_server: Any,
    s3_server: Any,
    tmp_path: Path,
) -> Iterator[str]:
    port = free_port("127.0.0.1")
    (tmp_path / "prometheus").mkdir()
    env = dict(
        os.environ,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        PIVOT_KUBECONFIG=kubeconfig,
        PIVOT_NAMESPACE=namespace,
        PIVOT_CONFIGS_DIR=str(configs_dir),
        PIVOT_REDIS_URL=redis_server.url,
        PIVOT_S3_ENDPOINT=s3_server.endpoint,
        PIVOT_S3_BUCKET=s3_server.bucket,
        PIVOT_S3_ACCESS_KEY=s3_server.access_key,
        PIVOT_S3_SECRET_KEY=s3_server.secret_key,
        PIVOT_RATE_LIMIT_ENABLED="false",  # see platform_settings
    )
    cmd = [sys.executable, "-m", "uvicorn", "pivot_api.app:app", "--workers", "3"]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env=env
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(f"{base}/api/v1/health", proc, timeout=20, what="uvicorn")
    yield base
    proc.terminate()
    proc.wait(10)


async def test_every_worker_sees_a_session_right_after_it_is_created(uvicorn_api: str) -> None:
    api = f"{uvicorn_api}/api/v1/training/sessions"
    for _ in range(10):
        # A fresh connection per request, so requests spread over the workers.
        async with httpx.AsyncClient() as http:
            created = await http.post(api, json={"config_path": "configs/train.yaml"})
        sid = created.json()["session_id"]
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{api}/{sid}")).status_code == 200
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"{api}/{sid}/start")).status_code == 200
    async with httpx.AsyncClient() as http:
        assert (await http.get(api)).json()["total"] == 10


async def test_prometheus_metrics_add_up_every_workers_requests(uvicorn_api: str) -> None:
    async with httpx.AsyncClient() as http:
        sid = (
            await http.post(
                f"{uvicorn_api}/api/v1/training/sessions", json={"config_path": "train.yaml"}
            )
        ).json()["session_id"]
    for _ in range(12):
        async with httpx.AsyncClient() as http:  # a fresh connection: any worker may answer
            await http.get(f"{uvicorn_api}/api/v1/training/sessions/{sid}")
    for _ in range(3):  # whichever worker answers the scrape reports the sum
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{uvicorn_api}/metrics")).text
        line = next(
            ln
            for ln in text.splitlines()
            if ln.startswith("pivot_api_requests_total{")
            and 'route="/api/v1/training/sessions/{session_id}"' in ln
        )
        assert float(line.rsplit(" ", 1)[1]) == 12


async def test_the_cache_follows_changes_across_watch_reconnects(
    kubeconfig: str,
    namespace: str,
    configs_dir: Path,
    redis_server: Any,
    s3_server: Any,
    platform: Platform,
) -> None:
    settings = platform_settings(
        kubeconfig=kubeconfig,
        namespace=namespace,
        configs_dir=configs_dir,
        redis_url=redis_server.url,
        s3=s3_server,
    ).model_copy(update={"watch_timeout_s": 1})
    async with serve(settings) as (_, http):
        sid = (await platform.create())["session_id"]
        # Cached here with no progress: only a watch event can change what it serves.
        assert (await http.get(f"/api/v1/training/sessions/{sid}")).status_code == 200
        await asyncio.sleep(1.5)  # the first watch request has ended by now
        await platform.patch_status(sid, {"phase": "Running", "currentEpoch": 2})
        deadline = time.monotonic() + 5
        while (await http.get(f"/api/v1/training/sessions/{sid}")).json()["current_epoch"] != 2:
            assert time.monotonic() < deadline, "the cache stopped following the watch"
            await asyncio.sleep(0.05)
