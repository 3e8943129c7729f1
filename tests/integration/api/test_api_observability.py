"""Observability: request ids in and out, JSON access logs, Prometheus metrics by route."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from pivot_api.observability import JsonFormatter

from .api_platform import Platform

pytestmark = pytest.mark.integration


@pytest.fixture
def access_log() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pivot_api.access")
    logger.addHandler(handler)
    yield out
    logger.removeHandler(handler)


async def test_a_request_id_is_echoed_or_generated(platform: Platform) -> None:
    given = await platform.http.get("/api/v1/health", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    fresh = await platform.http.get("/api/v1/health")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    hostile = await platform.http.get("/api/v1/health", headers={"X-Request-ID": "a b\tc"})
    assert hostile.headers["x-request-id"] != "a b\tc"


async def test_error_responses_carry_the_request_id_too(platform: Platform) -> None:
    resp = await platform.http.get(
        "/api/v1/training/sessions/sess-nope", headers={"X-Request-ID": "trace-404"}
    )
    assert resp.status_code == 404 and resp.headers["x-request-id"] == "trace-404"


async def test_access_log_lines_are_json_with_the_request_id_and_route(
    platform: Platform, access_log: io.StringIO
) -> None:
    sid = (await platform.create())["session_id"]
    await platform.http.get(
        f"/api/v1/training/sessions/{sid}", headers={"X-Request-ID": "trace-log"}
    )
    lines = [json.loads(line) for line in access_log.getvalue().splitlines()]
    line = next(entry for entry in lines if entry.get("request_id") == "trace-log")
    assert line["route"] == "/api/v1/training/sessions/{session_id}"
    assert line["path"] == f"/api/v1/training/sessions/{sid}"
    assert (line["method"], line["status"], line["level"]) == ("GET", 200, "INFO")
    assert line["duration_ms"] >= 0 and line["ts"].endswith("Z")


def sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = line[len(name) :].split(" ")[0].strip("{}")
            if ",".join(sorted(got.split(","))) == want or (not labels and not got):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_prometheus_counts_requests_by_route_template(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    route = "/api/v1/training/sessions/{session_id}"
    before = sample(
        (await platform.http.get("/metrics")).text,
        "pivot_api_requests_total",
        method="GET",
        route=route,
        status="200",
    )
    for _ in range(3):
        await platform.http.get(f"/api/v1/training/sessions/{sid}")
    resp = await platform.http.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    after = sample(text, "pivot_api_requests_total", method="GET", route=route, status="200")
    assert after - before == 3
    assert sid not in text  # raw paths never become labels
    assert "pivot_api_request_duration_seconds_bucket" in text
    assert sample(text, "pivot_api_session_cache_objects") >= 1
