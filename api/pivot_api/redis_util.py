"""What every Redis user in the API shares: reply text, the records' clock, and Lua scripts.

Scripts go through redis-py's `register_script`, once per client (`script`): a call sends
EVALSHA and loads the script only when the server does not know it (a restart, a failover),
so a script's text does not cross the wire with every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def text(value: Any) -> str:
    """A reply as text: the client returns bytes (no `decode_responses`)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def reraise_cancellation() -> None:
    """For a retry loop's `except` branch: re-raise a cancellation of this task that a
    library turned into an ordinary error on the way. redis-py disconnects when a
    cancellation lands inside a command, and what reaches the loop may then be a
    ConnectionError; a loop that retried it would outlive its app (and hang the event
    loop's shutdown, which cancels each task once and waits)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def utcnow_iso() -> str:
    """Now, as the API's records carry it (created_at, triggered_at, attempted_at, ...):
    UTC, millisecond precision, `Z`. Milliseconds are what these records have always been
    served with; the trainer's own records (pivot_schema.keys) keep microseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_ms(ts: float) -> str:
    """A unix time in the form of `utcnow_iso`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def flat(fields: Mapping[str, str]) -> list[str]:
    """Field names and values, alternating: how a script takes a record to XADD or HSET."""
    out: list[str] = []
    for k, v in fields.items():
        out += [k, v]
    return out


_scripts: WeakKeyDictionary[Redis, dict[str, AsyncScript]] = WeakKeyDictionary()


def script(redis: Redis, source: str) -> AsyncScript:
    """`source` registered on `redis`, once per client: call it with keys= and args=."""
    registered = _scripts.setdefault(redis, {})
    found = registered.get(source)
    if found is None:
        found = registered[source] = redis.register_script(source)
    return found
