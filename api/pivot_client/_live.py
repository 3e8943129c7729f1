"""A session's live stream (GET /sse/training/{id}) as an async iterator that resumes after a
dropped connection with Last-Event-ID; both clients read it (see pivot_client._api)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Generic, TypeVar

import httpx

from pivot_client._api import APIClient
from pivot_client._base import STREAM_READ_TIMEOUT, RetryPolicy, SSEDecoder, StreamState
from pivot_client._exceptions import APIConnectionError
from pivot_client._generated import operations as ops
from pivot_client.types import LiveEvent

T = TypeVar("T")


class LiveStream(Generic[T]):
    def __init__(
        self,
        client: APIClient,
        session_id: str,
        convert: Callable[[LiveEvent], T | None],
        last_event_id: str | None,
        max_reconnects: int,
    ) -> None:
        self._client = client
        self._session_id = session_id
        self._convert = convert
        self._max_reconnects = max_reconnects
        self.state = StreamState(last_event_id=last_event_id)
        self._response: httpx.Response | None = None
        self._events = self._run()

    def __aiter__(self) -> LiveStream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()
        await self._close_response()

    async def _close_response(self) -> None:
        if self._response is not None:
            await self._client._release(self._response)
            self._response = None

    async def _run(self) -> AsyncGenerator[T, None]:
        client, state = self._client, self.state
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT, connect=10.0)
        path = {"session_id": self._session_id}
        while True:
            error: Exception | None = None
            try:
                request = ops.sse_training.request(
                    path=path, headers=state.headers(), timeout=timeout
                )
                self._response = await client._send(request, stream=True)
                decoder = SSEDecoder()
                async for line in client._lines(self._response):
                    sse = decoder.decode(line)
                    event = state.accept(sse) if sse is not None else None
                    item = self._convert(event) if event is not None else None
                    if item is not None:
                        yield item
                if state.ended:
                    return
            except (httpx.TransportError, APIConnectionError) as exc:
                error = exc
            finally:
                await self._close_response()
            # Cut off, or closed before the session ended: resume after the last event.
            # `failures` counts reconnects since the last event that got through.
            state.failures += 1
            if state.failures > self._max_reconnects:
                raise APIConnectionError(
                    f"live stream of {self._session_id} broke off {state.failures} times "
                    f"without progress: {error or 'closed before the session ended'}"
                ) from error
            await client._pause(reconnect_delay(state, client.retry))


def reconnect_delay(state: StreamState, retry: RetryPolicy) -> float:
    """The server's `retry:` for the first reconnect, then exponential backoff."""
    if state.reconnect_delay is not None and state.failures == 1:
        return state.reconnect_delay
    return retry.delay(state.failures - 1)
