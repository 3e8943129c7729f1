"""Notifications made from platform events (training lifecycle from the CR, alerts, system
events) by the consumer group, and read, filtered, marked and cleared over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from pivot_api.events import SYSTEM_EVENT, TRAINING_COMPLETED, new_event, publish
from pivot_api.notifications.service import NotificationStore

from .alerting import alerting, running_session, until
from .api_platform import Platform

pytestmark = pytest.mark.integration
__all__ = ["alerting"]

URL = "/api/v1/notifications"


async def notifications(platform: Platform, **params: Any) -> dict[str, Any]:
    resp = await platform.http.get(URL, params=params)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def ids(body: dict[str, Any]) -> list[str]:
    return [n["id"] for n in body["notifications"]]


async def test_a_completed_session_makes_a_notification_with_its_final_metrics(
    alerting: Platform,
) -> None:
    sid = await running_session(alerting)
    await alerting.patch_status(
        sid, {"phase": "Completed", "latestMetrics": {"val_froc": 0.856, "val_loss": 0.2}}
    )

    async def completed() -> list[dict[str, Any]]:
        found = (await notifications(alerting, type="training"))["notifications"]
        return [n for n in found if "completed" in n["message"]]

    (note,) = await until(completed, what="a completion notification")
    assert note["id"].startswith("notif_")
    assert note["type"] == "training" and note["priority"] == "high" and note["read"] is False
    assert note["message"] == f"Training session {sid} completed"
    assert note["data"]["session_id"] == sid
    assert note["data"]["final_metrics"] == {"val_froc": 0.856, "val_loss": 0.2}
    assert note["created_at"].endswith("Z") and note["event_type"] == TRAINING_COMPLETED
    # The start before it is what its owner just did: no notification.
    assert len((await notifications(alerting, type="training"))["notifications"]) == 1


async def test_alerts_and_system_events_become_notifications_and_filters_apply(
    alerting: Platform,
) -> None:
    keys = alerting.app.state.api_keys
    rule = {
        "name": "cpu_any",
        "metric": "cpu_percent",
        "condition": "greater_than",
        "threshold": -1,
        "severity": "critical",
    }
    assert (await alerting.http.post("/api/v1/alerts/rules", json=rule)).status_code == 201
    await publish(
        alerting.redis, keys, SYSTEM_EVENT, {"message": "Redis failover", "priority": "low"}
    )

    async def both() -> dict[str, Any]:
        body = await notifications(alerting)
        return body if len(body["notifications"]) >= 2 else {}

    body = await until(both, what="two notifications")
    assert body["unread_count"] == len(body["notifications"])
    (alert,) = (await notifications(alerting, type="alert"))["notifications"]
    assert alert["priority"] == "high" and alert["message"].startswith("Alert cpu_any")
    assert alert["data"]["severity"] == "critical" and alert["data"]["alert_id"]
    (system,) = (await notifications(alerting, type="system"))["notifications"]
    assert system["message"] == "Redis failover" and system["priority"] == "low"
    assert ids(await notifications(alerting, priority="low")) == [system["id"]]
    assert ids(await notifications(alerting, priority="medium")) == []

    resp = await alerting.http.post(f"{URL}/{system['id']}/read")
    assert resp.status_code == 200, resp.text
    assert resp.json()["read"] is True and resp.json()["id"] == system["id"]
    unread = await notifications(alerting, unread="true")
    assert system["id"] not in ids(unread) and alert["id"] in ids(unread)
    assert ids(await notifications(alerting, unread="false")) == [system["id"]]
    assert unread["unread_count"] == body["unread_count"] - 1
    assert len(ids(await notifications(alerting, limit=1))) == 1

    resp = await alerting.http.delete(URL)
    assert resp.status_code == 200 and "cleared" in resp.json()["message"]
    after = await notifications(alerting)
    assert after == {"notifications": [], "unread_count": 0}


async def test_unknown_notifications_and_bad_filters_get_envelopes(alerting: Platform) -> None:
    for path in (f"{URL}/notif_nope/read", f"{URL}/nope/read"):
        resp = await alerting.http.post(path)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "NOT_FOUND"
    for params in ({"type": "billing"}, {"priority": "urgent"}, {"unread": "maybe"}):
        resp = await alerting.http.get(URL, params=params)
        assert resp.status_code == 422, params
        assert resp.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_an_event_handled_twice_makes_one_notification(alerting: Platform) -> None:
    store: NotificationStore = alerting.app.state.notifications
    event = new_event(SYSTEM_EVENT, {"message": "disk replaced"})
    await store.handle(event)
    await store.handle(event)  # redelivered after a worker died before its ack
    found = [
        n
        for n in (await notifications(alerting))["notifications"]
        if n["message"] == "disk replaced"
    ]
    assert len(found) == 1


async def test_storage_is_bounded(alerting: Platform) -> None:
    store: NotificationStore = alerting.app.state.notifications
    small = NotificationStore(store.redis, store.keys, max_notifications=3)
    for n in range(5):
        await small.handle(new_event(SYSTEM_EVENT, {"message": f"m{n}"}))
    body = await notifications(alerting)
    assert [n["message"] for n in body["notifications"]] == ["m4", "m3", "m2"]
    assert body["unread_count"] == 3
