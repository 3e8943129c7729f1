"""Waiting for a condition that becomes true asynchronously (a watch, a pod, a delivery).
Both helpers fail with what they waited for and the last value seen; neither ends quietly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll `check` until it returns something truthy and return that."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}: {last!r}")
        time.sleep(interval)


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    within: float = 10.0,
    what: str = "the condition",
    interval: float = 0.05,
) -> T:
    """The asyncio twin of `wait_for`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        last = await check()
        if last:
            return last
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)
