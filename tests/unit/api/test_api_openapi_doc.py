"""The API's own documentation: /docs and /redoc work offline, the OpenAPI document carries the
reference's examples (each valid against its schema), the refusals of API keys and rate limits,
and the live streams' messages; HEAD works wherever GET does. No backing service is needed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from pydantic import SecretStr
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pivot_api.app import create_app
from pivot_api.settings import Settings

API = "/api/v1"
KEY = "pvt_" + "k" * 32


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)


def linked_urls(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    # Swagger UI's page names its document inside a script: `url: '/api/v1/openapi.json'`.
    return parser.urls + re.findall(r"url: '([^']*)'", html)


async def test_docs_and_redoc_load_everything_from_the_api_itself(
    offline_client: httpx.AsyncClient,
) -> None:
    kinds: dict[str, str] = {}
    for page in ("/docs", "/redoc"):
        resp = await offline_client.get(page)
        assert resp.status_code == 200
        urls = linked_urls(resp.text)
        assert urls, page
        for url in urls:
            # Same origin: a path, not a host (no CDN, no Google Fonts).
            assert url.startswith("/") and not url.startswith("//"), (page, url)
        assert "http://" not in resp.text and "https://" not in resp.text, page
        for url in urls:
            asset = await offline_client.get(url)
            assert asset.status_code == 200, url
            kinds[url.rsplit(".", 1)[-1]] = asset.headers["content-type"]
            assert len(asset.content) > 1000, url
    assert kinds["js"].startswith("text/javascript")
    assert kinds["css"].startswith("text/css")
    assert kinds["json"].startswith("application/json")
    assert kinds["png"] == "image/png"
    bundle = await offline_client.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text[:2000]


@pytest.fixture
def keyed_settings(offline_settings: Settings) -> Settings:
    return offline_settings.model_copy(update={"auth_enabled": True, "api_keys": SecretStr(KEY)})


@pytest.fixture
async def keyed_client(keyed_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(keyed_settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        yield client


async def test_the_docs_and_their_assets_need_no_key(keyed_client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc", "/docs/assets/redoc.standalone.js", f"{API}/openapi.json"):
        assert (await keyed_client.get(path)).status_code == 200, path
    assert (await keyed_client.get(f"{API}/training/sessions")).status_code == 401


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:pivot-openapi", Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    ref = schema.get("$ref")
    if ref is not None:
        schema = {"$ref": "urn:pivot-openapi" + ref}
    return Draft202012Validator(schema, registry=registry)


def examples_of(doc: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(where, example, schema) for every JSON example of every operation."""
    for method, path, op in operations(doc):
        where = f"{method.upper()} {path}"
        media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "example" in media:
            yield f"{where} request", media["example"], media["schema"]
        for status, response in op["responses"].items():
            media = response.get("content", {}).get("application/json", {})
            if "example" in media:
                yield f"{where} {status}", media["example"], media["schema"]
    for name, schema in doc["components"]["schemas"].items():
        for i, example in enumerate(schema.get("examples", [])):
            yield f"schema {name} example {i}", example, {"$ref": f"#/components/schemas/{name}"}


async def test_every_example_is_valid_against_its_own_schema(
    keyed_client: httpx.AsyncClient,
) -> None:
    doc = (await keyed_client.get(f"{API}/openapi.json")).json()
    checked = 0
    for where, example, schema in examples_of(doc):
        errors = [e.message for e in validator(doc, schema).iter_errors(example)]
        assert not errors, (where, errors)
        checked += 1
    assert checked > 40


async def test_the_references_endpoints_carry_its_examples(
    offline_client: httpx.AsyncClient,
) -> None:
    doc = (await offline_client.get(f"{API}/openapi.json")).json()
    paths = doc["paths"]

    def body(path: str, method: str, status: str | None = None) -> Any:
        op = paths[f"{API}{path}"][method]
        part = op["requestBody"] if status is None else op["responses"][status]
        return part["content"]["application/json"]["example"]

    assert body("/training/sessions", "post") == {
        "config_path": "configs/train.yaml",
        "session_name": "experiment_001",
        "tags": ["unet", "focal-loss"],
    }
    assert body("/training/sessions", "post", "201")["status"] == "created"
    assert body("/training/sessions/{session_id}", "get", "200")["progress"] == 0.25
    assert body("/metrics/{session_id}/history", "get", "200")["epochs"] == [1, 2, 3, 4]
    assert body("/alerts/rules", "post")["name"] == "high_memory_usage"
    assert body("/webhooks", "post")["events"] == ["training_completed", "alert_triggered"]
    assert body("/webhooks/{webhook_id}/test", "post", "200")["response_time_ms"] == 145
    assert body("/health", "get", "200")["status"] == "healthy"


def error_schema(response: dict[str, Any]) -> str:
    return str(response["content"]["application/json"]["schema"]["$ref"])


async def test_keyed_and_limited_routes_document_401_403_and_429(
    keyed_client: httpx.AsyncClient,
) -> None:
    doc = (await keyed_client.get(f"{API}/openapi.json")).json()
    envelope = "#/components/schemas/ErrorResponse"
    for method, path, op in operations(doc):
        responses = op["responses"]
        if path == f"{API}/health":
            assert not {"401", "403", "429"} & set(responses), path  # public
            continue
        assert error_schema(responses["401"]) == envelope, (method, path)
        assert error_schema(responses["429"]) == envelope, (method, path)
        assert "Retry-After" in responses["429"]["headers"]
        # Every key can read; writes need write, webhooks admin.
        can_be_forbidden = method != "get" or path.startswith(f"{API}/webhooks")
        assert ("403" in responses) == can_be_forbidden, (method, path)
    webhooks = doc["paths"][f"{API}/webhooks"]["get"]["responses"]["403"]
    assert webhooks["content"]["application/json"]["example"]["error"]["code"] == "FORBIDDEN"
    assert "admin" in webhooks["description"]


async def test_without_keys_or_limits_no_such_refusal_is_documented(
    offline_settings: Settings,
) -> None:
    settings = offline_settings.model_copy(update={"rate_limit_enabled": False})
    doc = create_app(settings).openapi()
    for method, path, op in operations(doc):
        assert not {"401", "403", "429"} & set(op["responses"]), (method, path)


async def test_the_live_messages_are_documented(offline_client: httpx.AsyncClient) -> None:
    doc = (await offline_client.get(f"{API}/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for name in ("LiveMetricsEvent", "LiveMetricsMessage"):
        props = schemas[name]["properties"]
        assert {"epoch", "loss"} <= set(schemas[name]["required"]), name
        assert props["epoch"]["type"] == "integer"
        assert {"type": "number"} in props["loss"]["anyOf"]
        assert "val_loss" in props["loss"]["description"]
    sse = doc["paths"][f"{API}/sse/training/{{session_id}}"]["get"]
    assert sse["x-sse-events"]["metrics"] == {"$ref": "#/components/schemas/LiveMetricsEvent"}
    assert sse["x-websocket"]["messages"]["metrics"]["$ref"].endswith("/LiveMetricsMessage")
    assert "LiveMetricsEvent" in sse["responses"]["200"]["description"]
    assert "event: metrics" in sse["responses"]["200"]["content"]["text/event-stream"]["example"]


async def test_head_answers_like_get_without_a_body(offline_client: httpx.AsyncClient) -> None:
    for path in (f"{API}/health", "/docs", "/docs/assets/swagger-ui.css"):
        got = await offline_client.get(path)
        head = await offline_client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        if path != f"{API}/health":  # health's numbers change between two calls
            assert head.headers["content-length"] == got.headers["content-length"], path
    # A route without GET stays a 405 for HEAD, as for GET.
    resp = await offline_client.head(f"{API}/training/sessions/sess-abc/start")
    assert resp.status_code == 405 and resp.content == b""


async def test_a_query_token_on_a_write_says_what_to_do_instead(
    keyed_client: httpx.AsyncClient,
) -> None:
    resp = await keyed_client.post(
        f"{API}/training/sessions/sess-abc/start", params={"access_token": KEY}
    )
    assert resp.status_code == 401
    message = resp.json()["error"]["message"]
    assert "access_token" in message and "reads and streams" in message
    assert "Authorization" in message and "X-API-Key" in message
    # A write with no key at all gets the plain answer.
    resp = await keyed_client.post(f"{API}/training/sessions/sess-abc/start")
    assert resp.json()["error"]["message"] == "an API key is required"
