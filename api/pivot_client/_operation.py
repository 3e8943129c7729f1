"""An endpoint described once, as the OpenAPI document has it (`Operation`, one per
operationId in the generated pivot_client._generated.operations), and a request built from
it (`APIRequest`). Both clients send the same `APIRequest`; only their transports differ."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

R = TypeVar("R", bound=BaseModel)
# One part per name, or a list of (name, part) for several parts of one name (images).
Files = Mapping[str, tuple[str, Any, str]] | Sequence[tuple[str, tuple[str, Any, str]]]

_PATH_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Operation(Generic[R]):
    """Method, path template (below the API prefix), query parameters, body and the model
    of the answer (None where the answer is a stream or a file, read as it arrives)."""

    operation_id: str
    method: str
    path: str
    response: type[R] | None
    query: tuple[str, ...] = ()
    body: Literal["json", "multipart"] | None = None

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAM.findall(self.path))

    def request(
        self,
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        files: Callable[[], Files] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> APIRequest[R]:
        """The request, checked against the spec: a parameter the endpoint does not take is
        a bug in the client, caught here rather than ignored by the server."""
        path = dict(path or {})
        if set(path) != set(self.path_params):
            raise TypeError(f"{self.operation_id}: path parameters {sorted(path)}")
        unknown = set(query or {}) - set(self.query)
        if unknown:
            raise TypeError(f"{self.operation_id}: no query parameters {sorted(unknown)}")
        sends = "multipart" if data is not None or files is not None else "json"
        if (json is not None or sends == "multipart") and self.body != sends:
            raise TypeError(f"{self.operation_id} takes no {sends} body")
        # Ids are quoted: one with `/` or `?` names a resource, never another route.
        url = self.path.format_map({k: quote(str(v), safe="") for k, v in path.items()})
        params = {k: v for k, v in (query or {}).items() if v is not None}
        return APIRequest(self, url, params, json, data, files, dict(headers or {}), timeout)

    def parse(self, response: httpx.Response) -> R:
        if self.response is None:
            raise TypeError(f"{self.operation_id} answers a stream: read it as it arrives")
        return self.response.model_validate(response.json())


@dataclass(frozen=True)
class APIRequest(Generic[R]):
    operation: Operation[R]
    url: str
    params: dict[str, Any]
    json: Any = None
    data: Mapping[str, str] | None = None
    # Built again for every try, so a retried upload sends its file from the start.
    files: Callable[[], Files] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: httpx.Timeout | None = None
