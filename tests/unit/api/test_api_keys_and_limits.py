"""API key lists, scopes, where a key is read from, and rate-limit settings: no server."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from pivot_api.auth import (
    KeyConfigError,
    KeyScope,
    KeyStore,
    RedactAccessToken,
    parse_keys,
    presented_key,
    required_scope,
)
from pivot_api.ratelimit import Verdict, client_address, parse_limits
from pivot_api.settings import Settings

READ_KEY = "r" * 24
WRITE_KEY = "w" * 24
ADMIN_KEY = "pvt_" + "a" * 40


def test_entries_with_names_and_scopes_bare_keys_and_hashes() -> None:
    digest = hashlib.sha256(WRITE_KEY.encode()).hexdigest()
    text = f"ro:read:{READ_KEY}, ci:write:sha256:{digest}\n# comment\n\n{ADMIN_KEY}"
    keys = parse_keys(text)
    assert [(k.name, k.scope) for k in keys] == [
        ("ro", KeyScope.READ),
        ("ci", KeyScope.WRITE),
        ("key-3", KeyScope.ADMIN),
    ]
    store = KeyStore(text, None)
    assert store.lookup(WRITE_KEY).name == "ci"  # type: ignore[union-attr]
    assert store.lookup(ADMIN_KEY).scope is KeyScope.ADMIN  # type: ignore[union-attr]
    assert store.lookup("x" * 24) is None


def test_the_charts_generated_and_listed_keys_parse_as_admin_keys() -> None:
    keys = parse_keys(f"{ADMIN_KEY},{'k' * 20},{'j' * 20}")
    assert [k.scope for k in keys] == [KeyScope.ADMIN] * 3


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("short", "at least 16"),
        (f"ci:root:{WRITE_KEY}", "unknown scope"),
        (f"ci:{WRITE_KEY}", "expected <key> or <name>:<scope>:<key>"),
        ("ci:read:sha256:abc", "64 hex digits"),
        (f"bad name:read:{READ_KEY}", "the name must match"),
        (f"a:read:{READ_KEY},b:admin:{READ_KEY}", "are equal"),
        (f"ci:read:{READ_KEY}:more", "must not contain ':'"),
    ],
)
def test_bad_entries_are_refused_without_echoing_the_key(text: str, complaint: str) -> None:
    with pytest.raises(KeyConfigError, match=complaint) as info:
        parse_keys(text)
    assert READ_KEY not in str(info.value) and WRITE_KEY not in str(info.value)


def test_auth_on_with_no_key_refuses_to_start() -> None:
    with pytest.raises(KeyConfigError, match="none is configured"):
        KeyStore("", None)


def test_scopes_imply_each_other_and_methods_need_them() -> None:
    (read,) = parse_keys(f"r:read:{READ_KEY}")
    (admin,) = parse_keys(f"a:admin:{ADMIN_KEY}")
    assert admin.allows(KeyScope.WRITE) and admin.allows(KeyScope.READ)
    assert not read.allows(KeyScope.WRITE)
    p = "/api/v1"
    assert required_scope("http", "GET", f"{p}/training/sessions", p) is KeyScope.READ
    assert required_scope("http", "HEAD", f"{p}/checkpoints", p) is KeyScope.READ
    assert required_scope("websocket", "", f"{p}/ws/training/s", p) is KeyScope.READ
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert required_scope("http", method, f"{p}/alerts/rules", p) is KeyScope.WRITE
    assert required_scope("http", "GET", f"{p}/webhooks", p) is KeyScope.ADMIN
    assert required_scope("http", "POST", f"{p}/webhooks/w1/test", p) is KeyScope.ADMIN
    assert required_scope("http", "GET", f"{p}/webhooksx", p) is KeyScope.READ


def _scope(method: str, headers: dict[str, str], query: str = "", kind: str = "http") -> dict:  # type: ignore[type-arg]
    return {
        "type": kind,
        "method": method,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "query_string": query.encode(),
    }


def test_the_key_comes_from_bearer_x_api_key_or_a_query_token_on_reads_only() -> None:
    assert presented_key(_scope("GET", {"Authorization": "Bearer abc"})) == "abc"
    assert presented_key(_scope("GET", {"Authorization": "bearer  abc "})) == "abc"
    assert presented_key(_scope("GET", {"Authorization": "Basic abc"})) is None
    assert presented_key(_scope("POST", {"X-API-Key": "k1"})) == "k1"
    assert presented_key(_scope("GET", {}, "since=1&access_token=t%2B1")) == "t+1"
    assert presented_key(_scope("", {}, "access_token=ws", kind="websocket")) == "ws"
    # A token in a URL ends up in proxy logs and browser history: never for writes.
    assert presented_key(_scope("POST", {}, "access_token=t")) is None


def test_key_file_changes_are_picked_up_and_a_broken_file_keeps_the_old_keys(
    tmp_path: Path,
) -> None:
    file = tmp_path / "keys"
    file.write_text(f"a:read:{READ_KEY}\n")
    store = KeyStore("", file, reload_s=0)
    assert store.lookup(READ_KEY) is not None
    file.write_text(f"b:write:{WRITE_KEY}\n")
    os.utime(file, (time.time() + 5, time.time() + 5))
    assert store.lookup(READ_KEY) is None and store.lookup(WRITE_KEY) is not None
    file.write_text("broken")
    os.utime(file, (time.time() + 10, time.time() + 10))
    assert store.lookup(WRITE_KEY) is not None


def test_query_tokens_are_redacted_from_uvicorn_log_lines() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", "/api/v1/sse/training/s?access_token=SECRET&x=1", "1.1", 200),
        None,
    )
    assert RedactAccessToken().filter(record)
    assert "SECRET" not in record.getMessage()
    assert "access_token=[redacted]&x=1" in record.getMessage()


def test_rate_limit_settings_are_checked_when_read() -> None:
    assert [i.amount for i in parse_limits(Settings().rate_limits)] == [100, 1000]
    assert Settings().rate_limit_enabled and not Settings().auth_enabled
    with pytest.raises(ValidationError, match="invalid rate limits"):
        Settings(rate_limits="lots")


def test_the_client_address_trusts_forwarded_for_only_as_configured() -> None:
    scope = {"client": ("10.0.0.9", 1), "headers": [(b"x-forwarded-for", b"6.6.6.6, 1.2.3.4")]}
    assert client_address(scope, 0) == "10.0.0.9"
    # One proxy (the ingress) appended the address it saw: the rightmost.
    assert client_address(scope, 1) == "1.2.3.4"
    assert client_address(scope, 2) == "6.6.6.6"
    assert client_address({"client": ("10.0.0.9", 1), "headers": []}, 1) == "10.0.0.9"


def test_verdict_headers_and_retry_after() -> None:
    verdict = Verdict(False, 100, -1, 1000.2)
    assert dict(verdict.headers()) == {
        b"x-ratelimit-limit": b"100",
        b"x-ratelimit-remaining": b"0",
        b"x-ratelimit-reset": b"1001",
    }
    assert verdict.retry_after(990.0) == 11 and verdict.retry_after(2000.0) == 1
