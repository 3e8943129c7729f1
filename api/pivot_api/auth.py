"""API keys: who may call the API, and what they may do.

Keys come from `PIVOT_API_KEYS` and/or the file `PIVOT_API_KEYS_FILE` (a mounted Kubernetes
Secret; re-read when it changes, so a rotated Secret needs no restart). Entries are separated
by commas or newlines; blank entries and lines starting with `#` are skipped:

    <key>                          a bare key: scope admin (what the Helm chart generates)
    <name>:<scope>:<key>           scope is read, write or admin
    <name>:<scope>:sha256:<hex>    the key's SHA-256 (64 hex digits) instead of the key

A key is at least 16 characters and has no `,` or `:`. Keys are random and long, so an
unsalted SHA-256 is what is kept in memory; a presented key is hashed and compared against
every stored digest in constant time.

Scopes: admin implies write implies read. GET, HEAD, OPTIONS and WebSocket connections need
read; POST, PUT, PATCH and DELETE need write; everything under `/webhooks` needs admin (a
webhook makes the server call an arbitrary URL and holds a signing secret).

Clients send `Authorization: Bearer <key>` or `X-API-Key: <key>`. Browsers cannot set headers
on EventSource or WebSocket, so GET requests and WebSocket connections may pass
`?access_token=<key>` instead (HEAD too); it is never accepted for writes (a write that carries
only one is told to send the header instead), and is redacted from uvicorn's logs (the API's
own access log records paths without the query).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from pivot_api.errors import deny

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 16
ACCESS_TOKEN_PARAM = "access_token"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class KeyConfigError(ValueError):
    """The configured key list cannot be used; the message never contains a key."""


class KeyScope(enum.IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class ApiKey:
    name: str
    scope: KeyScope
    digest: bytes

    def allows(self, needed: KeyScope) -> bool:
        return self.scope >= needed


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _check_key(key: str, where: str) -> None:
    if len(key) < MIN_KEY_LENGTH:
        raise KeyConfigError(f"{where}: a key must be at least {MIN_KEY_LENGTH} characters")
    if any(c.isspace() for c in key):
        raise KeyConfigError(f"{where}: a key must not contain whitespace")


def parse_keys(text: str, *, source: str = "PIVOT_API_KEYS") -> list[ApiKey]:
    keys: list[ApiKey] = []
    entries = [e.strip() for e in re.split(r"[,\n]", text)]
    entries = [e for e in entries if e and not e.startswith("#")]
    for number, entry in enumerate(entries, start=1):
        where = f"{source} entry {number}"
        if ":" not in entry:
            _check_key(entry, where)
            keys.append(ApiKey(f"key-{number}", KeyScope.ADMIN, hash_key(entry)))
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3:
            raise KeyConfigError(f"{where}: expected <key> or <name>:<scope>:<key>")
        name, scope_word, secret = parts
        if not _NAME.match(name):
            raise KeyConfigError(f"{where}: the name must match {_NAME.pattern}")
        try:
            scope = KeyScope[scope_word.strip().upper()]
        except KeyError:
            raise KeyConfigError(
                f"{where}: unknown scope {scope_word!r} (read, write or admin)"
            ) from None
        if secret.startswith("sha256:"):
            hexdigest = secret.removeprefix("sha256:")
            if not _HEX64.match(hexdigest):
                raise KeyConfigError(f"{where}: sha256: must be followed by 64 hex digits")
            digest = bytes.fromhex(hexdigest)
        else:
            if ":" in secret:
                raise KeyConfigError(f"{where}: a key must not contain ':'")
            _check_key(secret, where)
            digest = hash_key(secret)
        keys.append(ApiKey(name, scope, digest))
    seen: dict[bytes, str] = {}
    for key in keys:
        if key.digest in seen:
            raise KeyConfigError(f"{source}: keys {seen[key.digest]!r} and {key.name!r} are equal")
        seen[key.digest] = key.name
    return keys


class KeyStore:
    """The keys from env and file; the file is checked for changes at most every `reload_s`."""

    def __init__(self, env_text: str, file: Path | None, *, reload_s: float = 5.0) -> None:
        self._env_keys = parse_keys(env_text)
        self._file = file
        self._reload_s = reload_s
        self._file_keys: list[ApiKey] = []
        self._file_mtime: float | None = None
        self._checked = 0.0
        if file is not None:
            self._file_keys = parse_keys(file.read_text(), source=str(file))
            self._file_mtime = file.stat().st_mtime
            self._checked = time.monotonic()
        self._keys = self._env_keys + self._file_keys
        if not self._keys:
            raise KeyConfigError(
                "API keys are enabled but none is configured (PIVOT_API_KEYS or "
                "PIVOT_API_KEYS_FILE); set PIVOT_AUTH_ENABLED=false to run without keys"
            )

    @property
    def names(self) -> list[str]:
        return [k.name for k in self._keys]

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self._file is None or now - self._checked < self._reload_s:
            return
        self._checked = now
        try:
            mtime = os.stat(self._file).st_mtime
            if mtime == self._file_mtime:
                return
            keys = parse_keys(self._file.read_text(), source=str(self._file))
        except (OSError, KeyConfigError) as exc:
            # Keep serving with the keys we have: a half-written Secret must not lock
            # everyone out, nor let everyone in.
            log.error("API keys file not reloaded, keeping the previous keys: %s", exc)
            return
        self._file_keys, self._file_mtime = keys, mtime
        self._keys = self._env_keys + keys
        log.info("API keys reloaded from %s: %d keys", self._file, len(self._keys))

    def lookup(self, presented: str) -> ApiKey | None:
        self._maybe_reload()
        digest = hash_key(presented)
        found = None
        # Every digest is compared, so the time taken says nothing about which one matched.
        for key in self._keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def required_scope(scope_type: str, method: str, path: str, prefix: str) -> KeyScope:
    webhooks = f"{prefix}/webhooks"
    if path == webhooks or path.startswith(webhooks + "/"):
        return KeyScope.ADMIN
    if scope_type == "websocket" or method in _READ_METHODS:
        return KeyScope.READ
    return KeyScope.WRITE


def presented_key(scope: Scope) -> str | None:
    """The key a request carries: Authorization Bearer, then X-API-Key, then (reads and
    WebSockets only) the access_token query parameter."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").strip().partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    if scope["type"] == "websocket" or scope.get("method") in _READ_METHODS:
        query = scope.get("query_string", b"").decode("latin-1")
        if ACCESS_TOKEN_PARAM in query:
            for key, value in parse_qsl(query):
                if key == ACCESS_TOKEN_PARAM and value:
                    return value
    return None


def has_query_token(scope: Scope) -> bool:
    """The URL carries an access_token (whether or not this request may use it)."""
    query = scope.get("query_string", b"").decode("latin-1")
    return ACCESS_TOKEN_PARAM in query and any(
        key == ACCESS_TOKEN_PARAM and value for key, value in parse_qsl(query)
    )


class ApiKeyMiddleware:
    """401 without a known key, 403 when its scope is too small; public paths pass.

    Pure ASGI, so streaming responses and WebSockets pass through untouched. The key's name
    is left in `request.state.api_key_name` for routes that record who did something, and its
    scope in `request.state.api_key_scope`.
    """

    def __init__(
        self, app: ASGIApp, *, keys: KeyStore, prefix: str, public_paths: frozenset[str]
    ) -> None:
        self.app = app
        self.keys = keys
        self.prefix = prefix
        self.public_paths = public_paths
        self.whoami = f"{prefix}/auth/whoami"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        presented = presented_key(scope)
        if not presented and scope["path"] == self.whoami:
            await self.app(scope, receive, send)  # it answers "no key" itself, not 401
            return
        key = self.keys.lookup(presented) if presented else None
        if key is None:
            message = "invalid API key" if presented else "an API key is required"
            challenge = 'Bearer realm="pivot"'
            if presented:
                challenge += ', error="invalid_token"'
            hint = "send Authorization: Bearer <key> or X-API-Key: <key>"
            if not presented and has_query_token(scope):
                # A write with the token in its URL: say why it was not taken.
                method = scope.get("method", "")
                message = (
                    f"an API key is required: the {ACCESS_TOKEN_PARAM} query parameter is "
                    f"only for reads and streams (GET, HEAD and WebSocket); a {method} "
                    "needs the Authorization or X-API-Key header"
                )
                hint = "send Authorization: Bearer <key> or X-API-Key: <key>, not the URL's token"
            await deny(
                scope,
                receive,
                send,
                401,
                "UNAUTHORIZED",
                message,
                {"hint": hint},
                headers={"WWW-Authenticate": challenge},
            )
            return
        method = str(scope.get("method", "GET"))
        needed = required_scope(scope["type"], method, scope["path"], self.prefix)
        if not key.allows(needed):
            await deny(
                scope,
                receive,
                send,
                403,
                "FORBIDDEN",
                f"API key {key.name!r} has scope {key.scope.label}; this needs {needed.label}",
                {"scope": key.scope.label, "required_scope": needed.label},
            )
            return
        state = scope.setdefault("state", {})
        state["api_key_name"] = key.name
        state["api_key_scope"] = key.scope.label
        await self.app(scope, receive, send)


_TOKEN_IN_TEXT = re.compile(rf"({ACCESS_TOKEN_PARAM}=)[^&\s\"']*")


class RedactAccessToken(logging.Filter):
    """uvicorn logs full request paths (access log, WebSocket lines): blank the query token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and ACCESS_TOKEN_PARAM in record.msg:
            record.msg = _TOKEN_IN_TEXT.sub(r"\1[redacted]", record.msg)
        if isinstance(record.args, tuple) and any(
            isinstance(a, str) and ACCESS_TOKEN_PARAM in a for a in record.args
        ):
            record.args = tuple(
                _TOKEN_IN_TEXT.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactAccessToken) for f in logger.filters):
            logger.addFilter(RedactAccessToken())
