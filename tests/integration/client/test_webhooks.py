"""Webhooks through the SDKs and the CLI against the running local platform (which lets
webhooks reach loopback), delivering to a receiver on this machine that checks signatures
with the `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from pivot_client import AsyncPIVOTClient, NotFoundError, PIVOTClient, ValidationError
from pivot_client.cli import EXIT_INVALID, EXIT_NOT_FOUND
from pivot_local.platform import LocalPlatform

pytestmark = pytest.mark.integration

PIVOT = str(Path(sys.executable).parent / "pivot")


class Receiver:
    def __init__(self) -> None:
        self.secret = ""
        self.accepted: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Verifier(receiver.secret).verify(body.decode(), headers)
                except Exception:
                    self.send_response(401)
                else:
                    receiver.accepted.append({"id": headers["webhook-id"], **payload})
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_sdk_registers_tests_inspects_and_deletes_a_webhook(
    platform: LocalPlatform, receiver: Receiver
) -> None:
    with PIVOTClient(platform.api_url) as client:
        # An event no other test's session causes: a session of theirs completing now
        # would queue a delivery here and make `pending` 1.
        hook = client.webhooks.create(url=receiver.url, events=["training_preempted"])
        assert hook.secret and hook.secret.startswith("whsec_")
        assert hook.events == ["training_preempted"] and hook.status == "active"
        receiver.secret = hook.secret
        result = client.webhooks.test(hook.webhook_id)
        assert result.success and result.status_code == 200
        assert receiver.accepted[-1]["type"] == "webhook_test"
        listed = client.webhooks.list()
        assert hook.webhook_id in [w.webhook_id for w in listed]
        again = client.webhooks.get(hook.webhook_id)
        assert again.secret is None  # shown once, at creation
        log = client.webhooks.deliveries(hook.webhook_id)
        assert [d.outcome for d in log] == ["test"] and log.pending == 0
        assert list(client.webhooks.dead_letters(hook.webhook_id)) == []
        assert client.webhooks.redeliver(hook.webhook_id).redelivered == 0
        assert client.webhooks.update(hook.webhook_id, status="disabled").status == "disabled"
        client.webhooks.delete(hook.webhook_id)
        with pytest.raises(NotFoundError):
            client.webhooks.get(hook.webhook_id)
        with pytest.raises(ValidationError):
            client.webhooks.create(url="http://169.254.169.254/", events=["*"])


async def test_async_sdk_delivers_a_completed_session(
    platform: LocalPlatform, receiver: Receiver
) -> None:
    async with AsyncPIVOTClient(platform.api_url) as client:
        hook = await client.webhooks.create(
            url=receiver.url, events=["training_completed"], secret="a-plain-secret"
        )
        receiver.secret = "YS1wbGFpbi1zZWNyZXQ="  # base64 of the plain secret's bytes
        session = await client.create_session(config_path="configs/train.yaml")
        await client.start_training(session["session_id"])
        await client.wait_for_completion(session["session_id"], timeout=240)

        # Other tests' sessions on this shared platform complete too: pick out this one's.
        def ours() -> list[dict[str, Any]]:
            return [
                d for d in receiver.accepted if d["data"].get("session_id") == session["session_id"]
            ]

        deadline = time.monotonic() + 30
        while not ours() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        (got,) = ours()
        assert got["type"] == "training_completed"
        entries = list(await client.webhooks.deliveries(hook.webhook_id))
        assert [e.outcome for e in entries if e.event_id == got["id"]] == ["delivered"]
        await client.webhooks.delete(hook.webhook_id)


def test_cli_webhook_commands(platform: LocalPlatform, receiver: Receiver) -> None:
    def pivot(*args: str) -> subprocess.CompletedProcess[str]:
        # PIVOT_API_KEY is the platform fixture's key (conftest.py) while it runs.
        env = {**os.environ, "PIVOT_URL": platform.api_url}
        cmd = [PIVOT, "webhooks", *args, "-o", "json"]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)

    def ok(*args: str) -> Any:
        run = pivot(*args)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    created = ok("create", receiver.url, "--event", "*")
    assert created["url"] == receiver.url
    receiver.secret = created["secret"]
    wid = created["webhook_id"]
    assert ok("test", wid)["success"] is True
    assert wid in [w["webhook_id"] for w in ok("list")["webhooks"]]
    assert ok("deliveries", wid)["deliveries"][0]["outcome"] == "test"
    assert ok("dead-letters", wid)["dead_letters"] == []
    assert ok("redeliver", wid)["redelivered"] == 0
    ok("delete", wid)
    assert pivot("get", wid).returncode == EXIT_NOT_FOUND
    assert pivot("create", "http://10.0.0.1/", "--event", "*").returncode == EXIT_INVALID
    # The secret never comes back from the API after creation.
    listed = httpx.get(
        f"{platform.api_url}/api/v1/webhooks",
        headers={"X-API-Key": platform.api_key or ""},
        timeout=10,
    ).json()
    assert created["secret"] not in json.dumps(listed)
