"""How one description of the API serves both clients.

Every method of the SDK is written once, as a coroutine, against the small transport that
`APIClient` declares (send, pause, close, read, lines, chunks). `AsyncPIVOTClient`
implements it with httpx.AsyncClient and hands the coroutine to the caller to await.
`PIVOTClient` implements it with httpx.Client, so its coroutines never suspend: it runs
each one to the end at once (`run_sync`), with no event loop. Requests are built from the
generated `Operation`s (pivot_client._operation), retries happen in `APIClient._send`, and
only the transport methods differ between the two clients.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

import httpx

from pivot_client._base import (
    DEFAULT_TIMEOUT,
    RetryPolicy,
    StreamState,
    api_key_from,
    base_url_from,
    connection_error,
    default_headers,
)
from pivot_client._exceptions import error_from_response
from pivot_client._operation import APIRequest, Operation, R

if TYPE_CHECKING:
    from pivot_client._async_client import AsyncEventStream, AsyncPIVOTClient
    from pivot_client._client import EventStream, PIVOTClient

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
C = TypeVar("C", bound="APIClient[Any]")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)


def run_sync(awaitable: Awaitable[T]) -> T:
    """The result of a coroutine that never suspends (one on the sync transport)."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    steps.close()
    raise RuntimeError("a call of the sync client waited on an event loop")


class APIClient(abc.ABC, Generic[H]):
    """Configuration, request building and retries, shared; the transport, per client
    (`H`: its httpx client)."""

    awaits: ClassVar[bool]  # whether its methods return coroutines to await

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        http_client: H | None = None,
    ) -> None:
        self.base_url = base_url_from(base_url)
        self.api_key = api_key_from(api_key)
        self.retry = RetryPolicy(max_retries=max_retries)
        self._headers = default_headers(self.api_key, headers)
        self._owns_http = http_client is None
        self._http: H = http_client or self._new_http(timeout)

    @staticmethod
    @abc.abstractmethod
    def _new_http(timeout: float | httpx.Timeout | None) -> H: ...

    # -- the transport: what each client implements ------------------------------------------

    @abc.abstractmethod
    async def _transmit(self, request: httpx.Request, *, stream: bool) -> httpx.Response: ...

    @abc.abstractmethod
    async def _pause(self, seconds: float) -> None: ...

    @abc.abstractmethod
    async def _release(self, response: httpx.Response) -> None:
        """Close a response (a streamed one gives its connection back)."""

    @abc.abstractmethod
    async def _drain(self, response: httpx.Response) -> None:
        """Read a streamed response's body, so its error envelope can be decoded."""

    @abc.abstractmethod
    def _lines(self, response: httpx.Response) -> AsyncIterator[str]: ...

    @abc.abstractmethod
    def _chunks(self, response: httpx.Response, size: int) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    def _complete(self, call: Coroutine[Any, Any, T]) -> Any:
        """What a method gives its caller for a call: the result, or the coroutine."""

    @abc.abstractmethod
    def _iterate(self, items: ItemSource[T]) -> Any:
        """What a method gives its caller for a stream of items: an (async) iterator."""

    # -- shared ---------------------------------------------------------------------------------

    def _build(self, request: APIRequest[Any]) -> httpx.Request:
        return self._http.build_request(
            request.operation.method,
            self.base_url + request.url,
            params=request.params,
            json=request.json,
            data=request.data,
            files=request.files() if request.files is not None else None,
            headers={**self._headers, **request.headers},
            timeout=request.timeout if request.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )

    async def _send(self, request: APIRequest[Any], *, stream: bool = False) -> httpx.Response:
        """Send with bounded retries (backoff that honours Retry-After) on 429, 503 and
        connection failures; a POST is repeated only when it never reached the server."""
        attempt = 0
        while True:
            sent = self._build(request)  # a fresh request (and body) per try
            try:
                response = await self._transmit(sent, stream=stream)
            except httpx.TransportError as exc:
                if attempt < self.retry.max_retries and self.retry.retry_error(sent.method, exc):
                    await self._pause(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise connection_error(exc) from exc
            if response.is_success:
                return response
            if attempt < self.retry.max_retries and self.retry.retry_status(
                sent.method, response.status_code
            ):
                await self._release(response)
                await self._pause(self.retry.delay(attempt, response))
                attempt += 1
                continue
            if stream:
                await self._drain(response)
                await self._release(response)
            raise error_from_response(response)

    async def _call(self, operation: Operation[R], **request: Any) -> R:
        """One endpoint's answer: `request` as `Operation.request` takes it."""
        response = await self._send(operation.request(**request))
        return operation.parse(response)


class Resource(Generic[C]):
    """A group of endpoints (`client.alerts`), on the client it was made for."""

    def __init__(self, client: C) -> None:
        self._client = client


def _host(obj: APIClient[Any] | Resource[Any]) -> APIClient[Any]:
    return obj._client if isinstance(obj, Resource) else obj


class _Method(Generic[P, T]):
    """A method of both clients, written once; the client it is read from finishes each
    call (`_finish`: its `_complete` or `_iterate`)."""

    _finish = ""

    def __init__(self, method: Callable[Concatenate[Any, P], Any]) -> None:
        self.method = method
        self.__doc__, self.__wrapped__ = method.__doc__, method  # for help() and inspect

    def _bind(self, obj: APIClient[Any] | Resource[Any]) -> Callable[..., Any]:
        bound: Callable[..., Any] = functools.partial(self.method, obj)
        finish = getattr(_host(obj), self._finish)

        def call(*args: Any, **kwargs: Any) -> Any:
            return finish(bound(*args, **kwargs))

        call.__name__, call.__qualname__ = self.method.__name__, self.method.__qualname__
        call.__doc__, call.__wrapped__ = self.method.__doc__, bound  # type: ignore[attr-defined]
        return call


class endpoint(_Method[P, T]):  # lower case: read as a decorator
    """A method written once as a coroutine: `PIVOTClient`'s returns its result,
    `AsyncPIVOTClient`'s the coroutine to await."""

    _finish = "_complete"

    def __init__(self, method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]) -> None:
        super().__init__(method)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> endpoint[P, T]: ...
    @overload
    def __get__(
        self, obj: PIVOTClient | Resource[PIVOTClient], owner: type[Any]
    ) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, obj: AsyncPIVOTClient | Resource[AsyncPIVOTClient], owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        if not _host(obj).awaits:
            return self._bind(obj)
        # The coroutine function itself, bound: what `async def` methods were before.
        bound = functools.partial(self.method, obj)
        bound.__doc__ = self.method.__doc__
        return bound


class streaming(_Method[P, T]):  # lower case: read as a decorator
    """A method written once as an async iterator: `PIVOTClient`'s returns an
    `EventStream` (an iterator), `AsyncPIVOTClient`'s an `AsyncEventStream`."""

    _finish = "_iterate"

    def __init__(self, method: Callable[Concatenate[Any, P], ItemSource[T]]) -> None:
        super().__init__(method)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> streaming[P, T]: ...
    @overload
    def __get__(
        self, obj: PIVOTClient | Resource[PIVOTClient], owner: type[Any]
    ) -> Callable[P, EventStream[T]]: ...
    @overload
    def __get__(
        self, obj: AsyncPIVOTClient | Resource[AsyncPIVOTClient], owner: type[Any]
    ) -> Callable[P, AsyncEventStream[T]]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        return self if obj is None else self._bind(obj)


class ItemSource(Protocol[T_co]):
    """What a streaming method yields from: an async generator or a `LiveStream`."""

    def __aiter__(self) -> AsyncIterator[T_co]: ...
    def __anext__(self) -> Awaitable[T_co]: ...
    def aclose(self) -> Awaitable[None]: ...


class StreamBase(Generic[T]):
    """What `EventStream` and `AsyncEventStream` share: their source and, for a live
    stream, where it stands (`last_event_id`: resume a new stream after it)."""

    def __init__(self, source: ItemSource[T]) -> None:
        self._source = source

    @property
    def state(self) -> StreamState | None:
        return getattr(self._source, "state", None)

    @property
    def last_event_id(self) -> str | None:
        return self.state.last_event_id if self.state is not None else None
