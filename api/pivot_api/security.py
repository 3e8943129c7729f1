"""API keys and rate limits put on the app: `install_security(app, settings)`.

Middleware order, outermost first: observability (logs and counts every refusal) -> rate
limit (per IP, before the key check, so guessing keys is limited too) -> API keys -> routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from pivot_api import docs
from pivot_api.auth import ApiKeyMiddleware, KeyStore, install_log_redaction
from pivot_api.ratelimit import RateLimiter, RateLimitMiddleware, parse_limits
from pivot_api.settings import Settings
from pivot_api.ui import UI_PREFIX
from pivot_schema.keys import ApiKeys


class PublicPaths(frozenset[str]):
    """Exact paths, and everything under the dashboard (its page asks for a key itself)."""

    prefixes: tuple[str, ...] = (f"{UI_PREFIX}/",)

    def __contains__(self, path: object) -> bool:
        return super().__contains__(path) or (
            isinstance(path, str) and path.startswith(self.prefixes)
        )


def public_paths(app: FastAPI, prefix: str) -> frozenset[str]:
    """Neither keyed nor limited: probes, Prometheus, the API's own documentation (its
    pages and their assets, pivot_api.docs) and the dashboard's files (pivot_api.ui)."""
    paths = {f"{prefix}/health", "/metrics", "/", UI_PREFIX, *docs.public_paths()}
    for path in (app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url):
        if path:
            paths.add(path)
    return PublicPaths(paths)


def _document_keys(app: FastAPI) -> None:
    """Security schemes in the OpenAPI document, so /docs has an Authorize button."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearerAuth"] = {"type": "http", "scheme": "bearer"}
        schemes["apiKeyHeader"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        schema["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add the middleware (call before the observability middleware is added, so it sits
    inside it). The rate limiter is left on app.state.rate_limiter for the lifespan to close."""
    prefix = settings.api_prefix.rstrip("/")
    public = public_paths(app, prefix)
    install_log_redaction()
    if settings.auth_enabled:
        keys = KeyStore(settings.api_keys.get_secret_value(), settings.api_keys_file)
        app.add_middleware(ApiKeyMiddleware, keys=keys, prefix=prefix, public_paths=public)
        _document_keys(app)
    app.state.rate_limiter = None
    if settings.rate_limit_enabled:
        limiter = RateLimiter(
            settings.redis_url,
            parse_limits(settings.rate_limits),
            key_prefix=ApiKeys(settings.namespace).ratelimit,
            timeout_s=settings.rate_limit_timeout_s,
        )
        app.state.rate_limiter = limiter
        app.add_middleware(
            RateLimitMiddleware,
            limiter=limiter,
            public_paths=public,
            trusted_proxies=settings.rate_limit_trusted_proxies,
        )
