"""Training sessions over HTTP: CRs written to Kubernetes, reads served from the watch cache."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.waiting import eventually

from .api_platform import Platform

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/training/sessions"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def error_code(resp: Any) -> str:
    return str(resp.json()["error"]["code"])


async def test_create_from_a_config_file_makes_a_suspended_cr(platform: Platform) -> None:
    created = await platform.create(session_name="experiment_001", tags=["unet", "focal-loss"])

    assert set(created) == {"session_id", "status", "created_at", "config"}
    assert re.match(r"^sess-[a-z0-9]{10}$", created["session_id"])
    assert created["status"] == "created"
    assert ISO_Z.match(created["created_at"])
    assert created["config"] == {
        "epochs": 4,
        "batch_size": 2,
        "learning_rate": 0.001,
        "model": {"name": "tiny-mlp"},
    }
    cr = await platform.cr(created["session_id"])
    assert cr["spec"]["suspend"] is True
    assert cr["spec"]["sessionName"] == "experiment_001"
    assert cr["spec"]["tags"] == ["unet", "focal-loss"]
    assert cr["spec"]["config"] == created["config"]


async def test_create_from_an_inline_config(platform: Platform) -> None:
    resp = await platform.http.post(SESSIONS, json={"config": {"epochs": 2, "seed": 7}})
    assert resp.status_code == 201
    cr = await platform.cr(resp.json()["session_id"])
    assert cr["spec"]["config"] == {"epochs": 2, "seed": 7}


async def test_get_right_after_create_sees_the_session(platform: Platform) -> None:
    created = await platform.create(session_name="fresh", tags=["t"])
    resp = await platform.http.get(f"{SESSIONS}/{created['session_id']}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["session_id"] == created["session_id"]
    assert body["session_name"] == "fresh"
    assert body["status"] == "created"
    assert body["created_at"] == created["created_at"]
    assert (body["current_epoch"], body["total_epochs"], body["progress"]) == (0, 4, 0.0)
    assert body["tags"] == ["t"]
    assert body["config"]["epochs"] == 4
    assert body["started_at"] is None and body["latest_metrics"] == {}


async def test_start_unsuspends_the_cr_and_a_second_start_conflicts(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]

    resp = await platform.http.post(f"{SESSIONS}/{sid}/start")
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"session_id", "status", "started_at"}
    assert body["status"] == "running" and ISO_Z.match(body["started_at"])
    assert (await platform.cr(sid))["spec"]["suspend"] is False
    # Read-your-write: the cache already holds the patched CR (no operator has run yet).
    assert (await platform.http.get(f"{SESSIONS}/{sid}")).json()["status"] == "pending"

    again = await platform.http.post(f"{SESSIONS}/{sid}/start")
    assert again.status_code == 409 and error_code(again) == "CONFLICT"
    assert "already running" in again.json()["error"]["message"]


async def test_stop_suspends_a_running_session(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    await platform.http.post(f"{SESSIONS}/{sid}/start")
    await platform.patch_status(sid, {"phase": "Running"})

    resp = await platform.http.post(f"{SESSIONS}/{sid}/stop")
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"session_id", "status", "stopped_at"}
    assert body["status"] == "stopped" and ISO_Z.match(body["stopped_at"])
    assert (await platform.cr(sid))["spec"]["suspend"] is True


async def test_stopping_a_stopped_session_conflicts_and_it_can_start_again(
    platform: Platform,
) -> None:
    sid = (await platform.create())["session_id"]
    await platform.patch_status(sid, {"phase": "Stopped"})

    resp = await platform.http.post(f"{SESSIONS}/{sid}/stop")
    assert resp.status_code == 409 and "already stopped" in resp.json()["error"]["message"]
    assert (await platform.http.post(f"{SESSIONS}/{sid}/start")).status_code == 200


async def test_stopping_a_session_never_started_conflicts(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    resp = await platform.http.post(f"{SESSIONS}/{sid}/stop")
    assert resp.status_code == 409 and error_code(resp) == "CONFLICT"
    assert (await platform.cr(sid))["spec"]["suspend"] is True


async def test_stop_works_before_the_operator_has_seen_the_start(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    await platform.patch_status(sid, {"phase": "Created"})  # as the operator left it
    assert (await platform.http.post(f"{SESSIONS}/{sid}/start")).status_code == 200
    resp = await platform.http.post(f"{SESSIONS}/{sid}/stop")
    assert resp.status_code == 200, resp.text
    assert (await platform.cr(sid))["spec"]["suspend"] is True


async def test_start_works_before_the_operator_has_seen_the_stop(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    await platform.http.post(f"{SESSIONS}/{sid}/start")
    await platform.patch_status(sid, {"phase": "Running"})
    assert (await platform.http.post(f"{SESSIONS}/{sid}/stop")).status_code == 200
    resp = await platform.http.post(f"{SESSIONS}/{sid}/start")
    assert resp.status_code == 200, resp.text
    assert (await platform.cr(sid))["spec"]["suspend"] is False
    again = await platform.http.post(f"{SESSIONS}/{sid}/start")
    assert again.status_code == 409 and "already running" in again.json()["error"]["message"]


@pytest.mark.parametrize("phase", ["Completed", "Failed"])
async def test_finished_sessions_cannot_start_or_stop(platform: Platform, phase: str) -> None:
    sid = (await platform.create())["session_id"]
    await platform.patch_status(sid, {"phase": phase})
    for verb in ("start", "stop"):
        resp = await platform.http.post(f"{SESSIONS}/{sid}/{verb}")
        assert resp.status_code == 409, verb
        assert resp.json()["error"]["details"]["status"] == phase.lower()


async def test_unknown_sessions_are_404_everywhere(platform: Platform) -> None:
    sid = "sess-doesnotexist"
    for method, path in [
        ("GET", f"{SESSIONS}/{sid}"),
        ("POST", f"{SESSIONS}/{sid}/start"),
        ("POST", f"{SESSIONS}/{sid}/stop"),
        ("GET", f"{SESSIONS}/{sid}/metrics"),
        ("GET", f"/api/v1/metrics/{sid}/history"),
    ]:
        resp = await platform.http.request(method, path)
        assert resp.status_code == 404, path
        assert error_code(resp) == "NOT_FOUND"


async def test_a_missing_config_file_is_404_and_creates_nothing(platform: Platform) -> None:
    resp = await platform.http.post(SESSIONS, json={"config_path": "configs/nope.yaml"})
    assert resp.status_code == 404 and error_code(resp) == "NOT_FOUND"
    assert await platform.crs() == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"config_path": "configs/train.yaml", "config": {"epochs": 1}},
        {"config": {"epochs": 0}},
        {"config": {"batch_size": 4}},
        {"config": {"epochs": 2, "learning_rate": -1}},
        {"config_path": "configs/broken.yaml"},
        {"config_path": "configs/garbled.yaml"},
        {"config_path": "../outside.yaml"},
        {"config": {"epochs": 2}, "tags": ["x" * 64]},
    ],
)
async def test_invalid_requests_are_422_and_create_nothing(
    platform: Platform, body: dict[str, Any]
) -> None:
    resp = await platform.http.post(SESSIONS, json=body)
    assert resp.status_code == 422, resp.text
    assert error_code(resp) == "VALIDATION_ERROR"
    assert await platform.crs() == []


async def test_get_reflects_the_status_the_operator_writes(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    await platform.http.post(f"{SESSIONS}/{sid}/start")
    await platform.patch_status(
        sid,
        {
            "phase": "Running",
            "currentEpoch": 1,
            "totalEpochs": 4,
            "latestMetrics": {"train_loss": 0.5, "val_loss": 0.6},
            "startedAt": "2025-12-19T10:30:05Z",
            "message": "epoch 1 done",
        },
    )

    async def shows_running() -> bool:
        body = (await platform.http.get(f"{SESSIONS}/{sid}")).json()
        return bool(body["status"] == "running" and body["current_epoch"] == 1)

    await eventually(shows_running, what="epoch 1 running")
    body = (await platform.http.get(f"{SESSIONS}/{sid}")).json()
    assert body["progress"] == 0.25
    assert body["latest_metrics"] == {"train_loss": 0.5, "val_loss": 0.6}
    assert body["started_at"] == "2025-12-19T10:30:05Z"
    assert body["message"] == "epoch 1 done"


async def test_a_cr_applied_directly_shows_up_through_the_watch(platform: Platform) -> None:
    from pivot_schema.crd import GROUP, PLURAL, VERSION, TrainingSessionSpec, new_training_session

    body = new_training_session(
        "by-kubectl", TrainingSessionSpec.model_validate({"config": {"epochs": 3}})
    )
    await platform.objects.create_namespaced_custom_object(
        GROUP, VERSION, platform.namespace, PLURAL, body
    )

    async def listed() -> bool:
        resp = await platform.http.get(SESSIONS)
        return any(s["session_id"] == "by-kubectl" for s in resp.json()["sessions"])

    await eventually(listed, what="the CR in the list")
    detail = (await platform.http.get(f"{SESSIONS}/by-kubectl")).json()
    assert detail["status"] == "pending" and detail["total_epochs"] == 3


async def test_list_is_newest_first_paginated_and_filtered(platform: Platform) -> None:
    ids = [(await platform.create(session_name=f"run-{i}"))["session_id"] for i in range(3)]
    await platform.http.post(f"{SESSIONS}/{ids[1]}/start")

    page = (await platform.http.get(f"{SESSIONS}?limit=2&offset=0")).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    assert [s["session_id"] for s in page["sessions"]] == [ids[2], ids[1]]
    first = page["sessions"][0]
    assert set(first) == {
        "session_id",
        "session_name",
        "status",
        "created_at",
        "current_epoch",
        "total_epochs",
        "tags",
    }
    rest = (await platform.http.get(f"{SESSIONS}?limit=2&offset=2")).json()
    assert [s["session_id"] for s in rest["sessions"]] == [ids[0]]

    pending = (await platform.http.get(f"{SESSIONS}?status=pending")).json()
    assert [s["session_id"] for s in pending["sessions"]] == [ids[1]] and pending["total"] == 1
    created = (await platform.http.get(f"{SESSIONS}?status=created")).json()
    assert created["total"] == 2
    running = (await platform.http.get(f"{SESSIONS}?status=running")).json()
    assert running == {"sessions": [], "total": 0, "limit": 50, "offset": 0}
