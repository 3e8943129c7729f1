"""A retry loop ends when it is cancelled, even when the cancellation reaches it as an
ordinary error (redis-py disconnects when a cancellation lands inside a command)."""

from __future__ import annotations

import asyncio

import pytest

from pivot_api.redis_util import reraise_cancellation


async def _command_that_turns_cancellation_into_an_error() -> None:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise ConnectionError("connection closed by the client") from None


async def test_a_retry_loop_ends_on_a_cancellation_that_came_back_as_an_error() -> None:
    errors = 0

    async def retrying() -> None:
        nonlocal errors
        while True:
            try:
                await _command_that_turns_cancellation_into_an_error()
            except ConnectionError:
                errors += 1
                reraise_cancellation()
                await asyncio.sleep(0)

    task = asyncio.create_task(retrying())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert errors == 1


async def test_an_error_without_a_cancellation_is_left_to_the_loop() -> None:
    async def failing_once() -> str:
        try:
            raise ConnectionError("redis went away")
        except ConnectionError:
            reraise_cancellation()
            return "retried"

    assert await failing_once() == "retried"
