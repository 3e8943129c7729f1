"""Alert rules, alerts and notifications through the Python SDK (sync and async) and the
`pivot` CLI, against the running local platform (real trainer, real evaluator)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pivot_client import (
    AsyncPIVOTClient,
    ConflictError,
    NotFoundError,
    PIVOTClient,
    ValidationError,
)
from pivot_client.types import Alert
from pivot_local.platform import LocalPlatform
from tests.support.platform import TINY_CONFIG

pytestmark = pytest.mark.integration

T = TypeVar("T")
PIVOT = str(Path(sys.executable).parent / "pivot")


@pytest.fixture()
def client(platform: LocalPlatform) -> Iterator[PIVOTClient]:
    with PIVOTClient(platform.api_url) as c:
        yield c


def until(probe: Callable[[], T], *, within_s: float = 60.0, what: str = "condition") -> T:
    deadline = time.monotonic() + within_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_rules_alerts_and_acknowledgement_through_the_sdk(client: PIVOTClient) -> None:
    rule = client.alerts.create_rule(
        name="sdk_cpu", metric="cpu_percent", condition="greater_than", threshold=-1.0
    )
    assert rule.rule_id and rule.severity == "medium" and rule.enabled
    assert rule.rule_id in [r.rule_id for r in client.alerts.list_rules()]
    assert client.alerts.get_rule(rule.rule_id).name == "sdk_cpu"
    try:

        def mine() -> list[Alert]:
            return [a for a in client.alerts.list(status="active") if a.rule_id == rule.rule_id]

        (alert,) = until(mine, what="an alert")
        assert alert["rule_name"] == "sdk_cpu" and alert.threshold == -1.0
        acked = client.alerts.acknowledge(alert.alert_id, acknowledged_by="sdk", notes="looking")
        assert acked.status == "acknowledged" and acked.acknowledged_by == "sdk"
        assert client.alerts.get(alert.alert_id).acknowledged_at

        updated = client.alerts.update_rule(rule.rule_id, enabled=False)
        assert updated.enabled is False and updated.threshold == -1.0
        until(lambda: client.alerts.get(alert.alert_id).status == "resolved", what="the resolve")
        with pytest.raises(ConflictError):
            client.alerts.resolve(alert.alert_id)
    finally:
        client.alerts.delete_rule(rule.rule_id)
    with pytest.raises(NotFoundError):
        client.alerts.get_rule(rule.rule_id)
    with pytest.raises(NotFoundError):
        client.alerts.get("alert_missing")
    with pytest.raises(ValidationError) as info:
        client.alerts.create_rule(name="x", metric="cpu_percent", condition="greater_than")
    assert info.value.status_code == 422


def test_alert_notifications_are_read_and_cleared(client: PIVOTClient) -> None:
    rule = client.alerts.create_rule(
        name="sdk_notify",
        metric="memory_percent",
        condition="greater_than",
        threshold=-1.0,
        severity="critical",
    )
    try:

        def alert_notes() -> list[Any]:
            found = client.notifications.list(type="alert", priority="high")
            return [n for n in found if n.data.get("rule_id") == rule.rule_id]

        (note,) = until(alert_notes, what="an alert notification")
        assert not note.read and note.id.startswith("notif_")
        assert client.notifications.mark_read(note.id).read is True
        assert note.id not in [n.id for n in client.notifications.list(unread=True)]
        assert note.id in [n.id for n in client.notifications.list(unread=False)]
        with pytest.raises(NotFoundError):
            client.notifications.mark_read("notif_missing")
    finally:
        client.alerts.delete_rule(rule.rule_id)
    assert "cleared" in client.notifications.clear().message
    listed = client.notifications.list()
    assert listed.notifications == [] or all(n.id != note.id for n in listed)


async def test_a_trained_session_notifies_its_completion(platform: LocalPlatform) -> None:
    async with AsyncPIVOTClient(platform.api_url) as client:
        session = await client.create_session(config=TINY_CONFIG, session_name="notify")
        await client.start_training(session.session_id)
        final = await client.wait_for_completion(session.session_id, timeout=240)
        deadline = time.monotonic() + 30
        while True:
            found = [
                n
                for n in await client.notifications.list(type="training")
                if n.data.get("session_id") == session.session_id
            ]
            if found or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        (note,) = found
        assert note.priority == "high" and "completed" in (note.message or "")
        assert note.data["final_metrics"]["val_loss"] == pytest.approx(final["val_loss"])


def test_cli_lists_rules_alerts_and_notifications(platform: LocalPlatform) -> None:
    env = {**os.environ, "PIVOT_URL": platform.api_url}

    def pivot(*args: str) -> Any:
        run = subprocess.run(
            [PIVOT, *args, "-o", "json"], capture_output=True, text=True, env=env, timeout=60
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    assert isinstance(pivot("rules")["rules"], list)
    assert isinstance(pivot("alerts", "--status", "active")["alerts"], list)
    body = pivot("notifications", "--unread")
    assert all(not n["read"] for n in body["notifications"])
