"""Webhooks end to end: the real app (its fan-out consumer and delivery leader running) on a
real Redis and the Kubernetes API emulator, delivering to a real local HTTP receiver that
verifies each Standard Webhooks signature with the `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pivot_api.events import ALERT_TRIGGERED, TRAINING_COMPLETED, publish
from pivot_api.webhooks.ssrf import Allowlist
from pivot_local.procs import free_port
from pivot_schema.keys import ApiKeys
from tests.support.waiting import eventually

from .api_platform import Platform, PlatformFactory
from .webhook_receiver import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook_platform(platform_factory: PlatformFactory) -> PlatformFactory:
    """The API with loopback allowed (the receiver runs here) and retries in milliseconds."""

    def make(**overrides: Any) -> contextlib.AbstractAsyncContextManager[Platform]:
        return platform_factory(
            **{
                "webhook_allowlist": ["127.0.0.0/8"],
                "webhook_retry_base_s": 0.02,
                "webhook_retry_max_delay_s": 0.1,
                "webhook_max_attempts": 3,
                "webhook_poll_s": 0.05,
                "webhook_timeout_s": 2.0,
                **overrides,
            }
        )

    return make


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def register(p: Platform, receiver: Receiver, events: list[str], **body: Any) -> str:
    resp = await p.http.post(
        "/api/v1/webhooks", json={"url": receiver.url, "events": events, **body}
    )
    assert resp.status_code == 201, resp.text
    got = resp.json()
    receiver.secret = body.get("secret") or got["secret"]
    return str(got["webhook_id"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/hook", "private"),
        ("https://[fe80::1]/hook", "link-local"),
        ("http://[::ffff:192.168.1.1]/hook", "private"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://localhost/hook", "loopback"),
        ("ftp://example.com/hook", "pattern"),
        ("http://user:pw@example.com/hook", "credentials"),
    ],
)
async def test_unsafe_urls_are_refused_with_422(platform: Platform, url: str, reason: str) -> None:
    resp = await platform.http.post(
        "/api/v1/webhooks", json={"url": url, "events": ["training_completed"]}
    )
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert reason in error["message"]
    assert (await platform.http.get("/api/v1/webhooks")).json() == {"webhooks": []}


async def test_bad_registrations_are_refused(platform: Platform) -> None:
    for body in (
        {"url": "https://example.com/h", "events": ["no_such_event"]},
        {"url": "https://example.com/h", "events": []},
        {"url": "https://example.com/h", "events": ["*"], "secret": "whsec_!!notbase64!!"},
        {"url": "https://example.com/h", "events": ["*"], "secret": "short"},
    ):
        resp = await platform.http.post("/api/v1/webhooks", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_the_secret_is_shown_once_and_never_again(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    async with webhook_platform() as p:
        resp = await p.http.post(
            "/api/v1/webhooks",
            json={"url": receiver.url, "events": ["training_completed", "alert_triggered"]},
        )
        assert resp.status_code == 201
        created = resp.json()
        assert created["secret"].startswith("whsec_")
        assert created["webhook_id"].startswith("webhook_")
        assert created["status"] == "active"
        assert created["events"] == ["training_completed", "alert_triggered"]
        wid = created["webhook_id"]
        given = await p.http.post(
            "/api/v1/webhooks",
            json={"url": receiver.url, "events": ["*"], "secret": "your_webhook_secret"},
        )
        assert given.json()["secret"] is None  # the user's own secret is not echoed
        one = (await p.http.get(f"/api/v1/webhooks/{wid}")).json()
        listed = (await p.http.get("/api/v1/webhooks")).json()["webhooks"]
        assert [w["webhook_id"] for w in listed] == [wid, given.json()["webhook_id"]]
        for shown in (one, *listed):
            assert "secret" not in shown
            assert created["secret"] not in str(shown)
        assert (await p.http.delete(f"/api/v1/webhooks/{wid}")).status_code == 200
        missing = await p.http.get(f"/api/v1/webhooks/{wid}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "NOT_FOUND"


async def test_the_test_endpoint_reports_success_and_failure(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    async with webhook_platform() as p:
        wid = await register(p, receiver, ["training_completed"])
        ok = (await p.http.post(f"/api/v1/webhooks/{wid}/test")).json()
        assert ok["success"] is True and ok["status_code"] == 204
        assert ok["response_time_ms"] >= 0
        assert receiver.accepted[-1].type == "webhook_test"
        assert receiver.bad_signatures == 0

        receiver.status = 500
        failed = (await p.http.post(f"/api/v1/webhooks/{wid}/test")).json()
        assert failed["success"] is False and failed["status_code"] == 500

        nobody = f"http://127.0.0.1:{free_port('127.0.0.1')}/hook"  # nothing listens
        resp = await p.http.post("/api/v1/webhooks", json={"url": nobody, "events": ["*"]})
        down = await p.http.post(f"/api/v1/webhooks/{resp.json()['webhook_id']}/test")
        assert down.status_code == 200, down.text
        body = down.json()
        assert body["success"] is False and body["status_code"] is None and body["error"]

        log = (await p.http.get(f"/api/v1/webhooks/{wid}/deliveries")).json()
        assert [d["outcome"] for d in log["deliveries"]] == ["test", "test"]
        assert [d["status_code"] for d in log["deliveries"]] == [500, 204]
        assert (await p.http.post("/api/v1/webhooks/webhook_nope/test")).status_code == 404


async def test_a_completed_session_is_delivered_signed(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    async with webhook_platform() as p:
        wid = await register(p, receiver, [TRAINING_COMPLETED])
        sid = str((await p.create(session_name="hooked"))["session_id"])
        assert (await p.http.post(f"/api/v1/training/sessions/{sid}/start")).status_code == 200
        await p.patch_status(sid, {"phase": "Running"})
        await asyncio.sleep(0.3)
        await p.patch_status(sid, {"phase": "Completed", "latestMetrics": {"val_loss": 0.25}})
        (got,) = await receiver.wait_for(1)
        assert got.type == TRAINING_COMPLETED  # training_started was not subscribed
        assert got.data["session_id"] == sid
        assert got.data["final_metrics"] == {"val_loss": 0.25}
        assert set(got.body) == {"type", "timestamp", "data"}
        assert got.msg_id.startswith("evt_")
        assert got.headers["webhook-signature"].startswith("v1,")
        assert receiver.bad_signatures == 0
        log = (await p.http.get(f"/api/v1/webhooks/{wid}/deliveries")).json()
        (entry,) = log["deliveries"]
        assert entry["outcome"] == "delivered" and entry["event_id"] == got.msg_id
        assert entry["status_code"] == 204 and entry["attempt"] == 1
        assert log["pending"] == 0


async def test_an_alert_on_the_bus_is_delivered_with_a_users_plain_secret(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    async with webhook_platform() as p:
        await register(p, receiver, [ALERT_TRIGGERED], secret="your_webhook_secret")
        keys: ApiKeys = p.app.state.api_keys
        await publish(p.redis, keys, "alert_resolved", {"alert_id": "alert_0"})  # not subscribed
        event = await publish(
            p.redis, keys, ALERT_TRIGGERED, {"alert_id": "alert_1", "severity": "warning"}
        )
        (got,) = await receiver.wait_for(1)
        assert (got.type, got.msg_id, got.data["alert_id"]) == (
            ALERT_TRIGGERED,
            event.event_id,
            "alert_1",
        )
        await asyncio.sleep(0.3)
        assert len(receiver.accepted) == 1 and receiver.bad_signatures == 0


async def test_a_receiver_down_for_a_while_gets_everything_in_order_exactly_once(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    async with webhook_platform(webhook_max_attempts=10_000) as p:
        wid = await register(p, receiver, ["*"])
        keys: ApiKeys = p.app.state.api_keys
        await receiver.down()
        published = []
        for n in range(12):
            published.append(await publish(p.redis, keys, ALERT_TRIGGERED, {"n": n}))
            if n == 5:
                await asyncio.sleep(0.5)  # retries pile up against the first event meanwhile
        await asyncio.sleep(0.5)
        assert receiver.accepted == []
        await receiver.start()
        got = await receiver.wait_for(12)
        await asyncio.sleep(0.5)  # nothing more arrives
        assert [r.msg_id for r in receiver.accepted] == [e.event_id for e in published]
        assert [r.data["n"] for r in got] == list(range(12))
        assert receiver.bad_signatures == 0
        log = (await p.http.get(f"/api/v1/webhooks/{wid}/deliveries?limit=1000")).json()
        retried = [d for d in log["deliveries"] if d["outcome"] == "retrying"]
        # While down, only the head was tried (head-of-line), with the same id every time.
        assert retried and {d["event_id"] for d in retried} <= {published[0].event_id}
        assert log["pending"] == 0


async def test_a_redelivered_bus_entry_is_enqueued_once(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    async with webhook_platform() as p:
        await register(p, receiver, [ALERT_TRIGGERED])
        event = await publish(p.redis, p.app.state.api_keys, ALERT_TRIGGERED, {"n": 1})
        await receiver.wait_for(1)
        # The bus hands the same entry over again (a consumer died before acknowledging).
        await p.app.state.webhooks.fan_out(event)
        await asyncio.sleep(0.4)
        assert [r.msg_id for r in receiver.accepted] == [event.event_id]


async def test_after_max_attempts_an_event_is_dead_lettered_and_can_be_redelivered(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    async with webhook_platform() as p:
        wid = await register(p, receiver, [ALERT_TRIGGERED])
        keys: ApiKeys = p.app.state.api_keys
        receiver.status = 500
        first = await publish(p.redis, keys, ALERT_TRIGGERED, {"n": 1})
        second = await publish(p.redis, keys, ALERT_TRIGGERED, {"n": 2})

        async def dead() -> list[dict[str, Any]]:
            body = (await p.http.get(f"/api/v1/webhooks/{wid}/dead-letters")).json()
            return list(body["dead_letters"]) if len(body["dead_letters"]) == 2 else []

        letters = await eventually(dead, within=20, what="a dead letter")
        assert [d["event_id"] for d in letters] == [first.event_id, second.event_id]
        assert letters[0]["attempts"] == 3 and letters[0]["last_status_code"] == 500
        assert letters[0]["type"] == ALERT_TRIGGERED
        assert receiver.attempts.count(first.event_id) == 3
        log = (await p.http.get(f"/api/v1/webhooks/{wid}/deliveries")).json()["deliveries"]
        assert [d["outcome"] for d in log if d["event_id"] == first.event_id] == [
            "dead_lettered",
            "retrying",
            "retrying",
        ]

        receiver.status = 200
        one = await p.http.post(f"/api/v1/webhooks/{wid}/dead-letters/{second.event_id}/redeliver")
        assert one.status_code == 202 and one.json()["redelivered"] == 1
        await receiver.wait_for(1)
        again = await p.http.post(
            f"/api/v1/webhooks/{wid}/dead-letters/{second.event_id}/redeliver"
        )
        assert again.status_code == 404
        rest = await p.http.post(f"/api/v1/webhooks/{wid}/dead-letters/redeliver")
        assert rest.json()["redelivered"] == 1
        await receiver.wait_for(2)
        await asyncio.sleep(0.3)
        assert [r.msg_id for r in receiver.accepted] == [second.event_id, first.event_id]
        assert (await p.http.get(f"/api/v1/webhooks/{wid}/dead-letters")).json()[
            "dead_letters"
        ] == []


async def test_410_gone_disables_the_webhook_until_it_is_enabled(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    async with webhook_platform() as p:
        wid = await register(p, receiver, [ALERT_TRIGGERED])
        keys: ApiKeys = p.app.state.api_keys
        receiver.status = 410
        await publish(p.redis, keys, ALERT_TRIGGERED, {"n": 1})

        async def disabled() -> bool:
            body = (await p.http.get(f"/api/v1/webhooks/{wid}")).json()
            return bool(body["status"] == "disabled")

        await eventually(disabled, within=20, what="the webhook disabled")
        hook = (await p.http.get(f"/api/v1/webhooks/{wid}")).json()
        assert "410" in hook["disabled_reason"]
        await publish(p.redis, keys, ALERT_TRIGGERED, {"n": 2})  # not enqueued while disabled
        receiver.status = 204
        resp = await p.http.patch(f"/api/v1/webhooks/{wid}", json={"status": "active"})
        assert resp.json()["status"] == "active"
        (got,) = await receiver.wait_for(1)
        assert got.data == {"n": 1}
        await asyncio.sleep(0.3)
        assert len(receiver.accepted) == 1


async def test_the_address_is_checked_again_at_delivery(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    """A host that passed at registration and resolves elsewhere later (DNS rebinding) is
    refused before anything is sent; here the allowlist that admitted it is withdrawn."""
    async with webhook_platform() as p:
        wid = await register(p, receiver, [ALERT_TRIGGERED])
        p.app.state.webhooks.sender.allow = Allowlist()
        await publish(p.redis, p.app.state.api_keys, ALERT_TRIGGERED, {"n": 1})

        async def refused() -> list[dict[str, Any]]:
            body = (await p.http.get(f"/api/v1/webhooks/{wid}/deliveries")).json()
            return list(body["deliveries"])

        # Newest first; retries are milliseconds apart here.
        entries = await eventually(refused, within=20, what="a refused delivery")
        assert entries[-1]["outcome"] == "retrying"
        assert all("loopback" in e["error"] and e["status_code"] is None for e in entries)
        assert receiver.attempts == []


async def test_a_rule_that_fires_reaches_the_receiver_signed_as_alert_triggered(
    webhook_platform: PlatformFactory, receiver: Receiver
) -> None:
    """The whole path: the evaluator raises an alert, the bus carries it, the webhook
    delivers it, signed; nothing published by hand."""
    async with webhook_platform(alert_interval_s=0.1) as p:
        await register(p, receiver, [ALERT_TRIGGERED])
        rule = {
            "name": "always_busy",
            "metric": "cpu_percent",
            "condition": "greater_than",
            "threshold": -1.0,
            "severity": "critical",
        }
        resp = await p.http.post("/api/v1/alerts/rules", json=rule)
        assert resp.status_code == 201, resp.text
        (got,) = await receiver.wait_for(1)
        assert got.type == ALERT_TRIGGERED
        assert got.data["rule_name"] == "always_busy" and got.data["severity"] == "critical"
        alerts = (await p.http.get("/api/v1/alerts?status=active")).json()["alerts"]
        assert [a["alert_id"] for a in alerts] == [got.data["alert_id"]]
        await asyncio.sleep(0.5)  # more evaluation rounds: still one alert, one delivery
        assert len(receiver.accepted) == 1 and receiver.bad_signatures == 0
