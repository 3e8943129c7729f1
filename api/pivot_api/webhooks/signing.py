"""Standard Webhooks (https://www.standardwebhooks.com) signing, through the `standardwebhooks`
library.

`webhook-id` is the event's id (the same on every retry, so receivers can de-duplicate),
`webhook-timestamp` the attempt's unix seconds, `webhook-signature` `v1,<base64 HMAC-SHA256
of "{id}.{timestamp}.{body}">`. A `whsec_<base64>` secret signs with its decoded bytes (the
spec's form, what the API generates); any other secret a user gives signs with its UTF-8
bytes.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: whsec_ secrets are base64, others are used as given.
    Stricter than the library's own parsing (which drops what is not base64), so a
    mistyped secret is refused at registration instead of signing with another key."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        if not key:
            raise ValueError("empty secret")
        return key
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    when = datetime.fromtimestamp(timestamp, UTC)
    # As text: every body is ASCII JSON (event_body), and text is what every release of the
    # library signs as its UTF-8 bytes.
    return Webhook(secret_key(secret)).sign(msg_id, when, body.decode())


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def event_body(type_: str, timestamp: str, data: dict[str, Any]) -> bytes:
    """The body a receiver gets (and the signature covers): type, timestamp and data."""
    payload = {"type": type_, "timestamp": timestamp, "data": data}
    return json.dumps(payload, separators=(",", ":"), default=str).encode()
