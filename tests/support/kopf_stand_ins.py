"""Stand-ins for what kopf hands a handler, for unit tests of the operator's handlers and
scheduler without a kopf runtime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable


class Stop:
    """Stands in for kopf.DaemonStopped: false until set; `wait` returns on set or timeout."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float | None = None) -> Awaitable[None]:
        return self._wait(timeout)

    async def _wait(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)
