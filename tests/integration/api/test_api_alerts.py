"""Alert rules and alerts over HTTP, evaluated by the real leader job against the Kubernetes
API emulator's sessions and metric records in a real Redis."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from pivot_api.events import ALERT_RESOLVED, ALERT_TRIGGERED, PlatformEvent
from pivot_schema import keys as schema_keys

from .alerting import INTERVAL_S, alerting, running_session, until, write_epoch
from .api_platform import Platform, serve

pytestmark = pytest.mark.integration
__all__ = ["alerting"]

RULES = "/api/v1/alerts/rules"
ALWAYS = {"name": "cpu_any", "metric": "cpu_percent", "condition": "greater_than", "threshold": -1}


async def create_rule(platform: Platform, **body: Any) -> dict[str, Any]:
    resp = await platform.http.post(RULES, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def alerts(platform: Platform, **params: Any) -> list[dict[str, Any]]:
    resp = await platform.http.get("/api/v1/alerts", params=params)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["alerts"])


async def alerts_of(platform: Platform, rule_id: str, **params: Any) -> list[dict[str, Any]]:
    return [a for a in await alerts(platform, **params) if a["rule_id"] == rule_id]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def bus(platform: Platform, type_: str) -> list[PlatformEvent]:
    keys = platform.app.state.api_keys
    entries = await platform.redis.xrange(keys.events) or []
    events = [PlatformEvent.from_fields(_text(i), dict(f or {})) for i, f in entries]
    return [e for e in events if e.type == type_]


async def rounds(n: int) -> None:
    """Let the evaluator run about `n` more rounds."""
    await asyncio.sleep(n * INTERVAL_S + 0.05)


def assert_envelope(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return dict(body["error"])


async def test_rules_are_created_listed_updated_and_deleted(alerting: Platform) -> None:
    http = alerting.http
    rule = await create_rule(
        alerting,
        name="high_memory_usage",
        metric="memory_percent",
        condition="greater_than",
        threshold=85.0,
        severity="high",
        enabled=True,
    )
    assert rule["rule_id"].startswith("rule_")
    assert rule["threshold"] == 85.0 and rule["severity"] == "high" and rule["enabled"]
    assert rule["created_at"].endswith("Z")
    rid = rule["rule_id"]
    listed = (await http.get(RULES)).json()["rules"]
    assert [r["rule_id"] for r in listed] == [rid]
    assert (await http.get(f"{RULES}/{rid}")).json() == rule

    resp = await http.patch(f"{RULES}/{rid}", json={"enabled": False, "threshold": 95})
    assert resp.status_code == 200, resp.text
    assert resp.json()["enabled"] is False and resp.json()["threshold"] == 95.0
    assert resp.json()["name"] == "high_memory_usage"  # untouched fields stay

    replaced = {
        "name": "loss_watch",
        "metric": "val_loss",
        "condition": "no_improvement_for",
        "for_epochs": 3,
        "tag": "prod",
    }
    resp = await http.put(f"{RULES}/{rid}", json=replaced)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert got["rule_id"] == rid and got["created_at"] == rule["created_at"]
    assert got["threshold"] is None and got["tag"] == "prod" and got["for_epochs"] == 3

    deleted = await http.delete(f"{RULES}/{rid}")
    assert deleted.status_code == 200 and rid in deleted.json()["message"]
    assert_envelope(await http.get(f"{RULES}/{rid}"), 404, "NOT_FOUND")
    assert_envelope(await http.delete(f"{RULES}/{rid}"), 404, "NOT_FOUND")
    assert_envelope(await http.patch(f"{RULES}/{rid}", json={"enabled": True}), 404, "NOT_FOUND")
    assert_envelope(await http.put(f"{RULES}/{rid}", json=replaced), 404, "NOT_FOUND")


async def test_bad_rule_bodies_get_the_validation_envelope(alerting: Platform) -> None:
    http = alerting.http
    bad = [
        {"name": "x", "metric": "cpu_percent", "condition": "greater_than"},  # no threshold
        {"name": "x", "metric": "cpu_percent", "condition": "above", "threshold": 1},
        {"name": "x", "metric": "cpu_percent", "condition": "stalled"},  # host: no epochs
        {"name": "", "metric": "val_loss", "condition": "is_nan"},
        {"name": "x", "metric": "val_loss", "condition": "is_nan", "severity": "urgent"},
        {"name": "x", "metric": "val_loss", "condition": "is_nan", "action": "reboot"},
        {"name": "x", "metric": "val_loss", "condition": "no_improvement_for", "for_epochs": 0},
    ]
    for body in bad:
        assert_envelope(await http.post(RULES, json=body), 422, "VALIDATION_ERROR")
    err = assert_envelope(await http.post(RULES, content=b"{nope"), 422, "VALIDATION_ERROR")
    assert err["details"]["location"] == "body"

    rule = await create_rule(alerting, name="nan", metric="val_loss", condition="is_nan")
    # The rule after the change would compare without a threshold.
    err = assert_envelope(
        await http.patch(f"{RULES}/{rule['rule_id']}", json={"condition": "less_than"}),
        422,
        "VALIDATION_ERROR",
    )
    assert "threshold" in err["message"]
    assert (await http.get(f"{RULES}/{rule['rule_id']}")).json()["condition"] == "is_nan"


async def test_an_always_true_rule_keeps_one_alert_until_it_clears(alerting: Platform) -> None:
    rule = await create_rule(alerting, **ALWAYS, severity="high")
    rid = rule["rule_id"]
    active = await until(lambda: alerts_of(alerting, rid, status="active"), what="an alert")
    await rounds(5)
    everything = await alerts_of(alerting, rid)
    assert len(everything) == 1 and everything == active
    alert = everything[0]
    assert alert["alert_id"].startswith("alert_")
    assert alert["rule_name"] == "cpu_any" and alert["severity"] == "high"
    assert alert["threshold"] == -1 and alert["value"] >= 0
    assert alert["subject"] == "system" and alert["session_id"] is None
    assert "cpu_percent" in alert["message"] and alert["triggered_at"].endswith("Z")
    assert [e.data["alert_id"] for e in await bus(alerting, ALERT_TRIGGERED)] == [alert["alert_id"]]
    got = await alerting.http.get(f"/api/v1/alerts/{alert['alert_id']}")
    assert got.status_code == 200 and got.json() == alert

    resp = await alerting.http.patch(f"{RULES}/{rid}", json={"threshold": 1000})
    assert resp.status_code == 200
    resolved = await until(lambda: alerts_of(alerting, rid, status="resolved"), what="resolve")
    assert resolved[0]["alert_id"] == alert["alert_id"]
    assert resolved[0]["resolved_at"] >= alert["triggered_at"]
    await rounds(3)
    assert len(await alerts_of(alerting, rid)) == 1
    assert [e.data["alert_id"] for e in await bus(alerting, ALERT_RESOLVED)] == [alert["alert_id"]]


async def test_an_acknowledged_alert_still_resolves_when_its_condition_clears(
    alerting: Platform,
) -> None:
    http = alerting.http
    rule = await create_rule(alerting, **ALWAYS, severity="critical")
    (alert,) = await until(lambda: alerts_of(alerting, rule["rule_id"]), what="an alert")
    aid = alert["alert_id"]
    resp = await http.post(
        f"/api/v1/alerts/{aid}/acknowledge",
        json={"acknowledged_by": "user@example.com", "notes": "Investigating high CPU usage"},
    )
    assert resp.status_code == 200, resp.text
    acked = resp.json()
    assert acked["status"] == "acknowledged" and acked["acknowledged_at"].endswith("Z")
    assert acked["acknowledged_by"] == "user@example.com"
    assert acked["notes"] == "Investigating high CPU usage"
    assert [a["alert_id"] for a in await alerts(alerting, status="acknowledged")] == [aid]
    assert await alerts(alerting, status="active") == []
    assert [a["alert_id"] for a in await alerts(alerting, severity="critical")] == [aid]
    assert await alerts(alerting, severity="low") == []
    await rounds(3)
    assert len(await alerts_of(alerting, rule["rule_id"])) == 1  # acknowledged is still open

    await http.patch(f"{RULES}/{rule['rule_id']}", json={"enabled": False})
    (done,) = await until(lambda: alerts(alerting, status="resolved"), what="resolve")
    assert done["alert_id"] == aid and done["acknowledged_by"] == "user@example.com"
    again = await http.post(f"/api/v1/alerts/{aid}/acknowledge", json={"acknowledged_by": "x"})
    assert_envelope(again, 409, "CONFLICT")


async def test_unknown_alerts_and_bad_bodies(alerting: Platform) -> None:
    http = alerting.http
    for path in ("/api/v1/alerts/alert_nope", "/api/v1/alerts/whatever"):
        assert_envelope(await http.get(path), 404, "NOT_FOUND")
    ack = {"acknowledged_by": "me"}
    assert_envelope(
        await http.post("/api/v1/alerts/alert_nope/acknowledge", json=ack), 404, "NOT_FOUND"
    )
    assert_envelope(await http.post("/api/v1/alerts/alert_nope/resolve"), 404, "NOT_FOUND")
    assert_envelope(
        await http.post("/api/v1/alerts/alert_nope/acknowledge", json={}), 422, "VALIDATION_ERROR"
    )
    assert_envelope(
        await http.get("/api/v1/alerts", params={"status": "open"}), 422, "VALIDATION_ERROR"
    )
    assert_envelope(
        await http.get("/api/v1/alerts", params={"severity": "dire"}), 422, "VALIDATION_ERROR"
    )


async def test_a_hand_resolved_alert_is_not_raised_again_until_it_clears(
    alerting: Platform,
) -> None:
    http = alerting.http
    rule = await create_rule(alerting, **ALWAYS)
    rid = rule["rule_id"]
    (alert,) = await until(lambda: alerts_of(alerting, rid), what="an alert")
    resp = await http.post(f"/api/v1/alerts/{alert['alert_id']}/resolve", json={"notes": "ok"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "resolved" and resp.json()["resolved_by"] == "api"
    await rounds(4)
    assert len(await alerts_of(alerting, rid)) == 1
    assert_envelope(await http.post(f"/api/v1/alerts/{alert['alert_id']}/resolve"), 409, "CONFLICT")

    store = alerting.app.state.alerts
    await http.patch(f"{RULES}/{rid}", json={"threshold": 1000})
    await until(lambda: _no_open(store), what="the condition to clear")
    await http.patch(f"{RULES}/{rid}", json={"threshold": -1})
    fresh = await until(lambda: alerts_of(alerting, rid, status="active"), what="a new alert")
    assert fresh[0]["alert_id"] != alert["alert_id"]


async def _no_open(store: Any) -> bool:
    return not await store.open_alerts()


async def test_a_stop_session_action_stops_the_session(alerting: Platform) -> None:
    sid = await running_session(alerting)
    await write_epoch(alerting, sid, 1, val_loss=5.0, train_loss=4.0)
    rule = await create_rule(
        alerting,
        name="loss_exploded",
        metric="val_loss",
        condition="greater_than",
        threshold=1.0,
        session_id=sid,
        action="stop_session",
        severity="critical",
    )

    async def suspended() -> bool:
        return bool((await alerting.cr(sid))["spec"].get("suspend"))

    await until(suspended, what="spec.suspend")
    (alert,) = await alerts_of(alerting, rule["rule_id"])
    assert alert["session_id"] == sid and alert["value"] == 5.0
    assert sid in alert["message"]
    (event,) = [e for e in await bus(alerting, ALERT_TRIGGERED) if e.data["session_id"] == sid]
    assert event.data["action"] == "stop_session"


async def test_is_nan_fires_on_a_nan_epoch_of_a_tagged_session(alerting: Platform) -> None:
    watched = await running_session(alerting, tags=["nan-watch"])
    other = await running_session(alerting, tags=["other"])
    await write_epoch(alerting, watched, 1, val_loss=0.5)
    rule = await create_rule(
        alerting, name="nan_loss", metric="val_loss", condition="is_nan", tag="nan-watch"
    )
    rid = rule["rule_id"]
    await rounds(3)
    assert await alerts_of(alerting, rid) == []
    await write_epoch(alerting, watched, 2, val_loss=math.nan)
    await write_epoch(alerting, other, 1, val_loss=math.nan)  # out of the rule's scope
    (alert,) = await until(lambda: alerts_of(alerting, rid), what="a NaN alert")
    assert alert["session_id"] == watched and alert["value"] is None
    assert "NaN" in alert["message"]
    await write_epoch(alerting, watched, 3, val_loss=0.4)
    await until(lambda: alerts_of(alerting, rid, status="resolved"), what="resolve")
    assert len(await alerts_of(alerting, rid)) == 1


async def test_no_improvement_for_counts_epochs_since_the_best(alerting: Platform) -> None:
    sid = await running_session(alerting)
    for epoch, loss in enumerate([1.0, 0.9, 0.95], start=1):
        await write_epoch(alerting, sid, epoch, val_loss=loss)
    rule = await create_rule(
        alerting,
        name="plateau",
        metric="val_loss",
        condition="no_improvement_for",
        for_epochs=2,
        mode="min",
        session_id=sid,
    )
    rid = rule["rule_id"]
    await rounds(3)
    assert await alerts_of(alerting, rid) == []  # one epoch without improvement so far
    await write_epoch(alerting, sid, 4, val_loss=0.96)
    (alert,) = await until(lambda: alerts_of(alerting, rid), what="a plateau alert")
    assert alert["value"] == 2.0 and alert["threshold"] == 2.0
    await write_epoch(alerting, sid, 5, val_loss=0.5)
    await until(lambda: alerts_of(alerting, rid, status="resolved"), what="resolve")


async def test_stalled_fires_when_a_running_session_writes_no_metric(alerting: Platform) -> None:
    sid = await running_session(alerting)
    rule = await create_rule(
        alerting, name="stuck", metric="val_loss", condition="stalled", window_s=1.5
    )
    rid = rule["rule_id"]
    (alert,) = await until(lambda: alerts_of(alerting, rid), what="a stalled alert")
    assert alert["session_id"] == sid
    assert alert["value"] >= 1.5 and alert["threshold"] == 1.5
    await write_epoch(alerting, sid, 1, val_loss=0.7)
    await until(lambda: alerts_of(alerting, rid, status="resolved"), what="resolve")
    # Silent again for longer than the window: a new alert.
    await until(lambda: alerts_of(alerting, rid, status="active"), what="a second alert")


async def test_a_gpu_rule_on_a_session_reads_its_trainers_gpu_telemetry(
    alerting: Platform,
) -> None:
    sid = await running_session(alerting)
    gpus = [
        {"index": 0, "name": "H100", "utilization_percent": 97.0, "memory_used_bytes": 70,
         "memory_total_bytes": 80, "temperature_c": 84.0, "power_watts": None},
        {"index": 1, "name": "H100", "utilization_percent": 12.0, "memory_used_bytes": 1,
         "memory_total_bytes": 80, "temperature_c": 51.0, "power_watts": None},
    ]  # fmt: skip
    await alerting.redis.xadd(
        schema_keys.gpu_stream(sid),
        schema_keys.encode_record(schema_keys.gpu_record(gpus)),  # type: ignore[arg-type]
    )
    rule = await create_rule(
        alerting,
        name="hot_gpu",
        metric="gpu_temperature",
        condition="greater_than",
        threshold=80,
        session_id=sid,
    )
    (alert,) = await until(lambda: alerts_of(alerting, rule["rule_id"]), what="a GPU alert")
    assert alert["session_id"] == sid and alert["value"] == 84.0  # the hottest device


async def test_two_workers_raise_one_alert_per_rule(alerting: Platform) -> None:
    # A second app on the same Redis and namespace: another worker of the same install.
    async with serve(alerting.app.state.settings):
        rule = await create_rule(alerting, **ALWAYS)
        await until(lambda: alerts_of(alerting, rule["rule_id"]), what="an alert")
        await rounds(6)
        assert len(await alerts_of(alerting, rule["rule_id"])) == 1
        triggered = [
            e for e in await bus(alerting, ALERT_TRIGGERED) if e.data["rule_id"] == rule["rule_id"]
        ]
        assert len(triggered) == 1
