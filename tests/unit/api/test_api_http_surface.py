"""The error envelope, validation and docs, with every backing service down."""

from __future__ import annotations

import time

import httpx
from fastapi import FastAPI

API = "/api/v1"


def assert_envelope(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


async def test_unknown_routes_answer_the_404_envelope(offline_client: httpx.AsyncClient) -> None:
    assert_envelope(await offline_client.get(f"{API}/nowhere"), 404, "NOT_FOUND")


async def test_wrong_method_answers_an_envelope(offline_client: httpx.AsyncClient) -> None:
    assert_envelope(await offline_client.delete(f"{API}/health"), 405, "METHOD_NOT_ALLOWED")


async def test_a_body_with_both_config_sources_is_a_validation_error(
    offline_client: httpx.AsyncClient,
) -> None:
    resp = await offline_client.post(
        f"{API}/training/sessions", json={"config_path": "train.yaml", "config": {"epochs": 1}}
    )
    assert_envelope(resp, 422, "VALIDATION_ERROR")


async def test_a_wrongly_typed_field_is_named(offline_client: httpx.AsyncClient) -> None:
    resp = await offline_client.post(
        f"{API}/training/sessions", json={"config_path": "train.yaml", "tags": "not-a-list"}
    )
    error = assert_envelope(resp, 422, "VALIDATION_ERROR")
    assert error["details"]["field"] == "tags"  # type: ignore[index]


async def test_a_body_that_is_not_json_is_a_validation_error(
    offline_client: httpx.AsyncClient,
) -> None:
    resp = await offline_client.post(
        f"{API}/training/sessions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_envelope(resp, 422, "VALIDATION_ERROR")


async def test_query_limits_are_validated(offline_client: httpx.AsyncClient) -> None:
    for query in ("limit=0", "limit=1001", "offset=-1", "status=sleeping"):
        resp = await offline_client.get(f"{API}/training/sessions?{query}")
        error = assert_envelope(resp, 422, "VALIDATION_ERROR")
        assert error["details"]["field"] == query.split("=")[0]  # type: ignore[index]


async def test_history_rejects_an_inverted_epoch_range(offline_client: httpx.AsyncClient) -> None:
    resp = await offline_client.get(
        f"{API}/metrics/sess-abc/history?start_epoch=5&end_epoch=2&metric_name=val_loss"
    )
    assert_envelope(resp, 422, "VALIDATION_ERROR")


async def test_an_id_that_cannot_name_a_cr_is_not_found(offline_client: httpx.AsyncClient) -> None:
    assert_envelope(await offline_client.get(f"{API}/training/sessions/Bad_ID"), 404, "NOT_FOUND")


async def test_reads_answer_503_while_kubernetes_is_unreachable(
    offline_client: httpx.AsyncClient,
) -> None:
    resp = await offline_client.get(f"{API}/training/sessions/sess-abc")
    assert_envelope(resp, 503, "SERVICE_UNAVAILABLE")


async def test_unexpected_errors_answer_the_500_envelope_without_a_traceback(
    offline_app: FastAPI, offline_client: httpx.AsyncClient
) -> None:
    async def boom() -> None:
        raise RuntimeError("secret internals")

    offline_app.add_api_route(f"{API}/boom", boom)
    resp = await offline_client.get(f"{API}/boom")
    error = assert_envelope(resp, 500, "INTERNAL_ERROR")
    assert "secret internals" not in resp.text and "Traceback" not in resp.text
    assert error["message"] == "internal server error"


async def test_health_is_degraded_and_quick_when_everything_is_down(
    offline_client: httpx.AsyncClient,
) -> None:
    began = time.monotonic()
    resp = await offline_client.get(f"{API}/health")
    assert time.monotonic() - began < 3
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["components"] == {
        "database": "unhealthy",
        "filesystem": "unhealthy",
        "kubernetes": "unhealthy",
        "operator": "unhealthy",
        "kubelet": "unhealthy",
    }
    assert body["timestamp"].endswith("Z")
    assert set(body["system"]) == {"cpu_percent", "memory_percent", "disk_percent"}


async def test_openapi_and_docs_are_served(offline_client: httpx.AsyncClient) -> None:
    spec = (await offline_client.get(f"{API}/openapi.json")).json()
    assert f"{API}/training/sessions" in spec["paths"]
    assert f"{API}/metrics/{{session_id}}/history" in spec["paths"]
    assert (await offline_client.get("/docs")).status_code == 200
    assert (await offline_client.get("/redoc")).status_code == 200


async def test_writes_answer_503_while_kubernetes_is_unreachable(
    offline_client: httpx.AsyncClient,
) -> None:
    resp = await offline_client.post(f"{API}/training/sessions", json={"config_path": "train.yaml"})
    assert_envelope(resp, 503, "SERVICE_UNAVAILABLE")
    resp = await offline_client.post(f"{API}/training/sessions/sess-abc/start")
    assert_envelope(resp, 503, "SERVICE_UNAVAILABLE")


async def test_a_missing_config_file_is_404_before_kubernetes_is_asked(
    offline_client: httpx.AsyncClient,
) -> None:
    resp = await offline_client.post(f"{API}/training/sessions", json={"config_path": "no.yaml"})
    assert_envelope(resp, 404, "NOT_FOUND")
