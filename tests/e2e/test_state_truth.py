"""One truth for a session's state on a real platform: once a live stream has ended on a
session's end, every API replica says so, with the last epoch's metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from pivot_local.platform import LocalPlatform
from pivot_local.procs import free_port, spawn, terminate, wait_until_serving
from tests.support.platform import TINY_CONFIG, logs_of

pytestmark = pytest.mark.integration

REPLICAS = 4
SESSIONS = 20
# Small runs, so twenty of them fit in a minute on two cores.
CONFIG = {**TINY_CONFIG, "epochs": 2, "num_train": 32, "num_val": 16}


@pytest.fixture(scope="module")
def replicas(platform: LocalPlatform) -> Iterator[list[str]]:
    """The platform's API and three more replicas of it, each with its own watch cache."""
    extra: list[subprocess.Popen[bytes]] = []
    urls = [platform.api_url]
    try:
        for i in range(REPLICAS - 1):
            port = free_port(platform.host)
            log = platform.logs / f"api-replica-{i}.log"
            argv = [sys.executable, "-m", "uvicorn", "pivot_api.app:app", "--no-access-log"]
            with open(log, "ab") as out:
                proc = spawn(
                    [*argv, "--host", platform.host, "--port", str(port)],
                    env=platform.api_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            extra.append(proc)
            url = f"http://{platform.host}:{port}"
            wait_until_serving(f"{url}/api/v1/health", proc, timeout=60, what="a replica", log=log)
            urls.append(url)
        yield urls
    finally:
        for proc in extra:
            terminate(proc)


def _stream_until_it_ends(http: httpx.Client, sid: str) -> list[dict[str, Any]]:
    statuses = []
    with http.stream("GET", f"/sse/training/{sid}", timeout=120) as resp:
        assert resp.status_code == 200
        event = None
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "status":
                statuses.append(json.loads(line.partition(":")[2]))
    return statuses


def _train_and_check(
    platform: LocalPlatform, urls: list[str], i: int
) -> tuple[str, list[dict[str, Any]]]:
    headers = platform.api_headers()
    clients = [httpx.Client(base_url=f"{u}/api/v1", headers=headers, timeout=30) for u in urls]
    try:
        writer, reader = clients[i % REPLICAS], clients[(i + 1) % REPLICAS]
        created = writer.post(
            "/training/sessions", json={"config": CONFIG, "session_name": f"truth-{i}"}
        )
        assert created.status_code == 201, created.text
        sid = created.json()["session_id"]
        assert writer.post(f"/training/sessions/{sid}/start").status_code == 200
        statuses = _stream_until_it_ends(reader, sid)
        assert statuses and statuses[-1]["status"] == "completed", statuses
        last = reader.get(f"/training/sessions/{sid}/metrics").json()["metrics"][-1]
        want = {k: v for k, v in last.items() if k not in ("epoch", "timestamp")}
        seen = []
        for http in clients:  # right after the stream ended, every replica agrees
            got = http.get(f"/training/sessions/{sid}").json()
            listed = next(
                s
                for s in http.get("/training/sessions", params={"limit": 500}).json()["sessions"]
                if s["session_id"] == sid
            )
            seen.append(
                (got["status"], got["current_epoch"], got["latest_metrics"], listed["status"])
            )
        assert seen == [("completed", CONFIG["epochs"], want, "completed")] * REPLICAS, (
            sid,
            last,
            seen,
        )
        return sid, statuses
    finally:
        for http in clients:
            http.close()


def test_after_each_stream_ends_every_replica_reads_the_end_with_the_last_metrics(
    platform: LocalPlatform, replicas: list[str]
) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda i: _train_and_check(platform, replicas, i), range(SESSIONS)))
    assert len({sid for sid, _ in runs}) == SESSIONS, logs_of(platform)
