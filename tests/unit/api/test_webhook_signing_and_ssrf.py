"""Webhook signing (checked against the `standardwebhooks` package and a hand-written HMAC)
and the SSRF classifier, with no servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from datetime import UTC, datetime
from typing import get_args

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from pivot_api.events import EVENT_TYPES
from pivot_api.settings import Settings
from pivot_api.webhooks.schemas import WebhookEvent
from pivot_api.webhooks.service import order_of
from pivot_api.webhooks.signing import event_body, new_secret, secret_key, sign, signed_headers
from pivot_api.webhooks.ssrf import Allowlist, UnsafeURLError, address_problem, check_url
from pivot_api.webhooks.tasks import backoff_s


def test_a_generated_secret_verifies_with_the_reference_implementation() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    body = event_body("training_completed", "2026-01-01T00:00:00Z", {"session_id": "s"})
    ts = int(datetime.now(UTC).timestamp())
    headers = signed_headers(secret, "evt_1", ts, body)
    assert Verifier(secret).verify(body.decode(), headers) == json.loads(body)


def test_a_plain_secret_signs_with_its_utf8_bytes() -> None:
    body = b'{"type":"x","timestamp":"t","data":{}}'
    expected = hmac.new(b"your_webhook_secret", b"evt_1.1700000000." + body, hashlib.sha256)
    assert sign("your_webhook_secret", "evt_1", 1700000000, body) == (
        "v1," + base64.b64encode(expected.digest()).decode()
    )
    headers = signed_headers(
        "your_webhook_secret", "evt_2", int(datetime.now(UTC).timestamp()), body
    )
    Verifier(b"your_webhook_secret").verify(body.decode(), headers)


def test_whsec_secrets_are_base64_with_or_without_padding() -> None:
    assert secret_key("whsec_" + base64.b64encode(b"k" * 24).decode()) == b"k" * 24
    assert secret_key("whsec_" + base64.b64encode(b"ab").decode().rstrip("=")) == b"ab"
    for bad in ("whsec_!!!", "whsec_"):
        with pytest.raises(ValueError):
            secret_key(bad)


def test_the_body_has_type_timestamp_and_data_only() -> None:
    assert json.loads(event_body("a", "t", {"k": 1})) == {
        "type": "a",
        "timestamp": "t",
        "data": {"k": 1},
    }


def test_backoff_has_full_jitter_under_an_exponential_cap() -> None:
    for attempt, cap in ((1, 10), (2, 20), (4, 80), (30, 3600)):
        delays = [backoff_s(attempt, 10, 3600) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert min(delays) < cap * 0.2 and max(delays) > cap * 0.8


def test_outbox_order_follows_the_bus() -> None:
    ids = ["1700000000000-0", "1700000000000-2", "1700000000000-10", "1700000000001-0"]
    keys = [order_of(i, f"evt_{n}") for n, i in enumerate(ids)]
    assert sorted(keys) == keys


def test_every_bus_event_type_can_be_subscribed() -> None:
    assert set(get_args(WebhookEvent)) == EVENT_TYPES | {"*"}


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "not a globally routable"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:a00:1::", "private"),  # 6to4 around 10.0.0.1
    ],
)
def test_internal_addresses_are_refused(ip: str, reason: str) -> None:
    problem = address_problem(ipaddress.ip_address(ip))
    assert problem is not None and reason in problem


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700::6810:85e5"])
def test_public_addresses_are_allowed(ip: str) -> None:
    assert address_problem(ipaddress.ip_address(ip)) is None


async def test_check_url_applies_names_allowlist_and_every_record() -> None:
    none = Allowlist()
    for url in (
        "http://127.0.0.1/x",
        "http://localhost:8080/x",
        "http://metadata.google.internal/",
        "http://169.254.169.254/",
        "gopher://8.8.8.8/",
        "http://u:p@8.8.8.8/",
    ):
        with pytest.raises(UnsafeURLError):
            await check_url(url, none)
    target = await check_url("https://8.8.8.8:8443/hook?a=1", none)
    assert target.connect_url() == "https://8.8.8.8:8443/hook?a=1"
    assert target.host_header() == "8.8.8.8:8443"
    loopback = Allowlist.parse(["127.0.0.0/8", "hooks.corp"])
    target = await check_url("http://127.0.0.1:9/x", loopback)
    assert str(target.ip) == "127.0.0.1"
    with pytest.raises(UnsafeURLError):  # the allowlist is what it says, no more
        await check_url("http://10.0.0.1/x", loopback)
    v6 = await check_url("http://[::1]:8080/x", Allowlist.parse(["::1/128"]))
    assert v6.connect_url() == "http://[::1]:8080/x"


def test_the_allowlist_setting_reads_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIVOT_WEBHOOK_ALLOWLIST", '["10.1.0.0/16", "hooks.corp"]')
    allow = Allowlist.parse(Settings().webhook_allowlist)
    assert allow.allows_ip(ipaddress.ip_address("10.1.2.3"))
    assert not allow.allows_ip(ipaddress.ip_address("10.2.0.1"))
    assert "hooks.corp" in allow.hosts
