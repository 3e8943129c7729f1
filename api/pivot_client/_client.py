"""The synchronous client, `PIVOTClient`: the shared methods (pivot_client._resources) on a
transport of blocking httpx calls, so each call runs to its end at once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

import httpx

from pivot_client._api import ItemSource, StreamBase, run_sync
from pivot_client._resources import BaseClient

T = TypeVar("T")


class PIVOTClient(BaseClient[httpx.Client]):
    """A client for the PIVOT API.

        client = PIVOTClient()                     # PIVOT_URL, PIVOT_API_KEY from env
        session = client.create_session(config_path="configs/train.yaml")
        client.start_training(session.session_id)
        for record in client.stream_metrics(session.session_id):
            print(record.epoch, record["val_loss"])

    Calls retry (at most `max_retries` times, with backoff that honours Retry-After) on 429,
    503 and connection failures; a POST is repeated only when it never reached the server.
    """

    awaits = False
    _sleep: Callable[[float], None] = staticmethod(time.sleep)

    @staticmethod
    def _new_http(timeout: float | httpx.Timeout | None) -> httpx.Client:
        return httpx.Client(timeout=timeout)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> PIVOTClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # The transport: blocking calls inside coroutines that therefore never suspend.

    async def _transmit(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        return self._http.send(request, stream=stream, follow_redirects=True)

    async def _pause(self, seconds: float) -> None:
        self._sleep(seconds)

    async def _release(self, response: httpx.Response) -> None:
        response.close()

    async def _drain(self, response: httpx.Response) -> None:
        response.read()

    async def _lines(self, response: httpx.Response) -> AsyncIterator[str]:
        for line in response.iter_lines():
            yield line

    async def _chunks(self, response: httpx.Response, size: int) -> AsyncIterator[bytes]:
        for chunk in response.iter_bytes(size):
            yield chunk

    def _complete(self, call: Coroutine[Any, Any, T]) -> T:
        return run_sync(call)

    def _iterate(self, items: ItemSource[T]) -> EventStream[T]:
        return EventStream(items)


class EventStream(StreamBase[T], Iterator[T]):
    """An iterator over a stream's items, fetched as it advances (a live stream resumes
    after a dropped connection with Last-Event-ID). Closing it (or leaving its `with`
    block) closes the connection."""

    def __next__(self) -> T:
        try:
            return run_sync(anext(self._source))
        except StopAsyncIteration:
            raise StopIteration from None

    def __iter__(self) -> EventStream[T]:
        return self

    def __enter__(self) -> EventStream[T]:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        run_sync(self._source.aclose())


__all__ = ["EventStream", "PIVOTClient"]
