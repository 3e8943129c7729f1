"""The asynchronous twin of `PIVOTClient`: the same methods (pivot_client._resources) on
httpx.AsyncClient, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

import httpx

from pivot_client._api import ItemSource, StreamBase
from pivot_client._resources import BaseClient

T = TypeVar("T")


class AsyncPIVOTClient(BaseClient[httpx.AsyncClient]):
    """`PIVOTClient` for asyncio code; see its docstring."""

    awaits = True
    _sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    @staticmethod
    def _new_http(timeout: float | httpx.Timeout | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncPIVOTClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _transmit(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        return await self._http.send(request, stream=stream, follow_redirects=True)

    async def _pause(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def _release(self, response: httpx.Response) -> None:
        await response.aclose()

    async def _drain(self, response: httpx.Response) -> None:
        await response.aread()

    def _lines(self, response: httpx.Response) -> AsyncIterator[str]:
        return response.aiter_lines()

    def _chunks(self, response: httpx.Response, size: int) -> AsyncIterator[bytes]:
        return response.aiter_bytes(size)

    def _complete(self, call: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        return call

    def _iterate(self, items: ItemSource[T]) -> AsyncEventStream[T]:
        return AsyncEventStream(items)


class AsyncEventStream(StreamBase[T], AsyncIterator[T]):
    """Async twin of `EventStream`: `async with client.stream_metrics(id) as s: async for`."""

    async def __anext__(self) -> T:
        return await anext(self._source)

    def __aiter__(self) -> AsyncEventStream[T]:
        return self

    async def __aenter__(self) -> AsyncEventStream[T]:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._source.aclose()
