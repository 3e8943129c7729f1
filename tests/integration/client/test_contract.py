"""The API contract is written once, in the server: the SDK's models and request specs are
generated from the OpenAPI document the running API serves, and both Python transports and
the TypeScript client execute every operation in it. A new or changed endpoint fails here
until the clients are regenerated (`python -m pivot_client._codegen generate`,
`npm run generate` in api/clients/typescript)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pivot_client import AsyncPIVOTClient, NotFoundError, PIVOTClient
from pivot_client._api import run_sync
from pivot_client._generated.operations import OPERATIONS
from pivot_client._operation import Operation
from pivot_local.platform import REPO_ROOT, LocalPlatform

pytestmark = pytest.mark.integration

CLIENT_METHODS = ("get", "post", "put", "patch", "delete")
# What the document may list that no client calls. HEAD and OPTIONS are not in
# CLIENT_METHODS: the API answers HEAD as GET (pivot_api.head), and FastAPI lists neither.
# The documentation (/openapi.json, /docs, /redoc) and /metrics are left out of the
# document by the server itself; were they ever listed, they would go here.
NOT_CLIENT_OPERATIONS: frozenset[str] = frozenset()

URL = "http://pivot.test"
TS_OPERATIONS = REPO_ROOT / "api" / "clients" / "typescript" / "src" / "openapi.ts"


@pytest.fixture(scope="module")
def document(platform: LocalPlatform) -> dict[str, Any]:
    response = httpx.get(f"{platform.api_url}/api/v1/openapi.json", timeout=30)
    response.raise_for_status()
    return dict(response.json())


@pytest.fixture(scope="module")
def served(document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """operationId -> (method, path below /api/v1) of everything a client should call."""
    return {
        op["operationId"]: (method.upper(), path.removeprefix("/api/v1"))
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in CLIENT_METHODS and op["operationId"] not in NOT_CLIENT_OPERATIONS
    }


def test_generated_client_matches_the_servers_openapi_document(platform: LocalPlatform) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pivot_client._codegen", "check"],
        capture_output=True,
        text=True,
        env={**os.environ, "PIVOT_URL": platform.api_url},
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_served_operation_has_a_python_request_spec(
    served: dict[str, tuple[str, str]],
) -> None:
    assert sorted(OPERATIONS) == sorted(served)
    specs = {op_id: (op.method, op.path) for op_id, op in OPERATIONS.items()}
    assert specs == served


def test_typescript_client_types_cover_every_served_operation(
    served: dict[str, tuple[str, str]],
) -> None:
    source = TS_OPERATIONS.read_text()
    block = source[source.index("export interface operations {") :]
    typescript = set(re.findall(r"^    (\w+): \{$", block, flags=re.MULTILINE))
    assert typescript == set(served), "run `npm run generate` in api/clients/typescript"


def _arguments(op: Operation[Any]) -> dict[str, Any]:
    """Arguments `Operation.request` takes for `op`: an id for each path parameter, a body
    of the kind it takes."""
    arguments: dict[str, Any] = {"path": dict.fromkeys(op.path_params, "x-1")}
    if op.body == "json":
        arguments["json"] = {}
    elif op.body == "multipart":
        arguments["data"] = {"session_id": "x-1"}
        arguments["files"] = lambda: {"file": ("f.pth", b"weights", "application/octet-stream")}
    return arguments


def _answering(
    example: Any, seen: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    """The server's documented example answer, else a 404 with the error envelope."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if example is not None:
            return httpx.Response(200, json=example)
        body = {"error": {"code": "NOT_FOUND", "message": "no x-1", "details": {}}}
        return httpx.Response(404, json=body)

    return answer


def _example(document: dict[str, Any], op: Operation[Any]) -> Any:
    item = document["paths"]["/api/v1" + op.path][op.method.lower()]
    ok = min(code for code in item["responses"] if code.startswith("2"))
    return item["responses"][ok].get("content", {}).get("application/json", {}).get("example")


async def _outcome(client: PIVOTClient | AsyncPIVOTClient, op: Operation[Any]) -> Any:
    """The operation's answer on this client's transport, or the error it raised."""
    try:
        if op.response is not None:
            return await client._call(op, **_arguments(op))
        response = await client._send(op.request(**_arguments(op)), stream=True)
        await client._release(response)  # a stream or a file: opened, then given back
        return response
    except NotFoundError as exc:
        return exc


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
async def test_every_operation_runs_on_both_transports(
    operation_id: str, document: dict[str, Any]
) -> None:
    op = OPERATIONS[operation_id]
    example = _example(document, op)
    seen: list[httpx.Request] = []
    mock = httpx.MockTransport(_answering(example, seen))
    sync = PIVOTClient(URL, http_client=httpx.Client(transport=mock))
    asynchronous = AsyncPIVOTClient(URL, http_client=httpx.AsyncClient(transport=mock))

    outcomes = [run_sync(_outcome(sync, op)), await _outcome(asynchronous, op)]

    expected = NotFoundError if example is None else (op.response or httpx.Response)
    assert [type(o) for o in outcomes] == [expected, expected]
    if example is not None and op.response is not None:
        assert outcomes[0] == outcomes[1] == op.response.model_validate(example)
    path = "/api/v1" + op.path.format_map(dict.fromkeys(op.path_params, "x-1"))
    assert [(r.method, r.url.path) for r in seen] == [(op.method, path)] * 2
